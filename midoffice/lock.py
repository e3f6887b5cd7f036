"""One `midoffice run` per home at a time.

Two runs on one home corrupt each other: with one AIRFLOW_HOME the first died on SQLite's
IntegrityError; with two, each withdrew the other's gates. The run holds an exclusive `flock` on
`<home>/run.lock` for its whole duration; the kernel releases it when the process ends, however it
ends, so a killed run leaves no stale lock. The file's text names the holder, for the message the
second run prints.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from midoffice.control import utc_now

LOCK_NAME = "run.lock"


class HomeBusy(RuntimeError):
    """Another process holds the home."""


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "another process (it left no description)"


@contextmanager
def home_lock(home: Path, wait_seconds: float = 0.0, poll: float = 0.5):
    """Hold the home's run lock; raise HomeBusy naming the holder when it is not free within
    `wait_seconds` (0: refuse at once)."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise HomeBusy(f"{home} is being run by {_holder(path)}; wait for it to finish "
                                   f"(or give --wait SECONDS), then run again") from None
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.write(fd, (f"pid {os.getpid()} on {socket.gethostname()}, started {utc_now()}: "
                      + " ".join(["midoffice", *sys.argv[1:]])[:500] + "\n").encode())
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
