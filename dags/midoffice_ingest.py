"""midoffice_ingest: one business date's feeds, each waited for, ingested, validated and gated.

Wiring only: every task calls a function of the `midoffice` package, the same function the
`midoffice` command calls. Heavy imports (DuckDB, Great Expectations, pandas) happen inside the
tasks, never while the DAG file is parsed.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, CronPartitionTimetable, Param, PokeReturnValue, TriggerRule, task

from midoffice.contracts import get_feed, ingest_order
from midoffice.orchestration import (
    GATE_ASSETS, INGEST_DAG_ID, PARAMS_DOC, WAREHOUSE_DAG_ID, business_date, task_defaults,
    run_params, settings, wait_seconds,
)

DOC_MD = f"""
### {INGEST_DAG_ID}

Runs the feeds of **one business date**: the run's **partition key** (`YYYY-MM-DD`, a weekday),
or `business_date` in the run's conf for a run that has no partition key. Never the logical
date or the clock.

Where runs come from:
- **the landing watcher** (`midoffice_landing`) triggers a run when a date's `_manifest.json`
  arrives, with the date in the conf (Airflow 3.3's Task SDK cannot give a triggered run a
  partition key);
- **backfill**: `airflow backfill create --dag-id {INGEST_DAG_ID} --from-date D1 --to-date D2
  --max-active-runs 1` creates one run per weekday in the range, partition key = the date;
  `--reprocess-behavior completed` runs dates again that a backfill already ran (idempotent);
