# midoffice image: Airflow + Great Expectations + DuckDB, pinned by constraints.txt.
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 AIRFLOW_HOME=/opt/airflow
WORKDIR /opt/midoffice
COPY pyproject.toml constraints.txt README.md ./
COPY midoffice ./midoffice
COPY contracts ./contracts
COPY transforms ./transforms
COPY expectations ./expectations
COPY warehouse ./warehouse
# Airflow's local settings: the scheduler and Celery workers import the heavy libraries once, for
# every task they fork (midoffice/preload.py)
COPY deploy/airflow_local_settings.py /opt/airflow/config/airflow_local_settings.py
RUN pip install -c constraints.txt -e . \
 && useradd --create-home --uid 50000 airflow \
 && mkdir -p /opt/airflow /data && chown -R airflow /opt/airflow /data
USER airflow
