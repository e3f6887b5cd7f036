"""The people's actions store: append-only records of what people did (sign-offs, worklist actions).

These records are not derived data: no rebuild of the warehouse can recreate them (DOMAIN §9.2,
§10.2; ARCHITECTURE, "People's actions are not derived data"). They live outside the warehouse
and the lake, in their own database, and each build reads them as an input by effective business
date, so that rebuilding a date gives the same result.

- Embedded default: a SQLite file, `<home>/people/actions.sqlite`, in WAL mode with a busy
  timeout, so that a person writing while a build reads (or two people writing) never fails.
- Distributed deployment: PostgreSQL, when `Settings.actions_url` (environment variable
  `MIDOFFICE_ACTIONS_URL`, e.g. `postgresql://user@host:5432/midoffice`) is set; the tables are in
  the schema `people`.

Append-only is enforced by the database itself: triggers raise on UPDATE and DELETE (and on
TRUNCATE in PostgreSQL), so neither the product nor a person with a SQL prompt on the store
changes a record through an ordinary statement. Ids are assigned by the store.

A kind of record is one declaration (a `Kind` in KINDS): its name, its id column and its columns.
The table is created the first time the store is opened after the declaration; a nullable column
added later to a kind is added to its table. The store must be backed up (README, "Backing up the
people's actions"): a rebuild cannot recreate it.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from midoffice.config import Settings

# Logical column types and how each database stores them. Dates and times are kept as ISO text
# in SQLite (it has no date type) and as date / timestamp (UTC) in PostgreSQL; records() returns
# datetime.date and naive-UTC datetime.datetime either way.
TYPES = ("text", "date", "timestamp", "integer", "numeric")
_SQLITE_TYPES = {"text": "TEXT", "date": "TEXT", "timestamp": "TEXT", "integer": "INTEGER", "numeric": "REAL"}
_PG_TYPES = {"text": "text", "date": "date", "timestamp": "timestamp", "integer": "bigint", "numeric": "double precision"}
_DUCK_TYPES = {"text": "VARCHAR", "date": "DATE", "timestamp": "TIMESTAMP", "integer": "BIGINT", "numeric": "DOUBLE"}

PG_SCHEMA = "people"
BUSY_TIMEOUT_MS = 30_000


class StoreError(ValueError):
    """A record the store refuses (unknown kind, missing or unknown column, bad value)."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "text"
    required: bool = True
    # "now": the store fills it with the current UTC time when the record does not give it
    default: str | None = None
    description: str = ""


@dataclass(frozen=True)
class Kind:
    """One kind of append-only record: the table `name`, its store-assigned `id_column`, its
    columns, and the business date by which builds read it (`effective_column`)."""

    name: str
    id_column: str
    columns: tuple[Column, ...]
    effective_column: str = "effective_date"
    description: str = ""

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise StoreError(f"{self.name} has no column {name!r}")


# --- the kinds -----------------------------------------------------------------------------------
# Adding a kind is adding one declaration here (and to KINDS).

SIGNOFFS = Kind(
    name="signoffs",
    id_column="signoff_id",
    description="Who prepared and who signed the pack of a business date, from which published version (DOMAIN §10.2)",
    columns=(
        Column("effective_date", "date", description="the business date whose pack is signed"),
        Column("action", description="PREPARE (first person) or SIGN (a second, different person)"),
        Column("by", description="who"),
        Column("at", "timestamp", default="now", description="when (UTC)"),
        Column("version", "integer", description="the published version the pack was made from"),
        Column("comment", required=False, description="what the person wrote, if anything"),
    ),
)

