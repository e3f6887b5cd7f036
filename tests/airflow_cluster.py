"""A real Airflow deployment for tests: scheduler, API server, DAG processor, triggerer (and
Celery workers), as separate processes in a temporary AIRFLOW_HOME.

The same environment variables are what docker-compose.yml sets for its services; a test checks
that the two agree (CLUSTER_SETTINGS below is the shared list of what must be set).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
LOCAL_SETTINGS = REPO / "deploy" / "airflow_local_settings.py"

# Settings every service of the deployment needs (docker-compose.yml must set them all).
CLUSTER_SETTINGS = (
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__CORE__LOAD_EXAMPLES",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__CORE__FERNET_KEY",
    "MIDOFFICE_LANDING",
    "MIDOFFICE_HOME",
    "MIDOFFICE_LANDING_POLL_SECONDS",
)
CELERY_SETTINGS = ("AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND")
# What the distributed deployment shares between machines (the Celery test sets them too): the
# lake's PostgreSQL catalog and data path, people's actions in PostgreSQL
DISTRIBUTED_SETTINGS = ("MIDOFFICE_LAKE_CATALOG", "MIDOFFICE_LAKE_DATA", "MIDOFFICE_ACTIONS_URL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class AirflowCluster:
    root: Path
    landing: Path
    home: Path
    executor: str = "LocalExecutor"
    sql_alchemy_conn: str | None = None
    broker_url: str | None = None
    workers: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. the lake's PostgreSQL catalog
    port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        conn = self.sql_alchemy_conn or f"sqlite:///{self.airflow_home / 'airflow.db'}"
        env.update({
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": conn,
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__API_AUTH__JWT_SECRET": "test-only-jwt-secret-" + self.root.name,
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            # The DAG files do not change while a cluster runs: parsed once at its start, not again
            # every 5 s (each parse a process, on a machine the other test processes share).
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "600",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "MIDOFFICE_LANDING": str(self.landing),
            "MIDOFFICE_HOME": str(self.home),
            "MIDOFFICE_LANDING_POLL_SECONDS": "10",
            "GX_ANALYTICS_ENABLED": "false",
        })
        env.update(self.extra_env)
        if self.broker_url:
            env["AIRFLOW__CELERY__BROKER_URL"] = self.broker_url
            env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + conn.replace("+psycopg2", "")
        return env

    def airflow(self, *args: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
        return subprocess.run([AIRFLOW, *args], env=self.env(), capture_output=True, text=True,
                              check=check, timeout=timeout, cwd=self.root)

    def _spawn(self, name: str, *args: str) -> None:
        log = (self.root / f"{name}.log").open("w")
        self.processes.append(subprocess.Popen(
            [AIRFLOW, *args], env=self.env(), stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
            start_new_session=True,
        ))

    def start(self) -> None:
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        # The deployment's local settings: the scheduler (and Celery workers) import the heavy
        # libraries once, and every task process forked from them starts with them (midoffice.preload).
        (self.airflow_home / "config").mkdir(exist_ok=True)
        shutil.copy(LOCAL_SETTINGS, self.airflow_home / "config" / LOCAL_SETTINGS.name)
        self.airflow("db", "migrate")
        self.airflow("pools", "set", "midoffice_warehouse", "1", "single writer of the warehouse file")
        self._spawn("api-server", "api-server", "--port", str(self.port), "--host", "127.0.0.1")
        self._spawn("scheduler", "scheduler")
        self._spawn("dag-processor", "dag-processor")
        self._spawn("triggerer", "triggerer")
        for i in range(self.workers):
            self._spawn(f"worker{i}", "celery", "worker", "--concurrency", "2", "--celery-hostname", f"worker{i}@%h")
        self.wait_for_api()

    def stop(self) -> None:
        for p in self.processes:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + 20
        for p in self.processes:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)

    def wait_for_api(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                self.api("/api/v2/monitor/health")
                return
            except Exception:
                time.sleep(1)
        raise TimeoutError(f"API server did not come up; see {self.root / 'api-server.log'}")

    def api(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as resp:
            return json.loads(resp.read())

    def logs(self) -> str:
        out = []
        for log in sorted(self.root.glob("*.log")):
            out.append(f"==== {log.name}\n" + log.read_text()[-4000:])
        return "\n".join(out)
