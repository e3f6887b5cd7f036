"""DAG integrity, in the style of Airflow's own example-DAG tests."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DAG_FILES = sorted((REPO / "dags").glob("*.py"))


def test_dag_files_import_without_errors(airflow_home):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert {"midoffice_ingest", "midoffice_warehouse", "midoffice_landing"} <= set(bag.dag_ids)
    for dag in bag.dags.values():
        assert dag.doc_md, f"{dag.dag_id} has no doc_md"


def test_dag_files_parse_without_heavy_imports(airflow_home):
    # What keeps parsing cheap is structural: no DuckDB, GX, pandas or Arrow at module level (the
    # tasks import them). No time is asserted: a CPU-time bound failed on a slow machine, where
    # parsing the landing DAG alone took over a second (Airflow's own provider imports).
    # One process for all DAG files (importing Airflow is most of its time), checked after each
    # file: the first file that pulls a heavy module in is the one named. Nor do the DAG files
    # read the feed contract: their shape cannot depend on how many feeds there are.
    code = "import sys, runpy, airflow.sdk, pendulum\n" + "".join(
        f"runpy.run_path({str(path)!r})\n"
        f"print({path.name!r}, 'HEAVY_IMPORTS', ','.join(m for m in ('duckdb', 'great_expectations', 'pandas', 'pyarrow', 'midoffice.contracts') if m in sys.modules))\n"
        for path in DAG_FILES)
    stdout = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=REPO).stdout
    for path in DAG_FILES:
        heavy = re.search(rf"^{re.escape(path.name)} HEAVY_IMPORTS ?(.*)$", stdout, re.M).group(1)
        assert heavy == "", f"{path.name} imports {heavy} at parse time"


def test_ingest_dag_is_three_tasks_whatever_the_number_of_feeds(airflow_home):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import CronPartitionTimetable

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["midoffice_ingest"]
    assert isinstance(dag.timetable, CronPartitionTimetable)  # backfill walks its business dates
    assert dag.timetable.key_format == "%Y-%m-%d"
    # A date is three task instances, not four a feed: the feeds' wait, ingest, validation and
    # gates are one unit of retry (one process, Great Expectations imported once).
    assert {t.task_id for t in dag.tasks} == {"business_date", "feeds", "gates"}
    assert dag.get_task("business_date").downstream_task_ids == {"feeds"}
    feeds = dag.get_task("feeds")
    assert feeds.downstream_task_ids == {"gates"}
    assert feeds.mode == "reschedule"  # waiting for late files holds no worker slot
    assert feeds.retries == 2 and not feeds.soft_fail  # a fault is retried, never skipped as if late
    assert [a.name for a in feeds.outlets] == ["midoffice_gates_decided"]
    gates = dag.get_task("gates")
    assert gates.retries == 0  # a failed gate is red; bad data does not improve by retrying


def test_warehouse_dag_is_started_by_the_gates_of_one_business_date(airflow_home):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import Asset, PartitionedAssetTimetable

    bag = DagBag(dag_folder=str(REPO / "dags"))
    dag = bag.dags["midoffice_warehouse"]
    assert isinstance(dag.timetable, PartitionedAssetTimetable)
    # one event a date, emitted once every feed's gate is decided (whatever the number of feeds)
    assert isinstance(dag.timetable.asset_condition, Asset)
    assert dag.timetable.asset_condition.name == "midoffice_gates_decided"
    assert dag.max_active_runs == 1
    assert dag.get_task("build_warehouse").pool == "midoffice_warehouse"
    assert dag.get_task("publish").pool == "midoffice_warehouse"
    assert "publish" in dag.get_task("build_warehouse").downstream_task_ids
    assert bag.dags["midoffice_landing"].get_task("trigger_midoffice_ingest").partial_kwargs["trigger_dag_id"] == "midoffice_ingest"


def test_the_business_date_is_the_partition_key_else_the_conf_and_a_weekday():
    import pytest

    from midoffice.orchestration import business_date

    assert business_date({"partition_key": "2026-04-06", "params": {}}) == "2026-04-06"
    assert business_date({"partition_key": None, "params": {"business_date": "2026-04-07"}}) == "2026-04-07"
    assert business_date({"partition_key": "2026-04-06", "params": {"business_date": "2026-04-06"}}) == "2026-04-06"
    for bad in ({"partition_key": "2026-04-04", "params": {}},                 # a Saturday
                {"partition_key": "2026-04-06T00:00:00", "params": {}},        # not a date key
                {"partition_key": "2026-4-6", "params": {}},
                {"partition_key": "2026-04-06", "params": {"business_date": "2026-04-07"}},
                {"partition_key": None, "params": {}}):
        with pytest.raises(ValueError):
            business_date(bad)


def test_midoffice_run_builds_the_execution_api_for_the_task_sdks_version_only(airflow_home):
    """`midoffice run` builds Airflow's in-process execution API with the one version its Task SDK
    speaks (runner.serve_one_api_version: Cadwyn generated a router for each of eleven versions at
    the first task, 3-6 s a run). In a fresh process: the app has that version alone, a request in
    it is served, Airflow's module globals are as they were, and a second call changes nothing.
    Every test that runs a date through the DAGs runs its tasks against this API."""
    code = (
        "import httpx\n"
        "from airflow.api_fastapi.execution_api import routes, versions\n"
        "from airflow.sdk.api.datamodels._generated import API_VERSION\n"
        "from airflow.sdk.execution_time.supervisor import in_process_api_server\n"
        "from midoffice.runner import serve_one_api_version\n"
        "before = (routes.execution_api_router, versions.bundle)\n"
        "assert len(versions.bundle.versions) > 1\n"
        "assert serve_one_api_version()\n"
        "assert (routes.execution_api_router, versions.bundle) == before\n"
        "app = in_process_api_server().app\n"
        "print('VERSIONS', [v.value for v in app.versions], API_VERSION)\n"
        "client = httpx.Client(transport=in_process_api_server().transport, base_url='http://in-process.invalid/',\n"
        "                      headers={'Airflow-API-Version': API_VERSION})\n"
        "print('HEALTH', client.get('/health').status_code)\n"
        "print('AGAIN', serve_one_api_version())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    versions, sdk = re.search(r"^VERSIONS (\[.*\]) (\S+)$", out.stdout, re.M).groups()
    assert versions == f"['{sdk}']"
    assert "HEALTH 200" in out.stdout and "AGAIN False" in out.stdout
