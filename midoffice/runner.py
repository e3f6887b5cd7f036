"""`midoffice run`: the real DAGs, run in-process by Airflow's own test runner (`dag.test()`).

No parallel code path: the runner loads dags/ through Airflow's DagBag and, for each business
date in order, runs `midoffice_ingest` and then, as the scheduler does once every feed's gate
of the date is decided (the date's `midoffice_gates_decided` event), `midoffice_warehouse`.

The business date reaches both DAGs as `business_date` in the run's conf: `dag.test()` in
Airflow 3.3 cannot give its run a partition key, and the DAGs take the partition key when there
is one, else that conf (midoffice.orchestration.business_date, the one resolver).

Airflow needs a metadata database; unless AIRFLOW_HOME is set, one is kept in <home>/airflow
(SQLite). Do not point `midoffice run` at the metadata DB of a running scheduler: the gate
events its ingest runs emit would start that scheduler's warehouse runs as well.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from midoffice import calendar, duck
from midoffice.config import REPO_ROOT, Settings
from midoffice.contracts import ingest_order

# The same ids as midoffice.orchestration; not imported from there, which imports airflow.sdk
# (airflow must not be imported before prepare_airflow() has set its environment).
INGEST_DAG_ID = "midoffice_ingest"
WAREHOUSE_DAG_ID = "midoffice_warehouse"
FEEDS_TASK, GATES_TASK = "feeds", "gates"
DAGS_FOLDER = REPO_ROOT / "dags"


@dataclass
class DateOutcome:
    business_date: str
    run_id: str
    dag_state: str
    failed_gates: dict[str, str]
    failed_tasks: list[str]
    summary: str = ""  # the date's outcome as `midoffice status` judges it (midoffice.status.one_line)
    log: Path | None = None  # where Airflow's output of the run went (runner.console_to_log)

    @property
    def ok(self) -> bool:
        return self.dag_state == "success" and not self.failed_gates


@dataclass(frozen=True)
class DatePlan:
    """The business dates a range runs, the FIRM holidays in it that it skips, and the
    calendars.csv they come from (None: the landing has none, weekdays only)."""
    dates: list[str]
    holidays_skipped: list[str]
    calendars_file: Path | None


def plan_dates(landing: Path, start: date, end: date) -> DatePlan:
    """FIRM business dates from start to end, by the landing's latest calendars.csv up to the end
    (docs/DESIGN.md, One business calendar)."""
    source = calendar.latest_calendars_file(landing, end)
    holidays = calendar.holidays_in(source)
    weekdays = calendar.business_dates(start, end)
    return DatePlan([d.isoformat() for d in weekdays if d not in holidays],
                    [d.isoformat() for d in weekdays if d in holidays], source)


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
    # The in-process DAG runs are the operator's own: their folders are the configured ones (a
    # run's conf may only name folders inside these, midoffice.orchestration.confined).
    os.environ["MIDOFFICE_LANDING"] = str(settings.landing)
    os.environ["MIDOFFICE_HOME"] = str(settings.home)
    marker = airflow_home / ".midoffice-db-ready"
    if not marker.exists():
        airflow_bin = Path(sys.executable).with_name("airflow")
        subprocess.run(
            [str(airflow_bin), "db", "migrate"], check=True, env=os.environ.copy(),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        marker.write_text("migrated\n")


def serve_one_api_version() -> bool:
    """Build Airflow's in-process execution API for the one API version this process's Task SDK
    speaks, before the first task would build it for all of them.

    `dag.test()` runs each task against the execution API inside this process. Airflow versions
    that API with Cadwyn, which at the first request generates a router for every version the API
    has ever had (eleven in Airflow 3.3): that was most of the first task's time, 3-6 s a
    `midoffice run`. A task here only ever speaks the Task SDK's own version (its API_VERSION,
    the newest), so the API is built with that version alone, and without the routes that exist
    for older clients only. The scheduler's API server is not touched (another process). Returns
    whether it did: not when the API was built already or the SDK speaks another version than
    the newest; if Airflow's internals are not as expected, the API is left to Airflow to build
    as usual (logged).
    """
    from airflow.sdk.execution_time.supervisor import in_process_api_server

    if in_process_api_server.cache_info().currsize:
        return False
    try:
        from cadwyn import HeadVersion, Version, VersionBundle
        from cadwyn.route_generation import _DELETED_ROUTE_TAG
        from fastapi import APIRouter
        from fastapi.routing import APIRoute

        from airflow.api_fastapi.execution_api import routes, versions
        from airflow.sdk.api.datamodels._generated import API_VERSION

        if versions.bundle.versions[0].value != API_VERSION:
            return False
        router = APIRouter()
        router.routes.extend(r for r in routes.execution_api_router.routes
                             if not (isinstance(r, APIRoute) and _DELETED_ROUTE_TAG in r.tags))
        saved = routes.execution_api_router, versions.bundle
        # create_task_execution_api_app() reads both names when it is called: swapped for the call only
        routes.execution_api_router, versions.bundle = router, VersionBundle(HeadVersion(), Version(API_VERSION))
        try:
            app = in_process_api_server().app  # built now, while the names are swapped
        finally:
            routes.execution_api_router, versions.bundle = saved
        return [v.value for v in app.versions] == [API_VERSION]
    except Exception:  # noqa: BLE001 - a faster start is not worth a failed run
        logging.getLogger(__name__).warning("building the in-process execution API for one version failed; "
                                            "Airflow builds it for all", exc_info=True)
        in_process_api_server.cache_clear()
        return False


def load_dags():
    """(midoffice_ingest, midoffice_warehouse), as the DAG processor parses them."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    return bag.dags[INGEST_DAG_ID], bag.dags[WAREHOUSE_DAG_ID]


