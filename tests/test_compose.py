"""docker-compose.yml describes the same deployment the scheduler tests run natively.

Docker does not run on the CI machine, so this checks the file against the native
configuration (tests/airflow_cluster.py): services, commands, settings, mounts, secrets.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from airflow_cluster import CELERY_SETTINGS, CLUSTER_SETTINGS, DISTRIBUTED_SETTINGS

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
AIRFLOW_SERVICES = {
    "airflow-api-server": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}


def test_every_component_of_the_native_deployment_is_a_service():
    services = COMPOSE["services"]
    assert {"postgres", "redis", "airflow-init", *AIRFLOW_SERVICES} <= set(services)
    for name, command in AIRFLOW_SERVICES.items():
        assert services[name]["command"].startswith(f"airflow {command}"), name
    assert "airflow db migrate" in services["airflow-init"]["command"]
    assert "pools set midoffice_warehouse 1" in services["airflow-init"]["command"]
    assert services["airflow-worker"]["deploy"]["replicas"] >= 2


def test_airflow_services_share_the_native_settings():
    for name in [*AIRFLOW_SERVICES, "airflow-init"]:
        env = COMPOSE["services"][name]["environment"]
        missing = [k for k in (*CLUSTER_SETTINGS, *CELERY_SETTINGS, *DISTRIBUTED_SETTINGS) if k not in env]
        assert not missing, f"{name} lacks {missing}"
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        # the lake's catalog and people's actions in PostgreSQL, the data files on the shared volume
        assert env["MIDOFFICE_LAKE_CATALOG"].startswith("postgresql://") and env["MIDOFFICE_LAKE_CATALOG"].endswith("/midoffice_lake")
        assert env["MIDOFFICE_ACTIONS_URL"].startswith("postgresql://")
        assert env["MIDOFFICE_LAKE_DATA"].startswith("/data/")
        volumes = COMPOSE["services"][name]["volumes"]
        assert "./dags:/opt/midoffice/dags:ro" in volumes
        assert any(v.startswith("midoffice-data:") for v in volumes)


def test_no_password_or_secret_has_a_default():
    text = (REPO / "docker-compose.yml").read_text()
    secrets = ["POSTGRES_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_FERNET_KEY", "MIDOFFICE_PSEUDONYM_KEY"]
    for secret in secrets:
        uses = re.findall(r"\$\{" + secret + r"([^}]*)\}", text)
        assert uses, f"{secret} is not used"
        assert all(u.startswith(":?") for u in uses), f"{secret} must be required (${{{secret}:?...}}), not defaulted"
    # nothing that looks like a literal password in a connection string
    assert not re.search(r"://[^:/@\s]+:(?!\$\{)[^@\s]+@", text)


def test_the_api_server_listens_on_loopback_only_and_asks_for_a_login():
    """Issue 22: port 8080 was published on every interface with no auth manager configured."""
    services = COMPOSE["services"]
    assert services["airflow-api-server"]["ports"] == ["127.0.0.1:8080:8080"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    env = services["airflow-api-server"]["environment"]
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"
    roles = dict(u.split(":")[:2] for u in env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(","))
    assert roles == {"operator": "admin", "analyst": "viewer"}
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].startswith("/data/")  # kept on the volume


def test_only_the_workers_that_run_tasks_get_the_pseudonymisation_key():
    holders = sorted(name for name, service in COMPOSE["services"].items()
                     if "MIDOFFICE_PSEUDONYM_KEY" in (service.get("environment") or {}))
    assert holders == ["airflow-worker"]


def test_the_databases_the_distributed_settings_name_are_created_by_the_postgres_service():
    services = COMPOSE["services"]
    init = [v for v in services["postgres"]["volumes"] if "docker-entrypoint-initdb.d" in v]
    assert len(init) == 1
    sql = (REPO / init[0].split(":")[0]).read_text()
    env = services["airflow-worker"]["environment"]
    for key in ("MIDOFFICE_LAKE_CATALOG", "MIDOFFICE_ACTIONS_URL"):
        database = env[key].rsplit("/", 1)[1]
        assert f"CREATE DATABASE {database};" in sql, key
        assert "@postgres:5432/" in env[key]
