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
    assert "midoffice_daily" in bag.dag_ids
    for dag in bag.dags.values():
        assert dag.doc_md, f"{dag.dag_id} has no doc_md"


def test_dag_files_parse_in_under_a_second_without_heavy_imports(airflow_home):
    # Airflow itself is imported first: what counts is the DAG file's own cost, in CPU time
    # (a busy machine stretches wall time, not the work parsing does).
    for path in DAG_FILES:
        code = (
            "import sys, time, runpy, airflow.sdk, pendulum\n"
            "t = time.process_time()\n"
            f"runpy.run_path({str(path)!r})\n"
            "print('PARSE_SECONDS', time.process_time() - t)\n"
            "print('HEAVY_IMPORTS', ','.join(m for m in ('duckdb', 'great_expectations', 'pandas', 'pyarrow') if m in sys.modules))\n"
        )
        stdout = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=REPO).stdout
        seconds = float(re.search(r"^PARSE_SECONDS (\S+)$", stdout, re.M).group(1))
        heavy = re.search(r"^HEAVY_IMPORTS ?(.*)$", stdout, re.M).group(1)
        assert seconds < 1.0, f"{path.name} took {seconds}s of CPU to parse"
        assert heavy == "", f"{path.name} imports {heavy} at parse time"


def test_daily_dag_wires_every_feed_through_ingest_and_validate(airflow_home):
    from airflow.dag_processing.dagbag import DagBag

    from midoffice.contracts import get_feed, ingest_order

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["midoffice_daily"]
    for feed in ingest_order():
        ingest = dag.get_task(f"ingest_{feed}")
        assert f"validate_{feed}" in ingest.downstream_task_ids
        for dep in get_feed(feed).depends_on:
            assert f"ingest_{feed}" in dag.get_task(f"ingest_{dep}").downstream_task_ids
        assert "build_warehouse" in dag.get_task(f"validate_{feed}").downstream_task_ids
    assert dag.get_task("build_warehouse").pool == "midoffice_warehouse"
    assert dag.get_task("publish").pool == "midoffice_warehouse"
    assert "publish" in dag.get_task("build_warehouse").downstream_task_ids