def run_dates(settings: Settings, dates: list[str], progress=print) -> list[DateOutcome]:
    """Every date through both DAGs, oldest first. What is paid once a process (the metadata DB,
    importing Airflow, parsing the DAGs, the execution API that the first task starts) is paid
    here once for all the dates, not once a date."""
    prepare_airflow(settings)
    outcomes = []
    log_path = run_log_path(settings)
    with console_to_log(log_path) as say:
        # Inside the log: importing Airflow's providers while the DAGs are parsed prints
        # deprecation warnings that are Airflow's, not the operator's business.
        from airflow.models.pool import Pool

        Pool.create_or_update_pool("midoffice_warehouse", slots=1, include_deferred=False,
                                   description="Single writer of the midoffice warehouse file")
        ingest_dag, warehouse_dag = load_dags()
        serve_one_api_version()
        started = time.monotonic()
        for i, business_date in enumerate(dates, start=1):
            done = time.monotonic() - started
            eta = f" (about {_duration(done / (i - 1) * (len(dates) - i + 1))} left)" if i > 1 else ""
            say(progress, f"[{i}/{len(dates)}] {business_date}: running {INGEST_DAG_ID}, {WAREHOUSE_DAG_ID}{eta}…")
            t0 = time.monotonic()
            conf = {"business_date": business_date}  # landing and home: MIDOFFICE_LANDING and _HOME (prepare_airflow)
            ingest_run = ingest_dag.test(run_conf=conf, logical_date=None)
            warehouse_run = None
            if _gates_decided(ingest_run):  # the scheduler's condition: the date's gates event emitted
                warehouse_run = warehouse_dag.test(run_conf=conf, logical_date=None)
            outcomes.append(_outcome(settings, business_date, ingest_run, warehouse_run))
            outcomes[-1].log = log_path
            say(progress, f"[{i}/{len(dates)}] {business_date}: {outcomes[-1].summary} "
                          f"in {_duration(time.monotonic() - t0)}")
            why = duck.held_by_failed_commit().get(settings.build_db.resolve())
            if why and i < len(dates):  # every later date would fail at its build: say so once
                say(progress, f"stopped after {business_date}: {', '.join(dates[i:])} not run. {why[:1].upper()}{why[1:]}, "
                              f"and this process cannot open the build again; a new one can: run again from {business_date}.")
                break
    return outcomes


def run_log_path(settings: Settings) -> Path:
    """Where a `midoffice run` writes what Airflow and the tasks print (tracebacks included)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return settings.home / "logs" / f"run-{stamp}-{os.getpid()}.log"


@contextmanager
def console_to_log(path: Path):
    """Everything this process (and its children) writes to stdout and stderr goes to `path`
    while the DAGs run: Airflow prints a task's traceback even when the failure is expected (a
    gate), and the operator needs one line per date, not 37 per failure. `say(progress, text)`
    still reaches the console; the CLI's failure lines name the log."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    with open(path, "ab") as log:  # opened first: if it cannot be, nothing is redirected
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        try:
            with open(os.dup(saved[2]), "w", buffering=1, encoding="utf-8", errors="replace") as console:
                for fd in (1, 2):
                    os.dup2(log.fileno(), fd)

                def say(progress, text: str) -> None:
                    with redirect_stderr(console), redirect_stdout(console):
                        progress(text)

                yield say
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)


def _duration(seconds: float) -> str:
    """7.3s under a minute (a date takes seconds: the tenths say something), 1m07s above."""
    if seconds < 59.95:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s"


def _state(value) -> str:
    return value.value if hasattr(value, "value") else str(value)


def _gates_decided(ingest_run) -> bool:
    """Did the ingest run emit the date's gates event (its `feeds` task succeeded)?"""
    return any(ti.task_id == FEEDS_TASK and _state(ti.state) == "success" for ti in ingest_run.get_task_instances())


def _outcome(settings: Settings, business_date: str, ingest_run, warehouse_run) -> DateOutcome:
    from midoffice.gate import gates_for

    gates = gates_for(settings, business_date, ingest_order())
    failed_gates = {f: g.get("reason") or "failed" for f, g in gates.items() if g.get("gate") != "PASS"}
    runs = [r for r in (ingest_run, warehouse_run) if r is not None]
    failed_tasks = sorted(  # the `gates` task fails by design when a gate failed: failed_gates says it
        f"{r.dag_id}.{ti.task_id}" for r in runs for ti in r.get_task_instances()
        if _state(ti.state) not in ("success", "skipped") and not (r is ingest_run and ti.task_id == GATES_TASK)
    )
    if warehouse_run is None:
        failed_tasks.append(f"{WAREHOUSE_DAG_ID} (not started: the feeds' gates were not all decided)")
        state = "failed"
    else:
        states = [_state(r.state) for r in runs]
        state = "success" if all(s == "success" for s in states) else "failed"
    last = warehouse_run or ingest_run
    from midoffice.status import date_status, one_line

    return DateOutcome(business_date, last.run_id, state, failed_gates, failed_tasks,
                       summary=one_line(date_status(settings, business_date)))


logging.getLogger("great_expectations").setLevel(logging.WARNING)