CASE_ACTIONS = Kind(
    name="case_actions",
    id_column="action_id",
    description="What people did with the back office's worklist items (DOMAIN §9.2), applied by the build of "
                "every business date from effective_date on",
    columns=(
        Column("item_id", description="the worklist item, <item_type>:<natural key>"),
        Column("action", description="ACK, ASSIGN, COMMENT, RESOLVE or APPROVE"),
        Column("by", description="who"),
        Column("at", "timestamp", default="now", description="when (UTC)"),
        Column("effective_date", "date", description="the business date the action was taken against"),
        Column("text", required=False, description="the comment, or why"),
        Column("assignee", required=False, description="ASSIGN: the team or person now working the item"),
        Column("reason", required=False,
               description="RESOLVE: FIXED_AT_SOURCE (the data should clear it), WRITTEN_OFF or DUPLICATE (closes it)"),
    ),
)
RESTATEMENT_REASONS = Kind(
    name="restatement_reasons",
    id_column="reason_id",
    description="Why a published business date is run again (DOMAIN §10.2; midoffice.restate)",
    columns=(
        Column("effective_date", "date", description="the business date that will be restated"),
        Column("reason", description="why, as the person gave it"),
        Column("by", description="who asked for the rerun"),
        Column("at", "timestamp", default="now", description="when (UTC)"),
    ),
)

KINDS: dict[str, Kind] = {k.name: k for k in (SIGNOFFS, CASE_ACTIONS, RESTATEMENT_REASONS)}


def kind_of(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise StoreError(f"unknown kind of record {name!r} (known: {', '.join(sorted(KINDS))})")


# --- where the store is --------------------------------------------------------------------------

def sqlite_path(settings: Settings) -> Path:
    return settings.people_dir / "actions.sqlite"


def is_postgres(settings: Settings) -> bool:
    url = settings.actions_url or ""
    return url.startswith(("postgresql://", "postgres://"))


def describe(settings: Settings) -> str:
    """Where the store is, for messages (no password)."""
    if is_postgres(settings):
        from urllib.parse import urlsplit
        u = urlsplit(settings.actions_url)
        return f"postgresql://{u.hostname}:{u.port or 5432}{u.path}"
    return str(sqlite_path(settings))


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- connections and schema ----------------------------------------------------------------------

@contextmanager
def _connect(settings: Settings) -> Iterator[tuple[Any, str]]:
    """(DB-API connection with the schema in place, paramstyle marker), closed after."""
    if settings.actions_url and not is_postgres(settings):
        raise StoreError(f"MIDOFFICE_ACTIONS_URL must be a postgresql:// URL (or unset for the SQLite file), "
                         f"not {settings.actions_url.split('://')[0]}://...")
    if is_postgres(settings):
        import psycopg2
        con = psycopg2.connect(settings.actions_url)
        try:
            _ensure_pg(con)
            yield con, "%s"
        finally:
            con.close()
        return
    path = sqlite_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: transactions are ours (BEGIN IMMEDIATE for writes)
    con = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # WAL: readers never block the writer nor the writer the readers
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = FULL")  # an acknowledged action survives a power cut
        _ensure_sqlite(con)
        yield con, "?"
    finally:
        con.close()


def _ensure_sqlite(con: sqlite3.Connection) -> None:
    for kind in KINDS.values():
        existing = {r[1] for r in con.execute(f"PRAGMA table_info({_q(kind.name)})")}
        if not existing:
            cols = ", ".join(f"{_q(c.name)} {_SQLITE_TYPES[c.type]}{' NOT NULL' if c.required else ''}"
                             for c in kind.columns)
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute(f"CREATE TABLE IF NOT EXISTS {_q(kind.name)} "
                            f"({_q(kind.id_column)} INTEGER PRIMARY KEY AUTOINCREMENT, {cols})")
                for op in ("UPDATE", "DELETE"):
                    con.execute(
                        f"CREATE TRIGGER IF NOT EXISTS {_q(kind.name + '_no_' + op.lower())} BEFORE {op} ON "
                        f"{_q(kind.name)} BEGIN SELECT RAISE(ABORT, '{kind.name} is append-only: "
                        f"{op} refused'); END")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            continue
        for c in kind.columns:
            if c.name not in existing:
                if c.required:
                    raise StoreError(f"{kind.name}: column {c.name} is new and required; existing records have "
                                     "no value for it (declare it required=False)")
                con.execute(f"ALTER TABLE {_q(kind.name)} ADD COLUMN {_q(c.name)} {_SQLITE_TYPES[c.type]}")


_PG_GUARD = f"""
CREATE OR REPLACE FUNCTION {PG_SCHEMA}.append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END $$;
"""


def _ensure_pg(con) -> None:
    with con.cursor() as cur:
        cur.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s",
                    [PG_SCHEMA])
        existing: dict[str, set[str]] = {}
        for table, column in cur.fetchall():
            existing.setdefault(table, set()).add(column)
        if all(k.name in existing and {c.name for c in k.columns} <= existing[k.name] for k in KINDS.values()):
            con.rollback()
            return
        # Two workers creating the schema at once: one waits for the other's lock
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('midoffice.people.schema'))")
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")
        cur.execute(_PG_GUARD)
        for kind in KINDS.values():
            table = f"{PG_SCHEMA}.{_q(kind.name)}"
            cols = ", ".join(f"{_q(c.name)} {_PG_TYPES[c.type]}{' NOT NULL' if c.required else ''}"
                             for c in kind.columns)
            cur.execute(f"CREATE TABLE IF NOT EXISTS {table} "
                        f"({_q(kind.id_column)} bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {cols})")
            for c in kind.columns:
                if c.name not in existing.get(kind.name, {c.name for c in kind.columns}):
                    if c.required:
                        raise StoreError(f"{kind.name}: column {c.name} is new and required; existing records "
                                         "have no value for it (declare it required=False)")
                    cur.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {_q(c.name)} {_PG_TYPES[c.type]}")
            cur.execute(f"DROP TRIGGER IF EXISTS append_only_rows ON {table}")
            cur.execute(f"CREATE TRIGGER append_only_rows BEFORE UPDATE OR DELETE ON {table} "
                        f"FOR EACH ROW EXECUTE FUNCTION {PG_SCHEMA}.append_only()")
            cur.execute(f"DROP TRIGGER IF EXISTS append_only_truncate ON {table}")
            cur.execute(f"CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON {table} "
                        f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_SCHEMA}.append_only()")
    con.commit()


