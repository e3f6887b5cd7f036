"""midoffice_landing: watch the landing folder and start midoffice_ingest for each new date.

On a real scheduler this is how business dates get run: when a date's `_manifest.json` appears
under $MIDOFFICE_LANDING, one midoffice_ingest run is triggered with that business date in its
conf (run id `business_date__<date>`, so a date is never started twice by this DAG; a date that
another run already has, e.g. a backfill, is not started either). The date's gates, once
decided, start midoffice_warehouse through the gate assets.

The business date goes in the conf, not as the run's partition key: Airflow 3.3's Task SDK
(TriggerDagRunOperator) cannot set a partition key on the run it triggers.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, task

from midoffice.orchestration import INGEST_DAG_ID

POLL_SECONDS = int(os.environ.get("MIDOFFICE_LANDING_POLL_SECONDS", "60"))

with DAG(
    dag_id="midoffice_landing",
    description="Trigger midoffice_ingest for every business date that arrives in the landing folder",
    doc_md=__doc__,
    schedule=pendulum.duration(seconds=POLL_SECONDS),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=5)},
    tags=["midoffice"],
) as dag:

    @task
    def new_business_dates() -> list[dict]:
        from midoffice.config import settings_from
        from midoffice.discovery import take_new_dates

        settings = settings_from(os.environ["MIDOFFICE_LANDING"], os.environ.get("MIDOFFICE_HOME"))
        return [
            {"conf": {"business_date": d}, "trigger_run_id": f"business_date__{d}"}
            for d in take_new_dates(settings)
        ]

    TriggerDagRunOperator.partial(
        task_id="trigger_midoffice_ingest",
        trigger_dag_id=INGEST_DAG_ID,
        logical_date=None,
        skip_when_already_exists=True,
        max_active_tis_per_dagrun=1,  # trigger in date order, so dates queue oldest first
    ).expand_kwargs(new_business_dates())
