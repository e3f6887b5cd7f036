"""midoffice: a middle-office data platform (Airflow + Great Expectations + DuckDB)."""

__version__ = "0.1.0"