- **the schedule**: a weekday partition timetable (00:00 UTC, the previous weekday's date). It
  is what lets backfill enumerate business dates; a scheduled run only goes ahead if its date
  has been delivered and no other run has it yet (the watcher normally has); otherwise it skips.

Tasks:
0. `business_date`: resolves and checks the date, records that this run has it (so the
   watcher does not start it again); a scheduled run that should not go ahead skips everything,
   and so does any run whose date is a FIRM holiday (the landing's calendars.csv): the weekday
   timetable and backfill reach holidays, nothing is ingested or built for them.
   Retried once after 5 s (a worker or metadata-DB fault); a retry finds its own claim.
1. `wait_<feed>`: waits (rescheduling, not holding a worker slot) until the date's manifest
   lists the feed and its file is there, at most `wait_seconds` (conf, default
   `$MIDOFFICE_WAIT_SECONDS`, else 0). A feed that does not come in time is skipped here and
   reported by ingest as missing: late, not bad data.
2. `ingest_<feed>` (runs after a skipped wait, not after a failed claim or a failed upstream
   feed): manifest checks (file present, sha256, record count), explicit-schema read,
   staged Parquet partition and quarantine with a reason for every rejected record.
3. `validate_<feed>`: the feed's Great Expectations suite (`expectations/<feed>.json`) on the
   loaded records, then the gate (PASS/FAIL). A FAIL fails the task (no retry: bad data does not
   get better by retrying).
4. `decided_<feed>` (runs whether validate passed or failed): emits an event of the asset
   `midoffice_gate_decided__<feed>` with **partition key = the business date** (extra: the
   gate and its reason) once this run has decided the feed's gate. If ingest or validate broke
   (no gate decided), it fails instead and the date is not built until the task is cleared.

When all thirteen feeds of a date have an event for that key, Airflow starts
`{WAREHOUSE_DAG_ID}` for the date (a `PartitionedAssetTimetable`).

{PARAMS_DOC}, `wait_seconds`. Every task failure is recorded in the run ledger (`pipeline_runs`)
by a failure callback, and every failed try that is retried by a retry callback
(`task:<task>:try<n>`, RETRIED).
"""

with DAG(
    dag_id=INGEST_DAG_ID,
    description="One business date: wait for, ingest, validate and gate every feed",
    doc_md=DOC_MD,
    # Weekdays at 00:00 UTC, each run for the previous weekday: the calendar of business dates
    # that `airflow backfill create` walks (partition key = the date). A FIRM holiday among them
    # is skipped by the `business_date` task (a cron cannot hold a delivered holiday calendar).
    schedule=CronPartitionTimetable("0 0 * * 1-5", timezone="UTC", run_offset=-1, key_format="%Y-%m-%d"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={
        **run_params(),
        "wait_seconds": Param(None, type=["null", "integer"], description="How long to wait for late files"),
    },
    default_args=task_defaults(),
    tags=["midoffice"],
) as dag:

    # One quick retry: a claim that lost its worker or the metadata DB under load is retried; the
    # claim is idempotent for the run that made it.
    @task.short_circuit(task_id="business_date", ignore_downstream_trigger_rules=True, retries=1,
                        retry_delay=pendulum.duration(seconds=5), retry_exponential_backoff=False)
    def claim_business_date(**context) -> bool:
        from midoffice.discovery import claim, hand_over, is_delivered, is_firm_holiday

        day, s, run_id = business_date(context), settings(context), context["run_id"]
        if is_firm_holiday(s, day):  # the weekday schedule or a backfill reached a holiday
            print(f"{day}: a FIRM holiday (the landing's calendars.csv): not a business date, nothing to run")
            return False
        run_type = context["dag_run"].run_type
        if str(getattr(run_type, "value", run_type)) == "scheduled":
            if not is_delivered(s, day):
                print(f"{day}: nothing delivered yet; the landing watcher starts the date when it arrives")
                return False
            if not claim(s, day, run_id):
                print(f"{day}: another run has the date already")
                return False
            return True
        hand_over(s, day, run_id)  # so that the landing watcher does not start the date again
        return True

    @task.sensor(task_id="wait", mode="reschedule", poke_interval=30, timeout=6 * 3600, soft_fail=True, retries=0)
    def wait_for_file(feed: str, **context) -> PokeReturnValue:
        from datetime import datetime, timezone

        from midoffice.landing import feed_delivered

        s, day, dag_run = settings(context), business_date(context), context.get("dag_run")
        if feed_delivered(s.landing, day, feed):
            return PokeReturnValue(is_done=True)
        waited = (datetime.now(timezone.utc) - dag_run.start_date).total_seconds() if dag_run else 0
        if waited >= wait_seconds(context):
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"{day} {feed}: not delivered in time; ingest reports it missing")
        return PokeReturnValue(is_done=False)

    # none_failed: a late file (its wait skipped) is still ingested and reported missing, but a
    # failed claim or a failed upstream feed stops the feed (it is not built from a run that does
    # not hold the date, nor checked against reference data that did not load).
    # multiple_outputs=False: the result is one XCom, not one per key (each is an API call).
    @task(task_id="ingest", trigger_rule=TriggerRule.NONE_FAILED, multiple_outputs=False)
    def ingest(feed: str, **context) -> dict:
        from midoffice.ingest import ingest_feed

        return ingest_feed(settings(context), business_date(context), feed, context["run_id"])

    @task(task_id="validate", retries=0, multiple_outputs=False)
    def validate(feed: str, **context) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from midoffice.stages import validate_and_gate

        gate = validate_and_gate(settings(context), business_date(context), feed, context["run_id"])
        if gate["gate"] != "PASS":
            raise AirflowFailException(gate["reason"])
        return gate

    @task(task_id="decided", trigger_rule=TriggerRule.ALL_DONE, retries=0, multiple_outputs=False)
    def gate_decided(feed: str, **context) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from midoffice.control import read_record

        day, run_id = business_date(context), context["run_id"]
        gate = read_record(settings(context), "gate", feed, day) or {}
        if gate.get("run_id") != run_id or gate.get("gate") not in ("PASS", "FAIL"):
            raise AirflowFailException(
                f"{day} {feed}: this run decided no gate (ingest or validate did not finish); "
                "clear the failed task to retry, the date is built once every gate is decided")
        event = {"business_date": day, "feed": feed, "gate": gate["gate"], "reason": gate.get("reason"),
                 "run_id": run_id}
        accessor = context["outlet_events"][GATE_ASSETS[feed]]
        accessor.add_partitions(day)
        accessor.extra = event
        return event

    claimed = claim_business_date()
    ingested = {}
    for feed_name in ingest_order():
        waited = wait_for_file.override(task_id=f"wait_{feed_name}")(feed_name)
        claimed >> waited
        ingested[feed_name] = ingest.override(task_id=f"ingest_{feed_name}")(feed_name)
        waited >> ingested[feed_name]
        for upstream in get_feed(feed_name).depends_on:
            ingested[upstream] >> ingested[feed_name]
        checked = validate.override(task_id=f"validate_{feed_name}")(feed_name)
        ingested[feed_name] >> checked
        checked >> gate_decided.override(task_id=f"decided_{feed_name}", outlets=[GATE_ASSETS[feed_name]])(feed_name)
