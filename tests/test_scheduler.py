"""The real scheduler: business dates dropped into the landing folder get run and published, and
`airflow backfill create` over a range gives the marts a one-by-one run gives.

Two deployments of the same DAGs:
- LocalExecutor on SQLite (as `airflow standalone` runs it): the landing watcher, then backfills
  on the same cluster (one cluster start: the suite runs on two cores);
- CeleryExecutor with Redis as broker, PostgreSQL as metadata DB and two Celery workers (the
  deployment docker-compose.yml describes), using the PostgreSQL and Redis on 127.0.0.1.

The flow under test: the watcher triggers `midoffice_ingest` per date; its `feeds` task decides
every feed's gate and emits one gates-asset event keyed by the business date; Airflow starts
`midoffice_warehouse` for that date (PartitionedAssetTimetable). The deployment's local settings
preload the heavy libraries in the scheduler and the Celery workers (midoffice.preload).
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from airflow_cluster import DISTRIBUTED_SETTINGS, AirflowCluster, service_reachable
from conftest import REPO, published as open_lake, generate_landing, run_pipeline
from test_crash import NOT_COMPARED, table_checksums

from midoffice.contracts import feed_names

pytestmark = pytest.mark.slow

DATES = ["2026-04-06", "2026-04-07"]
TRADES = 400
WAIT_SECONDS = 600
INGEST, WAREHOUSE = "midoffice_ingest", "midoffice_warehouse"


def _drop_dates(tmp_path: Path, dates: list[str] = DATES) -> Path:
    """Generate elsewhere, then move the dates in, manifest last (as a sender would)."""
    staging = generate_landing(tmp_path / "outbox", dates[0], len(dates), TRADES, seed=21)
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "_SAMPLE_DATA").write_text((staging / "_SAMPLE_DATA").read_text())
    for d in dates:
        (landing / d).mkdir()
        for f in sorted((staging / d).iterdir()):
            if f.name != "_manifest.json":
                f.rename(landing / d / f.name)
        (staging / d / "_manifest.json").rename(landing / d / "_manifest.json")
    return landing


def _runs(cluster: AirflowCluster, dag_id: str) -> list[dict]:
    """The DAG's runs in the order they were created (run_after: the time a run may start)."""
    try:
        runs = cluster.api(f"/api/v2/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]
    except Exception:
        return []
    return sorted(runs, key=lambda r: (r["run_after"], r["dag_run_id"]))


def _date_of(run: dict) -> str | None:
    return run.get("partition_key") or (run.get("conf") or {}).get("business_date")


def _finished(run: dict) -> bool:
    return run["state"] in ("success", "failed")


def _wait_for(cluster: AirflowCluster, what: str, done) -> None:
    deadline = time.time() + WAIT_SECONDS
    while time.time() < deadline:
        if done():
            return
        time.sleep(3)
    raise AssertionError(f"{what}: not done in {WAIT_SECONDS}s\n"
                         f"ingest: {[(_date_of(r), r['run_type'], r['state']) for r in _runs(cluster, INGEST)]}\n"
                         f"warehouse: {[(_date_of(r), r['state']) for r in _runs(cluster, WAREHOUSE)]}\n"
                         f"{cluster.logs()}")


def _wait_for_warehouse_runs(cluster: AirflowCluster, count: int) -> list[dict]:
    """Until `count` warehouse runs exist and all have finished (and no ingest run is active)."""
    def done():
        runs = _runs(cluster, WAREHOUSE)
        ingest_active = [r for r in _runs(cluster, INGEST) if not _finished(r)]
        return len(runs) >= count and all(_finished(r) for r in runs) and not ingest_active
    _wait_for(cluster, f"{count} {WAREHOUSE} runs", done)
    return _runs(cluster, WAREHOUSE)


def _tis(cluster: AirflowCluster, dag_id: str, run_id: str) -> list[dict]:
    return cluster.api(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]


def _task_logs(cluster: AirflowCluster, dag_id: str, run_id: str, task_id: str) -> str:
    """The end of every try's log of one task (for a failure message: why did it fail?)."""
    folder = cluster.airflow_home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    return "\n".join(f"==== {log.name}\n{log.read_text()[-3000:]}" for log in sorted(folder.rglob("*.log"))) \
        or f"(no log under {folder})"


def _other_ingest_runs(cluster: AirflowCluster, dates: list[str] = DATES) -> str:
    """The ingest runs for dates nobody dropped, with their tasks' states (for a failure message)."""
    lines = []
    for run in _runs(cluster, INGEST):
        if _date_of(run) not in dates:
            states = {ti["task_id"]: ti["state"] for ti in _tis(cluster, INGEST, run["dag_run_id"])}
            lines.append(f"{run['dag_run_id']} {run['run_type']} {run['state']}: {states}")
    return "ingest runs for other dates:\n" + "\n".join(lines) + f"\n{cluster.logs()}"


def _check_watcher_runs(cluster: AirflowCluster, dates: list[str] = DATES) -> list[dict]:
    """Each dropped date ran once through both DAGs, every task green, dates in order."""
    ingest = {_date_of(r): r for r in _runs(cluster, INGEST) if _date_of(r) in dates}
    assert sorted(ingest) == dates
    for d, run in ingest.items():
        assert run["state"] == "success" and run["conf"]["business_date"] == d, run
        assert run["dag_run_id"] == f"business_date__{d}"  # started by the watcher
        assert {ti["state"] for ti in _tis(cluster, INGEST, run["dag_run_id"])} == {"success"}
    warehouse = _wait_for_warehouse_runs(cluster, len(dates))
    assert [(r["partition_key"], r["run_type"], r["state"]) for r in warehouse] == \
        [(d, "asset_triggered", "success") for d in dates], _other_ingest_runs(cluster, dates)
    for run in warehouse:
        assert run["logical_date"] is None
        assert {ti["state"] for ti in _tis(cluster, WAREHOUSE, run["dag_run_id"])} == {"success"}
    # Any other ingest run is the schedule's own run for a date nobody delivered: it skipped.
    for run in _runs(cluster, INGEST):
        if _date_of(run) not in dates:
            assert run["run_type"] == "scheduled", run
            states = {ti["task_id"]: ti["state"] for ti in _tis(cluster, INGEST, run["dag_run_id"])}
            assert states.pop("business_date") == "success" and set(states.values()) <= {"skipped"}, \
                f"{states}\n{_task_logs(cluster, INGEST, run['dag_run_id'], 'business_date')}"
    return warehouse


def _check_published(home: Path, dates: list[str] = DATES, lake_env: dict[str, str] | None = None) -> None:
    if lake_env:  # the lake as the cluster's processes configured it (a PostgreSQL catalog)
        from midoffice.config import Settings
        from midoffice.lake import reader

        con = reader(Settings(landing=home, home=home, lake_catalog=lake_env["MIDOFFICE_LAKE_CATALOG"],
                              lake_data=lake_env["MIDOFFICE_LAKE_DATA"]))
    else:
        con = open_lake(home)
    try:
        published = [str(r[0]) for r in con.execute("SELECT DISTINCT as_of_date FROM risk_exposure ORDER BY 1").fetchall()]
        gates = con.execute("SELECT count(*) FILTER (WHERE gate = 'PASS'), count(*) FROM dq_feed_health").fetchone()
    finally:
        con.close()
    assert published == dates
    feeds = len(feed_names())
    assert gates == (feeds * len(dates), feeds * len(dates))


def _backfill(cluster: AirflowCluster, first: str, last: str, *extra: str) -> None:
    cluster.airflow("backfill", "create", "--dag-id", INGEST, "--from-date", first, "--to-date", last,
                    "--max-active-runs", "1", *extra)


def _wait_for_backfills(cluster: AirflowCluster) -> None:
    def done():
        backfills = cluster.api(f"/api/v2/backfills?dag_id={INGEST}")["backfills"]
        return backfills and all(b["completed_at"] for b in backfills)
    _wait_for(cluster, "backfills", done)


@pytest.mark.long
def test_local_executor_runs_dropped_dates_and_backfills_give_the_one_by_one_marts(tmp_path, airflow_home):
    landing = _drop_dates(tmp_path)
    # The reference: the same dates one by one, in-process (`midoffice run`: the same DAG code).
    reference = tmp_path / "reference"
    assert all(o.ok for o in run_pipeline(landing, reference, DATES))
    expected = table_checksums(reference)

    home = tmp_path / "home"
    marts = home
    cluster = AirflowCluster(root=tmp_path / "cluster", landing=landing, home=home)
    try:
        cluster.start()
        # 1. The landing watcher: one ingest run per dropped date, then one warehouse run per date.
        _wait_for(cluster, "watcher-triggered ingest runs",
                  lambda: sum(_finished(r) for r in _runs(cluster, INGEST) if _date_of(r) in DATES) == len(DATES))
        _check_watcher_runs(cluster)
        _check_published(home)
        assert table_checksums(marts) == expected

        # 2. Backfill over the range: runs with partition key = business date, dates in order.
        #    (The watcher's runs carry the date in their conf, not as a partition key, so backfill
        #    does not count them as done: the dates run again, and must come out the same.)
        #    They are published: running them again is a restatement, whose reason is recorded
        #    first (`midoffice restate`, as an operator does before triggering a scheduler rerun).
        for day in DATES:
            restate = subprocess.run([sys.executable, "-m", "midoffice.cli", "restate", "--date", day, "--reason",
                                      "backfill over the watcher's dates", "--by", "ops", "--home", str(home)],
                                     capture_output=True, text=True, cwd=REPO)
            assert restate.returncode == 0, restate.stderr
        _backfill(cluster, DATES[0], DATES[-1])
        _wait_for_backfills(cluster)
        warehouse = _wait_for_warehouse_runs(cluster, 2 * len(DATES))
        backfilled = [r for r in _runs(cluster, INGEST) if r["run_type"] == "backfill"]
        assert [(r["partition_key"], r["state"]) for r in backfilled] == [(d, "success") for d in DATES]
        assert [(r["partition_key"], r["state"]) for r in warehouse[len(DATES):]] == [(d, "success") for d in DATES]
        assert table_checksums(marts) == expected
        # ...recorded as restatements that changed no row, with the reason given
        con = open_lake(home)
        try:
            # the run ledger (pipeline_runs) records which run did what: it differs by design, as in
            # the checksums above
            restated = con.execute("SELECT as_of_date::VARCHAR, sum(rows_added + rows_removed + rows_changed) "
                                   "FILTER (WHERE NOT list_contains(?, mart)), "
                                   "bool_and(reason LIKE '%backfill over the watcher%') FROM restatements "
                                   "GROUP BY 1 ORDER BY 1", [sorted(NOT_COMPARED)]).fetchall()
        finally:
            con.close()
        assert restated == [(d, 0, True) for d in DATES]

        # 3. Without --reprocess-behavior, dates a backfill has run are not run again. (Running them
        #    again, `--reprocess-behavior completed`, is Airflow's; that a date run again gives the
        #    same marts is step 2 here and tests/test_pipeline.py's rerun test: not repeated, for
        #    the suite's time budget.)
        before = len(_runs(cluster, INGEST))
        _backfill(cluster, DATES[0], DATES[-1])
        assert len(_runs(cluster, INGEST)) == before
    finally:
        cluster.stop()


def _postgres_database() -> str:
    import psycopg2

    name = "midoffice_test_" + uuid.uuid4().hex[:8]
    con = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    con.close()
    return name


def _drop_postgres_database(name: str) -> None:
    import psycopg2

    con = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    con.close()


@pytest.mark.skipif(not service_reachable("127.0.0.1", 5432), reason="PostgreSQL is not running on 127.0.0.1:5432 (see README: starting the services)")
@pytest.mark.skipif(not service_reachable("127.0.0.1", 6379), reason="Redis is not running on 127.0.0.1:6379 (see README: starting the services)")
def test_celery_executor_with_two_workers_redis_and_postgres(tmp_path):
    # One date: the dates' order under the scheduler is the LocalExecutor test's; this one is the
    # distributed deployment (the suite's time budget: each date is ~50 task processes).
    dates = DATES[:1]
    landing = _drop_dates(tmp_path, dates)
    database, lake_database = _postgres_database(), _postgres_database()
    # the distributed deployment's lake: its catalog in PostgreSQL, its data files on a path every worker reaches
    lake_env = {"MIDOFFICE_LAKE_CATALOG": f"postgresql://postgres@127.0.0.1:5432/{lake_database}",
                "MIDOFFICE_LAKE_DATA": str(tmp_path / "shared" / "lake_data"),
                "MIDOFFICE_ACTIONS_URL": f"postgresql://postgres@127.0.0.1:5432/{lake_database}"}
    assert set(lake_env) == set(DISTRIBUTED_SETTINGS)  # what docker-compose.yml sets (tests/test_compose.py)
    redis_db = 1 + int(uuid.uuid4().int % 14)
    cluster = AirflowCluster(
        root=tmp_path / "cluster", landing=landing, home=tmp_path / "home",
        executor="CeleryExecutor",
        sql_alchemy_conn=f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}",
        broker_url=f"redis://127.0.0.1:6379/{redis_db}",
        workers=2, extra_env=lake_env,
    )
    try:
        cluster.start()
        _wait_for(cluster, "watcher-triggered ingest runs",
                  lambda: sum(_finished(r) for r in _runs(cluster, INGEST) if _date_of(r) in dates) == len(dates))
        warehouse = _check_watcher_runs(cluster, dates)
        _check_published(cluster.home, dates, lake_env)
        assert not (cluster.home / "warehouse" / "lake.sqlite").exists()  # no embedded catalog was made
        hosts = set()
        runs = [(INGEST, r) for r in _runs(cluster, INGEST) if _date_of(r) in dates] + [(WAREHOUSE, r) for r in warehouse]
        for dag_id, run in runs:
            hosts |= {ti.get("hostname") for ti in _tis(cluster, dag_id, run["dag_run_id"])}
        assert len(hosts - {None, ""}) >= 1
    finally:
        cluster.stop()
        _drop_postgres_database(database)
        _drop_postgres_database(lake_database)
