"""DuckDB connections with explicit resource limits (never DuckDB's host-sized defaults)."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from midoffice.config import Settings
from midoffice.sizes import human_bytes, parse_bytes  # noqa: F401 (ingest reads human_bytes from here)

# The one door to DuckDB: every connection of the package is opened here (tests/test_house.py
# checks that nothing else calls duckdb.connect), so none runs on DuckDB's host-sized defaults
# or with access to the whole file system. Never extensions: they cannot be fetched here.
_ALWAYS = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}

# DuckDB gets at least this much (or its whole configured limit, if smaller) however much the
# process already holds: below it, the marts would spill everything.
MIN_DUCKDB_MEMORY = 512 * 10**6


# Database files this process must not open again, with why. DuckLake 1.5.5 keeps a database's
# instance alive after its COMMIT fails; DuckDB then waits, forever and at 100 % of a core, for
# that instance to close before it opens the same file again (DBInstanceCache). A new process
# opens it at once: the process says so instead of hanging (docs/DESIGN.md).
_HELD_BY_FAILED_COMMIT: dict[Path, str] = {}


class DatabaseHeldError(RuntimeError):
    """A database file this process cannot open again (held by a failed lake commit)."""


def mark_held_by_failed_commit(database: str | Path, why: str) -> None:
    """After a failed lake commit on a connection to `database`: later opens in this process fail
    at once, saying why, instead of waiting forever."""
    _HELD_BY_FAILED_COMMIT[Path(database).resolve()] = why


def held_by_failed_commit() -> dict[Path, str]:
    """The database files this process can no longer open, with why (empty: none)."""
    return dict(_HELD_BY_FAILED_COMMIT)


def memory_limit_text(con) -> str:
    """The connection's effective memory_limit as DuckDB prints it (e.g. '2.7 GiB')."""
    return con.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def memory_limit_bytes(con) -> int:
    """The connection's effective memory_limit in bytes."""
    return parse_bytes(memory_limit_text(con))


def resident_bytes() -> int | None:
    """This process's resident memory now (Linux; None elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def duckdb_memory_limit(settings: Settings, resident: int | None = None) -> str:
    """DuckDB's limit for a new connection: settings.duckdb_memory_limit, less when the process
    already holds so much that the two would pass settings.memory_budget.

    A stage in its own process (a scheduler's task) holds ~0.3 GB and gets the whole limit;
    `midoffice run` holds Airflow, GX and pandas as well (~0.9 GB at 10M trades a day) and gets
    less, so that one process running every task stays within the same budget as one task.
    """
    cap = parse_bytes(settings.duckdb_memory_limit)
    held = resident_bytes() if resident is None else resident
    if not settings.memory_budget or held is None:
        return settings.duckdb_memory_limit
    room = parse_bytes(settings.memory_budget) - held
    return f"{max(min(cap, room), min(cap, MIN_DUCKDB_MEMORY)) // 10**6}MB"


def connect(settings: Settings, database: str | Path = ":memory:", read_only: bool = False,
            extensions_checked: bool = False):
    """A short-lived connection with memory, threads and spill directory set explicitly.

    `extensions_checked`: the extension files this connection will load had their signatures
    checked by DuckDB earlier in this process (midoffice.lake.connect_for_lake), so DuckDB does not
    hash them again (0.25 s a connection for the lake's two). Nothing else can be loaded through
    it: restrict_to() turns external access off, and with it every LOAD.
    """
    if str(database) != ":memory:" and Path(database).resolve() in _HELD_BY_FAILED_COMMIT:
        raise DatabaseHeldError(
            f"{database} cannot be opened again in this process: {_HELD_BY_FAILED_COMMIT[Path(database).resolve()]}, "
            "and DuckDB keeps a database whose lake commit failed open until the process ends. "
            "A new process opens it: run the command again (a scheduler's retry is a new process).")
    settings.tmp.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(database), read_only=read_only, config={
        **({"allow_unsigned_extensions": True} if extensions_checked else {}),
        "memory_limit": duckdb_memory_limit(settings),
        "threads": settings.duckdb_threads,
        "temp_directory": str(settings.tmp / "duckdb_spill"),
        **_ALWAYS,
        # The default, stated because ingest numbers records by their order in the table it
        # created from the file (ingest.RECORD_ORDINAL).
        "preserve_insertion_order": True,
    })
    # no progress bar: a long query (a 1M-row extract) drew one into the task log and the console
    con.execute("SET enable_progress_bar = false")
    return con


def connect_scratch(memory_limit: str = "512MB", threads: int = 1):
    """An in-memory connection that touches no file (external access off, nowhere to spill): for
    work on what the caller puts in it only, e.g. typing the marts' SQL on empty tables."""
    con = duckdb.connect(":memory:", config={
        "memory_limit": memory_limit, "threads": threads, "temp_directory": "", **_ALWAYS})
    con.execute("SET enable_external_access = false")  # after the spill setting, which it freezes
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


ROWS_PER_INSERT = 500


def insert_rows(con, table: str, rows: list[list | tuple]) -> None:
    """rows into table, a few hundred per INSERT statement: one statement per row (executemany)
    costs a round trip each, and in the lake a data file each."""
    for start in range(0, len(rows), ROWS_PER_INSERT):
        chunk = rows[start:start + ROWS_PER_INSERT]
        width = len(chunk[0])
        values = ", ".join(["(" + ", ".join("?" * width) + ")"] * len(chunk))
        con.execute(f"INSERT INTO {table} VALUES {values}", [v for row in chunk for v in row])
