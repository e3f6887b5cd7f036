"""midoffice_warehouse: build, publish and report one business date once all its gates are decided.

Wiring only: every task calls a function of the `midoffice` package, the same function the
`midoffice` command calls. Heavy imports happen inside the tasks, never at parse time.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, PartitionedAssetTimetable, TriggerRule, task

from midoffice.orchestration import (
    GATES_ASSET, INGEST_DAG_ID, PARAMS_DOC, WAREHOUSE_DAG_ID, WAREHOUSE_POOL, business_date, run_params, settings,
    task_defaults,
)

DOC_MD = f"""
### {WAREHOUSE_DAG_ID}

Builds, publishes and reports **one business date**, started by Airflow when **every feed of the
date has passed or failed its gate**: the DAG is scheduled by a `PartitionedAssetTimetable` on
the asset `midoffice_gates_decided`, which `{INGEST_DAG_ID}`'s `feeds` task updates with
partition key = the business date once every gate of the date is decided. The run's partition key *is* the business date (checked:
an ISO date on a weekday); a run without one (by hand, or `dag.test()` in `midoffice run`)
takes `business_date` from its conf. Never the logical date, never the clock.

Rerunning a date (a backfill of `{INGEST_DAG_ID}` with `--reprocess-behavior completed`) decides
its gates again and so builds the date again; every step replaces the date's partitions, so
the marts come out the same.

1. `build_warehouse`: core tables of the feeds that passed, marts for the date, audited, in one
   transaction (pool `{WAREHOUSE_POOL}`, one slot: `build.duckdb` has a single writer). Marts
   that depend on a failed feed keep their previous rows; `build_log` says which and why.
2. `publish`: one DuckLake commit (a new version) of the date's marts (same pool).
3. `report`: the daily pack and extracts under `<home>/reports/<date>/`.
4. `notify`: new alerts of the date (limit breach, failed gate, old break, missed target) by
   e-mail through the Airflow connection `midoffice_smtp`, each condition once per date.

One run at a time (`max_active_runs=1`), oldest date first: carried state (breach streaks,
backtests, break ages) is recomputed from the dates before, so dates are built in order.

{PARAMS_DOC}. Every task failure is recorded in the run ledger (`pipeline_runs`) by a failure
callback, and every failed try that is retried by a retry callback (`task:<task>:try<n>`, RETRIED).
"""

with DAG(
    dag_id=WAREHOUSE_DAG_ID,
    description="One business date, once every feed's gate is decided: build, publish, report, notify",
    doc_md=DOC_MD,
    schedule=PartitionedAssetTimetable(assets=GATES_ASSET),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params=run_params(),
    default_args=task_defaults(),
    tags=["midoffice"],
) as dag:

    @task(pool=WAREHOUSE_POOL, multiple_outputs=False)
    def build_warehouse(**context) -> dict:
        from midoffice.warehouse import build_warehouse as build

        return build(settings(context), business_date(context), context["run_id"])

    @task(pool=WAREHOUSE_POOL, multiple_outputs=False)
    def publish(**context) -> dict:
        from midoffice.stages import publish_date

        return publish_date(settings(context), business_date(context), context["run_id"])

    @task(trigger_rule=TriggerRule.ALL_DONE, multiple_outputs=False)
    def report(**context) -> dict:
        from midoffice.report import build_report

        return build_report(settings(context), business_date(context), context["run_id"])

    @task(multiple_outputs=False)
    def notify(**context) -> dict:
        from midoffice.alerts import notify as send_new_alerts

        return send_new_alerts(settings(context), business_date(context), context["run_id"])

    build_warehouse() >> publish() >> [report(), notify()]
