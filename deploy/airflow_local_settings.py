"""Airflow local settings of a midoffice deployment: copy to `$AIRFLOW_HOME/config/` (the
Dockerfile does; tests/airflow_cluster.py too).

Every Airflow process imports this module when it imports Airflow. In the processes that fork the
task processes (the scheduler with the LocalExecutor, a Celery worker), DuckDB, Arrow, pandas and
Great Expectations are imported here once, so that each task starts with them
(midoffice/preload.py).
"""

# Airflow copies every public name of this module into airflow.settings: export none.
__all__: list[str] = []

try:
    from midoffice.preload import preload as _preload
except ImportError:  # Airflow without midoffice installed (e.g. a bare API server image)
    pass
else:
    _preload()
