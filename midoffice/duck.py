"""DuckDB connections with explicit resource limits (never DuckDB's host-sized defaults)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from midoffice.config import Settings


def connect(settings: Settings, database: str | Path = ":memory:", read_only: bool = False):
    """A short-lived connection with memory, threads and spill directory set explicitly."""
    settings.tmp.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(database), read_only=read_only, config={
        "memory_limit": settings.duckdb_memory_limit,
        "threads": settings.duckdb_threads,
        "temp_directory": str(settings.tmp / "duckdb_spill"),
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    })
    return con


def quote_ident(name: str) -> str:
    """Quote an identifier that already passed the contract allow-list."""
    return '"' + name.replace('"', '""') + '"'


def sql_literal_path(path: Path) -> str:
    """A file path as a SQL string literal (paths are ours, resolved under known roots)."""
    return "'" + str(path).replace("'", "''") + "'"
