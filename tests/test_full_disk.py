"""A publication that fails on a full disk leaves the published warehouse as it was and no
temporary file behind, and the failure is where `midoffice status` reads it (issue 22).

The warehouse folder is a small tmpfs, filled so that the next publication cannot be written:
a real full disk, not a simulated error. Needs the right to mount (root); skipped otherwise.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import generate_landing, run_stages

DATES = ["2026-03-02", "2026-03-03", "2026-03-04"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def small_disk(tmp_path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    tried = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)],
                           capture_output=True, text=True)
    if tried.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {tried.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_publication_that_fails_on_a_full_disk_leaves_no_temporary_file_and_shows_in_status(tmp_path, small_disk):
    from midoffice.config import settings_from
    from midoffice.publish import publish
    from midoffice.status import NOT_PUBLISHED, date_statuses

    landing = generate_landing(tmp_path / "landing", DATES[0], len(DATES), 300, seed=3)
    home = tmp_path / "home"
    settings = settings_from(landing, home)
    run_stages(settings, DATES[0], "run-1")
    run_stages(settings, DATES[1], "run-2")  # now a previous version exists: the next one is made from it
    # The warehouse folder moves onto the small disk, which is then filled to its last 4 KB.
    shutil.copytree(settings.warehouse_dir, small_disk / "warehouse")
    shutil.rmtree(settings.warehouse_dir)
    settings.warehouse_dir.symlink_to(small_disk / "warehouse")
    published = sha(settings.published_db)
    free = shutil.disk_usage(small_disk).free
    with open(small_disk / "filler", "wb") as fh:
        fh.write(b"\0" * (free - 4096))
    from midoffice.contracts import ingest_order
    from midoffice.ingest import ingest_feed
    from midoffice.stages import validate_and_gate

    for feed in ingest_order():
        ingest_feed(settings, DATES[2], feed, "run-3")
        validate_and_gate(settings, DATES[2], feed, "run-3")
    (small_disk / "filler").unlink()  # room for the build of the date...
    from midoffice.warehouse import build_warehouse

    build_warehouse(settings, DATES[2], "run-3")
    free = shutil.disk_usage(small_disk).free
    with open(small_disk / "filler", "wb") as fh:  # ...and for the run ledger, not for the new file (8 MB)
        fh.write(b"\0" * (free - 2 * 2**20))
    with pytest.raises(Exception, match="No space left on device"):
        publish(settings, DATES[2], "run-3")
    leftovers = sorted(p.name for p in (small_disk / "warehouse").iterdir() if p.name.startswith("marts.next-"))
    assert leftovers == []
    assert sha(settings.published_db) == published  # readers still have the previous version
    failed = {s.business_date: s for s in date_statuses(settings)}[DATES[2]]
    assert failed.outcome == NOT_PUBLISHED and [r.stage for r in failed.failed_stages] == ["publish"]