def _table(settings: Settings, kind: Kind) -> str:
    return f"{PG_SCHEMA}.{_q(kind.name)}" if is_postgres(settings) else _q(kind.name)


# --- values --------------------------------------------------------------------------------------

def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)


def _to_store(column: Column, value: Any, postgres: bool) -> Any:
    """A Python value checked against the column's type, as the database takes it."""
    if value is None:
        return None
    try:
        if column.type == "date":
            day = value if isinstance(value, dt.date) and not isinstance(value, dt.datetime) \
                else dt.date.fromisoformat(str(value))
            return day if postgres else day.isoformat()
        if column.type == "timestamp":
            when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
            if when.tzinfo is not None:
                when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
            return when if postgres else when.isoformat(sep=" ")
        if column.type == "integer":
            if isinstance(value, bool) or int(value) != float(value):
                raise ValueError(value)
            return int(value)
        if column.type == "numeric":
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise StoreError(f"{column.name}={value!r} is not a {column.type}")


def _from_store(column: Column, value: Any) -> Any:
    if value is None:
        return None
    if column.type == "date" and isinstance(value, str):
        return dt.date.fromisoformat(value)
    if column.type == "timestamp" and isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    return value


def _validated(kind: Kind, record: dict, postgres: bool) -> dict:
    unknown = set(record) - {c.name for c in kind.columns}
    if kind.id_column in unknown:
        raise StoreError(f"{kind.name}: {kind.id_column} is assigned by the store, not given")
    if unknown:
        raise StoreError(f"{kind.name} has no column(s) {', '.join(sorted(unknown))}")
    row = {}
    for c in kind.columns:
        value = record.get(c.name)
        if isinstance(value, str) and not value.strip():
            value = None
        if value is None and c.default == "now":
            value = _now()
        if value is None and c.required:
            raise StoreError(f"{kind.name}: {c.name} is required")
        row[c.name] = _to_store(c, value, postgres)
    return row


