"""Heavy libraries imported once in the Airflow process that starts the task processes, not once
a task.

On a scheduler every task instance is a process of its own. With the LocalExecutor (the
scheduler's workers) and the CeleryExecutor (a Celery worker's pool), that process is forked from
a long-lived one: whatever the long-lived process has imported, each task starts with, shared
copy-on-write. So the scheduler (LocalExecutor) or the Celery worker imports DuckDB, Arrow, pandas
and Great Expectations once, when it starts, and the tasks (`feeds`, which validates every feed
with GX, the build, the publication, the report, which builds GX's Data Docs) do not each import
them again: seconds a task on a loaded machine (bench/RESULTS.md).

Wired through Airflow's local settings (`deploy/airflow_local_settings.py`, copied to
`$AIRFLOW_HOME/config/`), which every Airflow process imports when it imports Airflow; only the
processes that fork tasks preload. `MIDOFFICE_PRELOAD=0` turns it off. `midoffice run` does not
need it: its tasks run in its own process, which imports each library once anyway.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Sequence

# The Airflow commands whose process forks the task processes (`airflow scheduler` runs the
# LocalExecutor's workers; `airflow celery worker` its pool).
TASK_FORKING_COMMANDS: tuple[tuple[str, ...], ...] = (("scheduler",), ("celery", "worker"))
HEAVY_MODULES = ("duckdb", "pyarrow.parquet", "pandas", "great_expectations")
SWITCH_ENV = "MIDOFFICE_PRELOAD"

log = logging.getLogger(__name__)


def forks_task_processes(argv: Sequence[str]) -> bool:
    """Is this the command line of an Airflow process that forks task processes?"""
    words = [a for a in argv[1:] if not a.startswith("-")]
    return any(tuple(words[:len(command)]) == command for command in TASK_FORKING_COMMANDS)


def preload(argv: Sequence[str] | None = None) -> list[str]:
    """Import the heavy libraries if this process forks the task processes; the modules imported.
    Never raises: a library that cannot be imported here is imported by the task that needs it
    (and fails there, with its own traceback)."""
    argv = sys.argv if argv is None else argv
    if os.environ.get(SWITCH_ENV, "1").strip() == "0" or not forks_task_processes(argv):
        return []
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # as midoffice.validate sets before its import
    done = []
    for name in HEAVY_MODULES:
        try:
            importlib.import_module(name)
            done.append(name)
        except Exception as exc:  # not this process's job to fail on it
            log.warning("midoffice preload: could not import %s: %r", name, exc)
    for name in ("great_expectations", "posthog"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return done
