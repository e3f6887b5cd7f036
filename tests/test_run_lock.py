"""One `midoffice run` per home (issue 21): a second run on a home that is being run refuses with
a message naming the holder, the first completes, and a killed run leaves no stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, generate_landing




DAY = "2026-03-02"
HOLDER = r"""
import sys, time
from pathlib import Path
from midoffice.lock import home_lock
with home_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "midoffice.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ), **kw)


def test_a_second_run_on_a_busy_home_refuses_naming_the_holder_and_the_first_completes(tmp_path):
    landing = generate_landing(tmp_path / "landing", DAY, 1, 200, seed=11)
    home = tmp_path / "home"
    first = cli("run", "--landing", str(landing), "--home", str(home), "--date", DAY)
    deadline = time.monotonic() + 120
    while not (home / "run.lock").is_file() or f"pid {first.pid}" not in (home / "run.lock").read_text():
        assert first.poll() is None and time.monotonic() < deadline, "the first run never took the lock"
        time.sleep(0.2)
    second = cli("run", "--landing", str(landing), "--home", str(home), "--date", DAY)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 2, err
    assert f"is being run by pid {first.pid}" in err and "--wait" in err and "Traceback" not in err
    assert "daily pack" not in out
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    assert f"daily pack {DAY}" in out
    from midoffice.config import settings_from
    from midoffice.status import OK, date_statuses

    assert [(s.business_date, s.outcome) for s in date_statuses(settings_from(landing, home))] == [(DAY, OK)]


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    from midoffice.lock import HomeBusy, home_lock

    home = tmp_path / "home"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(home)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(HomeBusy, match=f"pid {holder.pid}"):
        with home_lock(home):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with home_lock(home) as path:  # free at once: the kernel dropped the dead process's lock
        assert f"pid {os.getpid()}" in Path(path).read_text()


def test_a_run_can_wait_for_the_holder(tmp_path):
    from midoffice.lock import home_lock

    home = tmp_path / "home"
    script = HOLDER.replace("time.sleep(600)", "time.sleep(2)") + 'print("released", flush=True)\ntime.sleep(5)\n'
    holder = subprocess.Popen([sys.executable, "-c", script, str(home)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert holder.stdout.readline().strip() == "held"
    with home_lock(home, wait_seconds=60):
        assert holder.stdout.readline().strip() == "released"  # we got it once the holder let go
    holder.kill()
    holder.wait()


def test_date_and_range_together_are_refused(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    run = cli("run", "--landing", str(landing), "--home", str(tmp_path / "home"), "--date", DAY,
              "--from", DAY, "--to", DAY)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 2 and "either --date, or --from and --to, not both" in err
