"""Shared fixtures: generated sample feeds and pipeline runs, made once per test session."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

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
