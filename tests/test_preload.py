"""The heavy libraries are imported once by the Airflow process that forks the task processes (the
scheduler with the LocalExecutor, a Celery worker), through the deployment's local settings, and
by no other Airflow process (midoffice/preload.py, deploy/airflow_local_settings.py).

Real Airflow: a process that imports Airflow with the deployment's `$AIRFLOW_HOME/config/`
imports the local settings as every Airflow component does; what it has loaded is then read from
`sys.modules`. (That the tasks then do not import them again is the fork's: the scheduler bench
shows the time it saves.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

from midoffice.preload import HEAVY_MODULES, forks_task_processes

PROBE = """
import sys
sys.argv = sys.argv[1:]  # the Airflow command line to pretend to be
import airflow  # imports $AIRFLOW_HOME/config/airflow_local_settings.py, as every component does
print("LOADED:" + ",".join(m for m in {heavy!r} if m in sys.modules))
"""


@pytest.mark.parametrize("argv, forks", [
    (["airflow", "scheduler"], True),
    (["airflow", "celery", "worker", "--concurrency", "2"], True),
    (["airflow", "api-server", "--port", "8080"], False),
    (["airflow", "dag-processor"], False),
    (["airflow", "triggerer"], False),
    (["airflow", "celery", "flower"], False),
    (["airflow", "tasks", "test", "midoffice_ingest", "feeds"], False),
])
def test_only_the_processes_that_fork_tasks_preload(argv, forks):
    assert forks_task_processes(argv) is forks


def _loaded(airflow_home, *argv: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(airflow_home), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    out = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY_MODULES), *argv], capture_output=True,
                         text=True, env=env, cwd=airflow_home, check=True, timeout=300).stdout
    line = next(ln for ln in reversed(out.splitlines()) if ln.startswith("LOADED:"))
    return set(filter(None, line.removeprefix("LOADED:").split(",")))


def test_the_deployment_local_settings_preload_in_the_scheduler_only(tmp_path):
    home = tmp_path / "airflow"
    (home / "config").mkdir(parents=True)
    shutil.copy(REPO / "deploy" / "airflow_local_settings.py", home / "config")
    assert _loaded(home, "airflow", "scheduler") == set(HEAVY_MODULES)
    assert _loaded(home, "airflow", "api-server") == set()  # importing Airflow alone loads none of them


def test_preloading_can_be_turned_off(monkeypatch):
    from midoffice.preload import preload

    monkeypatch.setenv("MIDOFFICE_PRELOAD", "0")
    assert preload(["airflow", "scheduler"]) == []
