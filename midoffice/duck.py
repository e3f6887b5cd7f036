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
        # The default, stated because ingest numbers records by their order in the table it
        # created from the file (ingest.RECORD_ORDINAL).
        "preserve_insertion_order": True,
    })
    return con


def restrict_to(con, *roots: Path, lock: bool = True) -> None:
    """This connection reads and writes files under `roots` only, and (`lock`) its settings are
    locked.

    A path that slipped past the checks (a symlink swapped in after them, a value that reaches a
    file function) then fails inside DuckDB. Once external access is off, DuckDB refuses to turn
    it on again or to change the allowed directories; locking the configuration also keeps SQL
    from raising the memory limit. Python functions registered before (client_key), variables and
    the connection's own database file keep working.
    """
    # A trailing slash, so that /home/lake does not also allow /home/lake-evil.
    listed = ", ".join("'" + (str(Path(r).resolve()).rstrip("/") + "/").replace("'", "''") + "'" for r in roots)
    con.execute(f"SET allowed_directories = [{listed}]")
    con.execute("SET enable_external_access = false")
    if lock:
        con.execute("SET lock_configuration = true")


def quote_ident(name: str) -> str:
    """Quote an identifier that already passed the contract allow-list."""
    return '"' + name.replace('"', '""') + '"'


def sql_literal_path(path: Path) -> str:
    """A file path as a SQL string literal (paths are ours, resolved under known roots)."""
    return "'" + str(path).replace("'", "''") + "'"
