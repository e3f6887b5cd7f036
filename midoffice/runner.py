"""`midoffice run`: the real DAG, run in-process by Airflow's own test runner (`dag.test()`).

No parallel code path: the runner loads dags/midoffice_daily.py through Airflow's DagBag and
runs it once per business date, in order. Airflow needs a metadata database; unless
AIRFLOW_HOME is set (a real deployment), one is kept in <home>/airflow (SQLite).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from midoffice.config import REPO_ROOT, Settings
from midoffice.contracts import ingest_order

DAG_ID = "midoffice_daily"
DAGS_FOLDER = REPO_ROOT / "dags"


@dataclass
class DateOutcome:
    business_date: str
    run_id: str
    dag_state: str
    failed_gates: dict[str, str]
    failed_tasks: list[str]

    @property
    def ok(self) -> bool:
        return self.dag_state == "success" and not self.failed_gates


def business_dates(start: date, end: date) -> list[str]:
    days, d = [], start
    while d <= end:
        if d.weekday() < 5:
            days.append(d.isoformat())
        d += timedelta(days=1)
    return days


def prepare_airflow(settings: Settings) -> None:
    """Point Airflow at our DAGs and a metadata DB before airflow is imported."""
    if not os.environ.get("AIRFLOW_HOME"):
        os.environ["AIRFLOW_HOME"] = str(settings.home / "airflow")
    airflow_home = Path(os.environ["AIRFLOW_HOME"])
    airflow_home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS_FOLDER))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{airflow_home / 'airflow.db'}")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MIDOFFICE_LANDING", str(settings.landing))
    os.environ.setdefault("MIDOFFICE_HOME", str(settings.home))
    marker = airflow_home / ".midoffice-db-ready"
    if not marker.exists():
        airflow_bin = Path(sys.executable).with_name("airflow")
        subprocess.run(
            [str(airflow_bin), "db", "migrate"], check=True, env=os.environ.copy(),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        marker.write_text("migrated\n")


def load_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    return bag.dags[DAG_ID]


def run_dates(settings: Settings, dates: list[str], progress=print) -> list[DateOutcome]:
    prepare_airflow(settings)
    from airflow.models.pool import Pool

    Pool.create_or_update_pool("midoffice_warehouse", slots=1, include_deferred=False,
                               description="Single writer of the midoffice warehouse file")
    dag = load_dag()
    outcomes = []
    started = time.monotonic()
    for i, business_date in enumerate(dates, start=1):
        done = time.monotonic() - started
        eta = f" (about {_duration(done / (i - 1) * (len(dates) - i + 1))} left)" if i > 1 else ""
        progress(f"[{i}/{len(dates)}] {business_date}: running {DAG_ID}{eta}…")
        t0 = time.monotonic()
        conf = {"business_date": business_date, "landing": str(settings.landing), "home": str(settings.home)}
        dag_run = dag.test(run_conf=conf, logical_date=None)
        outcomes.append(_outcome(settings, business_date, dag_run))
        o = outcomes[-1]
        progress(f"[{i}/{len(dates)}] {business_date}: {o.dag_state} in {_duration(time.monotonic() - t0)}" + (
            "; gates failed: " + "; ".join(f"{f}: {r}" for f, r in o.failed_gates.items()) if o.failed_gates else ""
        ) + (f"; failed tasks: {', '.join(o.failed_tasks)}" if o.failed_tasks else ""))
    return outcomes


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _outcome(settings: Settings, business_date: str, dag_run) -> DateOutcome:
    from midoffice.gate import gates_for

    gates = gates_for(settings, business_date, ingest_order())
    failed_gates = {f: g.get("reason") or "failed" for f, g in gates.items() if g.get("gate") != "PASS"}
    failed_tasks = sorted(
        ti.task_id for ti in dag_run.get_task_instances()
        if ti.state not in ("success", "skipped") and not ti.task_id.startswith("validate_")
    )
    state = dag_run.state.value if hasattr(dag_run.state, "value") else str(dag_run.state)
    return DateOutcome(business_date, dag_run.run_id, state, failed_gates, failed_tasks)


logging.getLogger("great_expectations").setLevel(logging.WARNING)
