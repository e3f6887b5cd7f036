"""Read-only access to the published warehouse: `midoffice query` (and its reader for `midoffice status`).

Attaches the lake (midoffice.lake) READ_ONLY: the current version, or an earlier one
(`--as-of-version N`, `--as-of TIMESTAMP`). Each publication is one DuckLake commit, so these work
while a run is publishing: a query sees the version that was current when it started, whole.

The analyst's SQL is parsed by DuckDB before it runs and must be exactly one SELECT statement
(DESCRIBE, SHOW, SUMMARIZE and FROM-first queries are SELECTs to DuckDB): an allow-list of
statement kinds, not a deny-list of keywords, so COPY, ATTACH, SET, CREATE, INSERT, CALL, LOAD,
EXPLAIN (EXPLAIN ANALYZE runs its statement) and whatever DuckDB adds next are refused before
anything executes.
The lake's own maintenance and the catalog databases' functions (DuckLake's compaction,
expiry, cleanup, commit messages; sqlite_*/postgres_* queries), which a SELECT can call as table
functions, are refused too (read from DuckDB's own parse tree): with the catalog attached
read-only they could not commit, but some write data files before they fail.
It then runs with external access off and the configuration locked (it can read the marts' data
files, no file elsewhere), spills to a private directory of its own that is removed afterwards, and is
bounded in time (`--timeout`) and in result size (`--max-rows`).

Output is streamed in batches (csv, json) so a large result does not have to fit in memory, and
a closed pipe (`midoffice query ... | head`) ends the command quietly with status 0.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import math
import os
import shutil
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, TextIO

from midoffice import lake
from midoffice.config import Settings, default_home

import duckdb

EXIT_OK, EXIT_USAGE = 0, 2
BATCH_ROWS = 10_000
DEFAULT_TIMEOUT_SECONDS = 300.0
DEFAULT_MAX_ROWS = 5_000_000  # csv/json; a whole mart's history at the sample's volume fits
# The statement kinds an analyst's query may be. Not EXPLAIN: DuckDB's parser calls
# `EXPLAIN ANALYZE COPY ... TO ...` an EXPLAIN too, and EXPLAIN ANALYZE runs its statement.
READ_STATEMENTS = frozenset({duckdb.StatementType.SELECT})
TABLE_MAX_ROWS = 10_000   # the table format is for reading; csv/json give every row
TEXT_WIDTH = 40           # longer text is cut with an ellipsis in the table format


# Table functions a query may not call, whatever their catalog prefix (lake.merge_adjacent_files):
# the lake's maintenance and writers, and direct access to the catalog's database.
WRITING_LAKE_FUNCTIONS = frozenset({
    "add_data_files", "cleanup_old_files", "commit", "delete_orphaned_files", "expire_snapshots",
    "flush_inlined_data", "merge_adjacent_files", "rewrite_data_files", "set_commit_message", "set_option",
    "checkpoint", "force_checkpoint"})
CATALOG_FUNCTION_PREFIXES = ("sqlite_", "postgres_", "pg_", "read_postgres")


class NothingPublished(RuntimeError):
    pass


class QueryRefused(ValueError):
    """The SQL is not a single read-only statement."""


class ResultTooLarge(RuntimeError):
    pass


def read_only_statement(con, sql: str) -> str:
    """`sql` if DuckDB's own parser finds exactly one SELECT statement in it.

    Raises QueryRefused naming what was found. Parsing is DuckDB's (the same parser that would
    run it), so there is no keyword list to get around with comments, quoting or case.
    """
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(str(exc)) from None
    if len(statements) != 1:
        raise QueryRefused(f"one statement at a time, got {len(statements)}")
    kind = statements[0].type
    if kind not in READ_STATEMENTS:
        raise QueryRefused(f"only SELECT statements are allowed here, not {kind.name}: "
                           "`midoffice query` never writes")
    for name in table_functions(con, sql):
        bare = name.removeprefix("ducklake_")
        if bare in WRITING_LAKE_FUNCTIONS or name.startswith(CATALOG_FUNCTION_PREFIXES):
            raise QueryRefused(f"{name}() changes the lake or reads its catalog database directly: "
                               "`midoffice query` never writes")
    return sql


def table_functions(con, sql: str) -> set[str]:
    """The table functions a statement calls, from DuckDB's parse tree (json_serialize_sql).
    DESCRIBE, SHOW and SUMMARIZE do not serialize: they call none of the user's."""
    import json as _json

    tree = _json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    if tree.get("error"):
        return set()
    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            if node.get("type") == "TABLE_FUNCTION" and isinstance(node.get("function"), dict):
                found.add(str(node["function"].get("function_name", "")).lower())
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(tree)
    return found


