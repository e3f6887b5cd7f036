"""Shared fixtures: generated sample feeds and pipeline runs, made once per test session."""

from __future__ import annotations

import os
import shutil
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
    one process, which makes the run once, and the others in another."""
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


def run_pipeline(landing: Path, home: Path, dates: list[str]):
    from midoffice.config import settings_from
    from midoffice.runner import run_dates

    return run_dates(settings_from(landing, home), dates, progress=lambda m: None)


SAMPLE_DATES = ["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08", "2026-01-09",
                "2026-01-12", "2026-01-13", "2026-01-14"]


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory, airflow_home):
    """Eight generated business dates (1,200 trades a day, seed 7) run through the real DAG.

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


def copy_landing(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
