"""midoffice_ingest: one business date's feeds waited for, ingested, validated and gated.

Wiring only: every task calls a function of the `midoffice` package, the same function the
`midoffice` command calls. Heavy imports (DuckDB, Great Expectations, pandas) happen inside the
tasks, never while the DAG file is parsed.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, CronPartitionTimetable, Param, PokeReturnValue, task

from midoffice.orchestration import (
    FEEDS_TASK, GATES_ASSET, GATES_TASK, INGEST_DAG_ID, PARAMS_DOC, business_date, run_params, settings,
    task_defaults, wait_seconds,
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

Three tasks, however many feeds the contract (`contracts/feeds.yaml`) has:
1. `business_date`: resolves and checks the date, records that this run has it (so the
   watcher does not start it again); a scheduled run that should not go ahead skips everything,
   and so does any run whose date is a FIRM holiday (the landing's calendars.csv): the weekday
   timetable and backfill reach holidays, nothing is ingested or built for them.
   Retried once after 5 s (a worker or metadata-DB fault); a retry finds its own claim.
2. `feeds` (a sensor, rescheduling: it holds no worker slot while it waits): waits until the
   date's manifest lists every feed and its file is there, at most `wait_seconds` (conf, default
   `$MIDOFFICE_WAIT_SECONDS`, else 0); then, for every feed in dependency order, ingests it
   (manifest checks, explicit-schema read, staged Parquet partition, quarantine with a reason
   for every rejected record), runs its Great Expectations suite (`expectations/<feed>.json`)
   and decides its gate (PASS/FAIL). A feed that did not come in time is reported missing: a
   FAIL gate, late rather than bad data. One process validates every feed, so Great
   Expectations is imported once a date, not once a feed. When every gate is decided, emits
   one event of the asset `midoffice_gates_decided` with **partition key = the business date**
   (extra: each feed's gate). A feed whose ingest or validation breaks (a fault, not bad data)
   leaves its gate undecided: the feeds that depend on it wait, the others go on, then the
   task fails and is retried; a retry keeps the gates its run decided and redoes the others.
   A task that fails for good emits nothing: the date is not built until it is cleared.
3. `gates`: fails (red, no retry: bad data does not get better by retrying) when a gate
   failed, naming every failed feed and why; green when all passed. The build goes ahead
   either way: a FAIL gate is a decided gate.

The run ledger (`pipeline_runs`) has each feed's stages (`ingest:<feed>`, `validate:<feed>`),
and `midoffice status` each feed's gate.

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

    # One unit of retry for the date's feeds: Airflow gives nothing back for a task per feed (the
    # feeds are small next to a task's own cost: a process, a DAG parse, importing GX each time).
    @task.sensor(task_id=FEEDS_TASK, mode="reschedule", poke_interval=30, timeout=6 * 3600, soft_fail=False,
                 outlets=[GATES_ASSET])
    def feeds(**context) -> PokeReturnValue:
        from datetime import datetime, timezone

        from midoffice.stages import awaited_feeds, decide_gates

        s, day, dag_run = settings(context), business_date(context), context.get("dag_run")
        waited = (datetime.now(timezone.utc) - dag_run.start_date).total_seconds() if dag_run else 0
        awaited = awaited_feeds(s, day)
        if awaited and waited < wait_seconds(context):
            print(f"{day}: waiting for {', '.join(awaited)}")
            return PokeReturnValue(is_done=False)
        decided = decide_gates(s, day, context["run_id"])  # raises (and is retried) if a gate is undecided
        accessor = context["outlet_events"][GATES_ASSET]
        accessor.add_partitions(day)
        accessor.extra = decided.summary()
        return PokeReturnValue(is_done=True, xcom_value=decided.summary())

    @task(task_id=GATES_TASK, retries=0, multiple_outputs=False)
    def gates(**context) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from midoffice.stages import failed_gates

        day = business_date(context)
        failed = failed_gates(settings(context), day, context["run_id"])
        if failed:
            raise AirflowFailException(f"{day}: gate failed for {len(failed)} feed{'s' if len(failed) > 1 else ''}: "
                                       + "; ".join(f"{feed}: {why}" for feed, why in failed.items()))
        return {"business_date": day, "failed": {}}

    claim_business_date() >> feeds() >> gates()