@contextmanager
def time_limit(con, seconds: float | None):
    """Interrupt the connection's running statement (execution or fetch) after `seconds`."""
    if not seconds:
        yield lambda: False
        return
    fired = threading.Event()

    def stop() -> None:
        fired.set()
        con.interrupt()

    timer = threading.Timer(seconds, stop)
    timer.daemon = True
    timer.start()
    try:
        yield fired.is_set
    finally:
        timer.cancel()


def published_settings(home: str | Path | None) -> Settings:
    h = Path(home).resolve() if home else default_home()
    settings = Settings(landing=h, home=h)
    if not lake.exists(settings):
        raise NothingPublished(f"nothing published yet ({lake.describe(settings)} does not exist; "
                               "run `midoffice run` first)")
    return settings


def open_published(settings: Settings, spill_dir: Path | None = None, version: int | None = None,
                   as_of: str | None = None):
    """A read-only connection that can only see the published marts (the current version, or
    `version`, or the one in force at `as_of`).

    `spill_dir`: where DuckDB may spill. DuckDB can always read and write its temp directory, so
    an analyst's query gets a private one (`private_spill`), never the pipeline's shared one.
    """
    return lake.reader(settings, version=version, as_of=as_of, spill_dir=spill_dir)


@contextmanager
def private_spill():
    """A directory of this process's own (mode 0700), removed when the query ends."""
    path = Path(tempfile.mkdtemp(prefix="midoffice-query-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- formatting --------------------------------------------------------------------------------

def is_number(v) -> bool:
    return isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool)


def format_cell(v, width: int = TEXT_WIDTH, null: str = "NULL") -> str:
    """A value as an analyst wants to read it: thousands separators, no float noise, NULL shown.

    Amounts of 1,000 or more get two decimals; smaller fractional numbers six significant digits
    (more when six would show a non-integer as an integer: a utilisation of 0.9999999 is not "1").
    Exact values: --format csv or json.
    """
    if v is None:
        return null
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, (float, decimal.Decimal)):
        f = float(v)
        if math.isnan(f) or math.isinf(f):
            return str(f)
        if abs(f) >= 1000:
            return f"{f:,.2f}"
        if f == 0:
            return "0"
        text = f"{f:.6g}"
        if f != int(f) and "." not in text and "e" not in text:
            text = f"{f:.12g}"
        return text
    if isinstance(v, dt.datetime):
        text = v.isoformat(sep=" ")
    else:
        text = str(v)
    text = " ".join(text.split())  # one line per row, whatever the text holds
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(headers: list[str], rows: list[tuple], total_note: str = "", width: int = TEXT_WIDTH,
                 null: str = "NULL") -> Iterator[str]:
    """Aligned text table: numbers right-aligned, text left-aligned and cut at `width` characters."""
    numeric = [bool(rows) and all(r[i] is None or is_number(r[i]) for r in rows)
               and any(is_number(r[i]) for r in rows) for i in range(len(headers))]
    cells = [[format_cell(v, width, null) for v in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    yield line(list(headers))
    yield "  ".join("-" * w for w in widths)
    for r in cells:
        yield line(r)
    yield f"({len(rows):,} row{'s' if len(rows) != 1 else ''}{total_note})"


def json_value(v):
    if isinstance(v, decimal.Decimal):
        v = float(v)
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, (dt.date, dt.datetime, dt.time)):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, (list, tuple)):
        return [json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): json_value(x) for k, x in v.items()}
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def _batches(cur, max_rows: int | None = None) -> Iterator[list[tuple]]:
    seen = 0
    while True:
        rows = cur.fetchmany(BATCH_ROWS)
        if not rows:
            return
        seen += len(rows)
        if max_rows is not None and seen > max_rows:
            keep = len(rows) - (seen - max_rows)
            if keep:
                yield rows[:keep]
            raise ResultTooLarge(f"the result has more than {max_rows:,} rows (--max-rows): only the first "
                                 f"{max_rows:,} were written; narrow the query or raise --max-rows")
        yield rows


