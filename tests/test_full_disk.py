"""A publication that fails on a full disk leaves the published lake as it was (same version,
same marts) and no data file of the failed commit behind, and the failure is where
`midoffice status` reads it (issue 22).

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

DATES = ["2026-03-02", "2026-03-03"]


def published_state(settings) -> tuple[int, str]:
    """The lake's current version and a hash of every published table's rows (what readers see)."""
    from midoffice import lake

    con = lake.reader(settings)
    try:
        digest = hashlib.sha256()
        for (table,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = ? "
                                    "AND schema_name = 'main' ORDER BY 1", [lake.LAKE]).fetchall():
            rows = con.execute(f'SELECT * FROM "{table}"').fetchall()
            digest.update(f"{table}:{sorted(map(repr, rows))}".encode())
        return lake.current_version(con), digest.hexdigest()
    finally:
        con.close()


def data_files(settings) -> set[Path]:
    return {p for p in settings.lake_data_path.rglob("*") if p.is_file()}


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
    run_stages(settings, DATES[0], "run-1")  # now a version exists: the next one is made from it
    # The warehouse folder moves onto the small disk, which is then filled to its last 4 KB.
    shutil.copytree(settings.warehouse_dir, small_disk / "warehouse")
    shutil.rmtree(settings.warehouse_dir)
    settings.warehouse_dir.symlink_to(small_disk / "warehouse")
    published = published_state(settings)
    free = shutil.disk_usage(small_disk).free
    with open(small_disk / "filler", "wb") as fh:
        fh.write(b"\0" * (free - 4096))
    from midoffice.contracts import ingest_order
    from midoffice.ingest import ingest_feed
    from midoffice.stages import validate_and_gate

    for feed in ingest_order():
        ingest_feed(settings, DATES[1], feed, "run-2")
        validate_and_gate(settings, DATES[1], feed, "run-2")
    (small_disk / "filler").unlink()  # room for the build of the date...
    from midoffice.warehouse import build_warehouse

    build_warehouse(settings, DATES[1], "run-2")
    free = shutil.disk_usage(small_disk).free
    files_before = data_files(settings)
    with open(small_disk / "filler", "wb") as fh:  # ...and for the run ledger, not for the new data files
        fh.write(b"\0" * (free - 64 * 2**10))
    with pytest.raises(Exception, match="No space left on device"):
        publish(settings, DATES[1], "run-2")
    assert data_files(settings) == files_before  # the failed commit's data files are not left behind
    assert published_state(settings) == published  # readers still have the previous version
    failed = {s.business_date: s for s in date_statuses(settings)}[DATES[1]]
    assert failed.outcome == NOT_PUBLISHED and [r.stage for r in failed.failed_stages] == ["publish"]
