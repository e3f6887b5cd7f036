"""What the Airflow DAGs share: the gates asset, the business date of a run, settings, the
failure callback.

Imported by the DAG files at parse time, so it imports nothing heavy (no DuckDB, GX, pandas):
only the standard library and `airflow.sdk`, which the DAG files import anyway.

The business date of a run is its **partition key** (a weekday ISO date: scheduled, backfill
and asset-triggered runs carry one), else `business_date` in the run's conf (a run started by
the landing watcher, by hand, or by `dag.test()` in `midoffice run`: Airflow 3.3's Task SDK and
`dag.test()` cannot set a partition key on the runs they create). Never the logical date, never
the clock.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

from airflow.sdk import Asset, Param

INGEST_DAG_ID = "midoffice_ingest"
WAREHOUSE_DAG_ID = "midoffice_warehouse"
WAREHOUSE_POOL = "midoffice_warehouse"  # one slot: build.duckdb has a single writer
FEEDS_TASK = "feeds"  # midoffice_ingest's task that waits for, ingests, validates and gates every feed
GATES_TASK = "gates"  # ... and the one that is red when a gate failed

# Updated, with partition key = the business date, once every feed's gate of the date is decided
# (PASS or FAIL; the extra says which). One asset whatever the number of feeds: the warehouse DAG
# waits for one event a date, and a feed added to the contract changes no DAG.
GATES_ASSET = Asset(name="midoffice_gates_decided", uri="midoffice://gates-decided", group="midoffice")


def check_business_date(value) -> str:
    """A business date as the pipeline takes it: an ISO date (YYYY-MM-DD) on a weekday."""
    text = str(value)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"business date {text!r} is not an ISO date (YYYY-MM-DD)") from None
    if day.isoformat() != text:
        raise ValueError(f"business date {text!r} is not an ISO date (YYYY-MM-DD)")
    if day.weekday() >= 5:
        raise ValueError(f"{text} is not a business date (weekend)")
    return text


def business_date(context) -> str:
    """The run's business date: its partition key, else conf `business_date`; both must agree."""
    key = context.get("partition_key")
    conf = (context.get("params") or {}).get("business_date")
    if key and conf and str(conf) != str(key):
        raise ValueError(f"conf business_date {conf} contradicts the run's partition key {key}")
    value = key or conf
    if not value:
        raise ValueError("the run has neither a partition key nor a business_date in its conf")
    return check_business_date(value)


ALLOWED_ROOTS_ENV = "MIDOFFICE_ALLOWED_ROOTS"  # folders a run's conf may name (os.pathsep between them)


def allowed_roots(name: str) -> list[Path]:
    """Where a run's conf may point `landing` (or `home`): the configured MIDOFFICE_LANDING (or
    MIDOFFICE_HOME) and the folders listed in MIDOFFICE_ALLOWED_ROOTS, with what lies under them.
    Each its own: a conf landing inside the home (its lake, its reports) is refused."""
    listed = [p for p in os.environ.get(ALLOWED_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    configured = os.environ.get("MIDOFFICE_LANDING" if name == "landing" else "MIDOFFICE_HOME")
    return [Path(p).resolve() for p in listed + ([configured] if configured else [])]


def confined(name: str, value: str) -> str:
    """A folder named by a run's conf, if it lies in an allowed root. Whoever may trigger a DAG
    must not make it publish another folder's feeds into the real home, or write anywhere the
    worker can."""
    path = Path(value).resolve()
    roots = allowed_roots(name)
    if not any(path == root or path.is_relative_to(root) for root in roots):
        raise ValueError(f"conf {name} {value} is outside the configured folders "
                         f"({', '.join(map(str, roots)) or 'none'}); add its root to {ALLOWED_ROOTS_ENV} "
                         "in the workers' environment to allow it")
    return str(path)


def settings(context):
    from midoffice.config import settings_from

    params = context.get("params") or {}
    landing = confined("landing", params["landing"]) if params.get("landing") else os.environ.get("MIDOFFICE_LANDING")
    if not landing:
        raise ValueError("no landing folder: set MIDOFFICE_LANDING (or conf 'landing' inside an allowed root)")
    home = confined("home", params["home"]) if params.get("home") else os.environ.get("MIDOFFICE_HOME")
    return settings_from(landing, home)


def wait_seconds(context) -> int:
    value = (context.get("params") or {}).get("wait_seconds")
    if value is None:
        value = os.environ.get("MIDOFFICE_WAIT_SECONDS", "0")
    return max(0, int(value))


def record_failure(context) -> None:
    """on_failure_callback: put the failure in the run ledger (pipeline_runs), not only the logs."""
    _record_task(context, "FAILED", per_try=False)


def record_retry(context) -> None:
    """on_retry_callback: a failed try that Airflow retries is in the ledger too, each try its own
    row (`task:<task>:try<n>`, RETRIED), so a date that succeeded on a retry still shows the
    time and the error of the try that did not."""
    _record_task(context, "RETRIED", per_try=True)


def _record_task(context, status: str, per_try: bool) -> None:
    from midoffice.control import record_stage, utc_now

    try:
        ti = context["ti"]
        stage = f"task:{ti.task_id}:try{ti.try_number}" if per_try else f"task:{ti.task_id}"
        record_stage(settings(context), context["run_id"], business_date(context), stage, status, utc_now(),
                     message=str(context.get("exception") or status.lower())[:2000])
    except Exception:  # a callback must never mask the task's own failure
        pass


def task_defaults() -> dict:
    """Every task of both DAGs: retries for transient faults (a locked file, a slow disk; bad data
    fails without retry where a task says so), and every failed or retried try in the run ledger."""
    from datetime import timedelta

    return {
        "retries": 2,
        "retry_delay": timedelta(seconds=10),
        "retry_exponential_backoff": True,
        "on_failure_callback": record_failure,
        "on_retry_callback": record_retry,
    }


def run_params() -> dict:
    """The conf both DAGs take (a new dict of Params for each DAG)."""
    return {
        "business_date": Param(None, type=["null", "string"], format="date",
                               description="Business date, for a run without a partition key"),
        "landing": Param(None, type=["null", "string"],
                         description="Landing folder (default $MIDOFFICE_LANDING; only inside $MIDOFFICE_ALLOWED_ROOTS)"),
        "home": Param(None, type=["null", "string"],
                      description="midoffice home (default $MIDOFFICE_HOME; only inside $MIDOFFICE_ALLOWED_ROOTS)"),
    }


PARAMS_DOC = (
    "Conf (all optional): `business_date` (only for a run without a partition key), `landing` and "
    "`home` (default `$MIDOFFICE_LANDING`, `$MIDOFFICE_HOME`; another folder only inside `$MIDOFFICE_ALLOWED_ROOTS`)"
)
