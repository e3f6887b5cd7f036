"""midoffice_daily: one business date through the whole flow.

Wiring only: every task calls a function of the `midoffice` package, the same function the
`midoffice` command calls. Heavy imports (DuckDB, Great Expectations, pandas) happen inside the
tasks, never while the DAG file is parsed.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Param, PokeReturnValue, TriggerRule, task

from midoffice.contracts import get_feed, ingest_order

WAREHOUSE_POOL = "midoffice_warehouse"  # one slot: build.duckdb has a single writer

DOC_MD = """
### midoffice_daily

Runs **one business date** end to end, given explicitly as `business_date` in the run's conf
(never taken from the logical date or the clock):

0. `wait_<feed>`: waits (rescheduling, not holding a worker slot) until the date's manifest
   lists the feed and its file is there, at most `wait_seconds` (conf, default
   `$MIDOFFICE_WAIT_SECONDS`, else 0: `midoffice run` does not wait). A feed that does not come in
   time is skipped here and reported by ingest as missing: late, not bad data.
1. `ingest_<feed>`: manifest checks (file present, sha256, record count), explicit-schema read,
   staged Parquet partition and quarantine with a reason for every rejected record.
2. `validate_<feed>`: the feed's Great Expectations suite (`expectations/<feed>.json`) on the
   loaded records, then the gate (PASS/FAIL). A FAIL fails the task (no retry: bad data does not
   get better by retrying) and the marts that depend on the feed keep their previous rows.
3. `build_warehouse`: core tables and marts for the date, audited, in one transaction
   (pool `midoffice_warehouse`, one slot).
4. `publish`: atomic swap of `<home>/warehouse/marts.duckdb`.
5. `report`: the daily pack and extracts under `<home>/reports/<date>/`.
6. `notify`: new alerts of the date (limit breach, failed gate, old break, missed target) by
   e-mail through the Airflow connection `midoffice_smtp`, each condition once per date.

Conf: `{"business_date": "YYYY-MM-DD", "landing": "...", "home": "...", "wait_seconds": N}`;
landing and home default to `$MIDOFFICE_LANDING` and `$MIDOFFICE_HOME`. Every task failure is
recorded in the run ledger (`pipeline_runs`) by a failure callback.
"""


def _settings(params: dict):
    from midoffice.config import settings_from

    landing = params.get("landing") or os.environ.get("MIDOFFICE_LANDING")
    if not landing:
        raise ValueError("no landing folder: set conf 'landing' or MIDOFFICE_LANDING")
    return settings_from(landing, params.get("home") or os.environ.get("MIDOFFICE_HOME"))


def _record_failure(context) -> None:
    """on_failure_callback: put the failure in the run ledger (pipeline_runs), not only the logs."""
    from midoffice.control import record_stage, utc_now

    try:
        params = context["params"]
        settings = _settings(params)
        ti = context["ti"]
        record_stage(settings, context["run_id"], _business_date(params), f"task:{ti.task_id}", "FAILED",
                     utc_now(), message=str(context.get("exception") or "failed")[:2000])
    except Exception:  # a callback must never mask the task's own failure
        pass


def _wait_seconds(params: dict) -> int:
    value = params.get("wait_seconds")
    if value is None:
        value = os.environ.get("MIDOFFICE_WAIT_SECONDS", "0")
    return max(0, int(value))


def _business_date(params: dict) -> str:
    from datetime import date

    value = params.get("business_date")
    if not value:
        raise ValueError("no business_date in the run's conf")
    day = date.fromisoformat(str(value))
    if day.weekday() >= 5:
        raise ValueError(f"{value} is not a business date (weekend)")
    return day.isoformat()


with DAG(
    dag_id="midoffice_daily",
    description="One business date: ingest, validate and gate every feed, build, publish, report",
    doc_md=DOC_MD,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={
        "business_date": Param(None, type=["null", "string"], format="date", description="Business date to run"),
        "landing": Param(None, type=["null", "string"], description="Landing folder (default $MIDOFFICE_LANDING)"),
        "home": Param(None, type=["null", "string"], description="midoffice home (default $MIDOFFICE_HOME)"),
        "wait_seconds": Param(None, type=["null", "integer"], description="How long to wait for late files"),
    },
    default_args={
        "retries": 2,  # transient faults (a locked file, a slow disk); bad data fails without retry
        "retry_delay": pendulum.duration(seconds=10),
        "retry_exponential_backoff": True,
        "on_failure_callback": _record_failure,
    },
    tags=["midoffice"],
) as dag:

    @task.sensor(task_id="wait", mode="reschedule", poke_interval=30, timeout=6 * 3600, soft_fail=True, retries=0)
    def wait_for_file(feed: str, params=None, dag_run=None) -> PokeReturnValue:
        from datetime import datetime, timezone

        from midoffice.landing import feed_delivered

        settings, business_date = _settings(params), _business_date(params)
        if feed_delivered(settings.landing, business_date, feed):
            return PokeReturnValue(is_done=True)
        waited = (datetime.now(timezone.utc) - dag_run.start_date).total_seconds() if dag_run else 0
        if waited >= _wait_seconds(params):
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"{business_date} {feed}: not delivered in time; ingest reports it missing")
        return PokeReturnValue(is_done=False)

    @task(task_id="ingest", trigger_rule=TriggerRule.ALL_DONE)
    def ingest(feed: str, params=None, run_id=None) -> dict:
        from midoffice.ingest import ingest_feed

        return ingest_feed(_settings(params), _business_date(params), feed, run_id)

    @task(task_id="validate", retries=0)
    def validate(feed: str, params=None, run_id=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from midoffice.stages import validate_and_gate

        gate = validate_and_gate(_settings(params), _business_date(params), feed, run_id)
        if gate["gate"] != "PASS":
            raise AirflowFailException(gate["reason"])
        return gate

    @task(trigger_rule=TriggerRule.ALL_DONE, pool=WAREHOUSE_POOL)
    def build_warehouse(params=None, run_id=None) -> dict:
        from midoffice.warehouse import build_warehouse as build

        return build(_settings(params), _business_date(params), run_id)

    @task(pool=WAREHOUSE_POOL)
    def publish(params=None, run_id=None) -> dict:
        from midoffice.publish import publish as publish_marts

        return publish_marts(_settings(params), _business_date(params), run_id)

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def report(params=None, run_id=None) -> dict:
        from midoffice.report import build_report

        return build_report(_settings(params), _business_date(params), run_id)

    ingested = {}
    validated = []
    for feed_name in ingest_order():
        waited = wait_for_file.override(task_id=f"wait_{feed_name}")(feed_name)
        ingested[feed_name] = ingest.override(task_id=f"ingest_{feed_name}")(feed_name)
        waited >> ingested[feed_name]
        for upstream in get_feed(feed_name).depends_on:
            ingested[upstream] >> ingested[feed_name]
        check = validate.override(task_id=f"validate_{feed_name}")(feed_name)
        ingested[feed_name] >> check
        validated.append(check)

    @task
    def notify(params=None, run_id=None) -> dict:
        from midoffice.alerts import notify as send_new_alerts

        return send_new_alerts(_settings(params), _business_date(params), run_id)

    built = build_warehouse()
    published = publish()
    validated >> built >> published >> [report(), notify()]