def write_csv(headers: list[str], batches: Iterable[list[tuple]], out: TextIO) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(headers)
    for rows in batches:
        w.writerows(rows)


def write_json(headers: list[str], batches: Iterable[list[tuple]], out: TextIO) -> None:
    """A JSON array of objects, written as it streams (one object per line)."""
    first = True
    out.write("[")
    for rows in batches:
        for r in rows:
            out.write(("\n" if first else ",\n") + json.dumps({h: json_value(v) for h, v in zip(headers, r)},
                                                             ensure_ascii=False))
            first = False
    out.write("\n]\n" if not first else "]\n")


# --- broken pipes ------------------------------------------------------------------------------

def _quiet_broken_pipe() -> int:
    """The reader went away (`| head`): stop writing and exit 0 without a traceback.

    Python would otherwise fail again flushing stdout at exit; point it at /dev/null.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_OK


# --- commands ----------------------------------------------------------------------------------

def run_query(sql: str, home: str | None, fmt: str = "table", out: TextIO | None = None,
              timeout: float | None = DEFAULT_TIMEOUT_SECONDS, max_rows: int | None = DEFAULT_MAX_ROWS,
              version: int | None = None, as_of: str | None = None) -> int:
    """`midoffice query`: one read-only SQL statement against the published warehouse.

    Exit 0 with the result; 2 with one line on stderr when the SQL is refused or fails, runs past
    `timeout` seconds, or (csv, json) gives more than `max_rows` rows (those rows are written).
    """
    out = out or sys.stdout
    try:
        settings = published_settings(home)
    except NothingPublished as exc:
        print(f"midoffice: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with private_spill() as spill:
        try:
            con = open_published(settings, spill, version=version, as_of=as_of)
        except (lake.LakeError, duckdb.Error) as exc:  # no such version, a broken catalog...
            print(f"midoffice: error: {str(exc).splitlines()[0]}", file=sys.stderr)
            return EXIT_USAGE
        try:
            read_only_statement(con, sql)
        except QueryRefused as exc:
            con.close()
            print(f"midoffice: query refused: {exc}", file=sys.stderr)
            return EXIT_USAGE
        try:
            with time_limit(con, timeout) as timed_out:
                try:
                    return _execute_and_write(con, sql, fmt, out, max_rows)
                except duckdb.InterruptException:
                    if not timed_out():
                        raise
                    print(f"midoffice: query stopped after {timeout:g} s (--timeout): narrow it, or give "
                          "a longer --timeout", file=sys.stderr)
                    return EXIT_USAGE
        finally:
            con.close()


def _execute_and_write(con, sql: str, fmt: str, out: TextIO, max_rows: int | None) -> int:
    try:
        # read-only: tried again when the catalog answers a transient error (a publication committing)
        cur = lake.tried_again_on_transient_catalog_errors(lambda: con.execute(sql))
        headers = [d[0] for d in cur.description] if cur.description else []
    except duckdb.InterruptException:
        raise
    except Exception as exc:  # DuckDB's message says what is wrong with the SQL
        print(f"midoffice: query failed: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if fmt == "csv":
            write_csv(headers, _batches(cur, max_rows), out)
        elif fmt == "json":
            write_json(headers, _batches(cur, max_rows), out)
        else:
            rows = cur.fetchmany(TABLE_MAX_ROWS + 1) if headers else []
            note = ""
            if len(rows) > TABLE_MAX_ROWS:
                rows, note = rows[:TABLE_MAX_ROWS], " shown; more not shown: use --format csv for all"
            for text in render_table(headers, rows, note):
                out.write(text + "\n")
        out.flush()
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except ResultTooLarge as exc:
        out.flush()
        print(f"midoffice: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except duckdb.InterruptException:
        raise
    except Exception as exc:  # an error raised while fetching (e.g. a failing cast)
        print(f"midoffice: query failed: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
