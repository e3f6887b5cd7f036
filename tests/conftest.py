"""Shared fixtures: generated sample feeds and pipeline runs, made once per test session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# The tests run on generated sample data: they opt in to the development key as `make demo` does
# (tests of a missing or weak key remove it).
os.environ.setdefault("MIDOFFICE_DEVELOPMENT_KEY", "1")

REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items):
    """Mark the tests that read the shared sample run (`-m sample_run`): `make test` runs them in
    one process, which makes the run once, and the others in another. Only the fixtures a test
    names (or that they name) are seen: a test that asks for one at run time
    (`request.getfixturevalue`) must name `sample_run` too, or the other process makes the run again."""
    for item in items:
        if "sample_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.sample_run)


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> Path:
    """One Airflow metadata DB for the whole session (db migrate takes seconds)."""
    home = tmp_path_factory.mktemp("airflow")
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home / 'airflow.db'}"
    return home


def generate_landing(path: Path, start: str, days: int, trades: int, seed: int = 7, faults: bool = False) -> Path:
    from midoffice.sample import generate

    generate(path, date.fromisoformat(start), days, trades_per_day=trades, seed=seed, faults=faults)
    return path


def run_stages(settings, business_date: str, run_id: str) -> None:
    """One business date through the stages the DAGs call, in their order, without Airflow."""
    from midoffice.contracts import ingest_order
    from midoffice.ingest import ingest_feed
    from midoffice.stages import publish_date, validate_and_gate
    from midoffice.warehouse import build_warehouse

    for feed in ingest_order():
        ingest_feed(settings, business_date, feed, run_id)
    for feed in ingest_order():
        validate_and_gate(settings, business_date, feed, run_id)
    build_warehouse(settings, business_date, run_id)
    publish_date(settings, business_date, run_id)


def midoffice_here(capsys, *args: str):
    """`midoffice ARGS` run in this process: its exit status and what it printed on sys.stdout and
    sys.stderr (as a CompletedProcess). Airflow's set-up (importing it, its execution API, GX) is
    paid once a process: a `midoffice run` in a child process pays all of it again. Ask for the
    `airflow_home` fixture first (Airflow is configured once a process). What the tasks print goes
    to the run's log, as on a console; a test of the console itself runs the command as a process."""
    import subprocess

    from midoffice.cli import main

    capsys.readouterr()  # what came before is not the command's
    code = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["midoffice", *args], code, out, err)


def run_pipeline(landing: Path, home: Path, dates: list[str]):
    from midoffice.config import settings_from
    from midoffice.runner import run_dates

    return run_dates(settings_from(landing, home), dates, progress=lambda m: None)


# Six dates: a whole week and the Monday after it (a weekend inside the run; the month's start).
SAMPLE_DATES = ["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08", "2026-01-09", "2026-01-12"]


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory, airflow_home):
    """Six generated business dates (1,200 trades a day, seed 7) run through the real DAG.

    Shared by every test that only reads the result; a test that changes the home must use its
    own copy. Tests compare the marts with computations of their own from the landing files.
    """
    root = tmp_path_factory.mktemp("sample")
    landing = generate_landing(root / "landing", SAMPLE_DATES[0], len(SAMPLE_DATES), 1200)
    home = root / "home"
    outcomes = run_pipeline(landing, home, SAMPLE_DATES)
    return {"landing": landing, "home": home, "outcomes": outcomes, "dates": list(SAMPLE_DATES)}


@pytest.fixture(scope="session")
def clean_run(sample_run):
    return sample_run


def published(where: Path):
    """A read-only connection to the published lake of a home (or of the home whose
    `warehouse/marts.duckdb` the older tests name: the published warehouse is now the lake),
    or to a build warehouse file (`build.duckdb`) that tests building dates without publishing read."""
    from midoffice.lake import reader_for_home

    where = Path(where)
    if where.suffix == ".duckdb" and where.name != "marts.duckdb":
        import duckdb

        return duckdb.connect(str(where), read_only=True)
    home = where.parent.parent if where.name == "marts.duckdb" else where
    return reader_for_home(home)


SQLITE_BACKUP = """
import sqlite3, sys
source, target = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2])
source.backup(target)
target.close()
source.close()
"""


def copy_published(src_home: Path, dst_home: Path) -> Path:
    """A copy of a home's published lake in another home (the catalog through SQLite's backup,
    consistent even with a reader open; the data files as they are): tests that change the
    published warehouse work on their own copy, the shared sample run is read by others.

    The backup runs in a child process: Python's sqlite3 closing the catalog in this process
    would drop the locks this process's DuckDB holds on it (midoffice.lake, WAL)."""
    src, dst = Path(src_home) / "warehouse", Path(dst_home) / "warehouse"
    dst.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", SQLITE_BACKUP, str(src / "lake.sqlite"), str(dst / "lake.sqlite")],
                   check=True, timeout=120)
    shutil.copytree(src / "lake_data", dst / "lake_data")
    return Path(dst_home)


def copy_landing(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
