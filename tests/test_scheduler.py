"""The real scheduler: business dates dropped into the landing folder get run and published.

Two deployments of the same DAGs:
- LocalExecutor on SQLite (as `airflow standalone` runs it);
- CeleryExecutor with Redis as broker, PostgreSQL as metadata DB and two Celery workers (the
  deployment docker-compose.yml describes), using the PostgreSQL and Redis on 127.0.0.1.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import duckdb
import pytest

from airflow_cluster import AirflowCluster, service_reachable
from conftest import generate_landing

pytestmark = pytest.mark.slow

DATES = ["2026-04-06", "2026-04-07"]
WAIT_SECONDS = 600


def _drop_two_dates(tmp_path: Path) -> Path:
    """Generate elsewhere, then move the dates in, manifest last (as a sender would)."""
    staging = generate_landing(tmp_path / "outbox", DATES[0], len(DATES), 600, seed=21)
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "_SAMPLE_DATA").write_text((staging / "_SAMPLE_DATA").read_text())
    for d in DATES:
        (landing / d).mkdir()
        for f in sorted((staging / d).iterdir()):
            if f.name != "_manifest.json":
                f.rename(landing / d / f.name)
        (staging / d / "_manifest.json").rename(landing / d / "_manifest.json")
    return landing


def _wait_for_runs(cluster: AirflowCluster) -> dict[str, str]:
    deadline = time.time() + WAIT_SECONDS
    states: dict[str, str] = {}
    while time.time() < deadline:
        try:
            runs = cluster.api("/api/v2/dags/midoffice_daily/dagRuns?limit=50")["dag_runs"]
        except Exception:
            runs = []
        states = {r["conf"].get("business_date"): r["state"] for r in runs if r.get("conf")}
        if all(states.get(d) in ("success", "failed") for d in DATES):
            return states
        time.sleep(3)
    raise AssertionError(f"runs did not finish in {WAIT_SECONDS}s: {states}\n{cluster.logs()}")


def _check_published(cluster: AirflowCluster, states: dict[str, str]) -> None:
    assert all(states[d] == "success" for d in DATES), f"{states}\n{cluster.logs()}"
    con = duckdb.connect(str(cluster.home / "warehouse" / "marts.duckdb"), read_only=True)
    try:
        dates = [str(r[0]) for r in con.execute("SELECT DISTINCT as_of_date FROM risk_exposure ORDER BY 1").fetchall()]
        gates = con.execute("SELECT count(*) FILTER (WHERE gate = 'PASS'), count(*) FROM dq_feed_health").fetchone()
    finally:
        con.close()
    assert dates == DATES
    assert gates == (24, 24)
    # Airflow's own record agrees: every task instance of both runs finished.
    for run in cluster.api("/api/v2/dags/midoffice_daily/dagRuns?limit=50")["dag_runs"]:
        tis = cluster.api(f"/api/v2/dags/midoffice_daily/dagRuns/{run['dag_run_id']}/taskInstances?limit=100")
        assert {ti["state"] for ti in tis["task_instances"]} == {"success"}, tis


def test_local_executor_runs_dropped_dates_to_the_published_warehouse(tmp_path):
    landing = _drop_two_dates(tmp_path)
    cluster = AirflowCluster(root=tmp_path / "cluster", landing=landing, home=tmp_path / "home")
    try:
        cluster.start()
        _check_published(cluster, _wait_for_runs(cluster))
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
    landing = _drop_two_dates(tmp_path)
    database = _postgres_database()
    redis_db = 1 + int(uuid.uuid4().int % 14)
    cluster = AirflowCluster(
        root=tmp_path / "cluster", landing=landing, home=tmp_path / "home",
        executor="CeleryExecutor",
        sql_alchemy_conn=f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}",
        broker_url=f"redis://127.0.0.1:6379/{redis_db}",
        workers=2,
    )
    try:
        cluster.start()
        states = _wait_for_runs(cluster)
        _check_published(cluster, states)
        hosts = set()
        for run in cluster.api("/api/v2/dags/midoffice_daily/dagRuns?limit=50")["dag_runs"]:
            tis = cluster.api(f"/api/v2/dags/midoffice_daily/dagRuns/{run['dag_run_id']}/taskInstances?limit=100")
            hosts |= {ti.get("hostname") for ti in tis["task_instances"]}
        assert len(hosts - {None, ""}) >= 1
    finally:
        cluster.stop()
        _drop_postgres_database(database)
