"""midoffice_landing: watch the landing folder and start midoffice_daily for each new date.

On a real scheduler this is how business dates get run: when a date's `_manifest.json` appears
under $MIDOFFICE_LANDING, one midoffice_daily run is triggered with that business date in its
conf (run id `business_date__<date>`, so a date is never started twice by this DAG).
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, task

POLL_SECONDS = int(os.environ.get("MIDOFFICE_LANDING_POLL_SECONDS", "60"))

with DAG(
    dag_id="midoffice_landing",
    description="Trigger midoffice_daily for every business date that arrives in the landing folder",
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
        task_id="trigger_midoffice_daily",
        trigger_dag_id="midoffice_daily",
        logical_date=None,
        skip_when_already_exists=True,
        max_active_tis_per_dagrun=1,  # trigger in date order, so dates queue oldest first
    ).expand_kwargs(new_business_dates())