# --- the API -------------------------------------------------------------------------------------

def append(settings: Settings, kind: str, record: dict) -> int:
    """Append one record of `kind`; returns the id the store gave it."""
    k = kind_of(kind)
    row = _validated(k, record, is_postgres(settings))
    names = ", ".join(_q(n) for n in row)
    with _connect(settings) as (con, mark):
        marks = ", ".join(mark for _ in row)
        sql = f"INSERT INTO {_table(settings, k)} ({names}) VALUES ({marks})"
        if is_postgres(settings):
            with con.cursor() as cur:
                cur.execute(sql + f" RETURNING {_q(k.id_column)}", list(row.values()))
                new_id = cur.fetchone()[0]
            con.commit()
            return int(new_id)
        con.execute("BEGIN IMMEDIATE")
        try:
            cur = con.execute(sql, list(row.values()))
            new_id = cur.lastrowid
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return int(new_id)


def records(settings: Settings, kind: str, up_to_effective_date: str | dt.date | None = None) -> list[dict]:
    """Every record of `kind` (in id order), or only those effective on or before the date."""
    k = kind_of(kind)
    columns = (Column(k.id_column, "integer"),) + k.columns
    names = ", ".join(_q(c.name) for c in columns)
    postgres = is_postgres(settings)
    with _connect(settings) as (con, mark):
        sql = f"SELECT {names} FROM {_table(settings, k)}"
        params: list = []
        if up_to_effective_date is not None:
            sql += f" WHERE {_q(k.effective_column)} <= {mark}"
            params.append(_to_store(k.column(k.effective_column), up_to_effective_date, postgres))
        sql += f" ORDER BY {_q(k.id_column)}"
        if postgres:
            with con.cursor() as cur:
                cur.execute(sql, params)
                rows = cur.fetchall()
            con.rollback()
        else:
            rows = con.execute(sql, params).fetchall()
    return [{c.name: _from_store(c, v) for c, v in zip(columns, row)} for row in rows]


def duckdb_columns(kind: str) -> list[tuple[str, str]]:
    """(column, DuckDB type) of the kind's table as materialise() creates it."""
    k = kind_of(kind)
    return [(k.id_column, "BIGINT")] + [(c.name, _DUCK_TYPES[c.type]) for c in k.columns]


def materialise(settings: Settings, con, kind: str, up_to_effective_date: str | dt.date | None = None,
                table: str | None = None) -> int:
    """Create (or replace) table `table` (default: the kind's name) on the DuckDB connection `con`
    with the kind's records effective on or before the date; returns the row count.

    The build reads people's actions as an input this way, so that a rebuild of a date reads the
    same records (those effective up to that date) whenever it runs.
    """
    import pyarrow as pa

    rows = records(settings, kind, up_to_effective_date)
    cols = duckdb_columns(kind)
    arrow_types = {"BIGINT": pa.int64(), "VARCHAR": pa.string(), "DATE": pa.date32(),
                   "TIMESTAMP": pa.timestamp("us"), "DOUBLE": pa.float64()}
    data = pa.table({name: pa.array([r[name] for r in rows], type=arrow_types[t]) for name, t in cols})
    target = table or kind
    view = f"_people_{kind}"
    con.register(view, data)
    try:
        con.execute(f"CREATE OR REPLACE TABLE {'.'.join(_q(p) for p in target.split('.'))} AS SELECT * FROM {_q(view)}")
    finally:
        con.unregister(view)
    return len(rows)


def backup(settings: Settings, destination: Path) -> Path:
    """A consistent copy of the SQLite store (online: sqlite3's backup API, as `.backup` does).
    PostgreSQL is backed up with pg_dump (README)."""
    if is_postgres(settings):
        raise StoreError("the store is in PostgreSQL: back it up with pg_dump --schema=people")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with _connect(settings) as (con, _), closing(sqlite3.connect(str(destination))) as out:
        con.backup(out)
    return destination
