"""Publish: a new file with the audited marts, swapped in atomically.

Readers only ever open <home>/warehouse/marts.duckdb read-only; the build's file is never shown
to them. The new file is complete and checkpointed (no .wal) before os.replace() puts it in
place, so a reader sees the old version or the new one, never a mix. Leftovers of a publish that
was killed half way are removed by the next one.

The cost of a publication follows the new data, not the length of the history. Two published
files take turns: marts.duckdb (current) and marts.previous.duckdb (a hard link to the file
published before it, which readers that connected before the last publication may still hold).
The next publication takes the previous file, replaces in it only the dates that changed since
it was current (core.published_dates and core.unpublished_dates), and puts it in place: no copy
of the whole warehouse. A mart stored as spans (the recon) has no rows of a date to replace: the
changed dates' states are written into its spans as the build wrote them (midoffice.spans). When that file is still open in a reader (DuckDB's lock says so), or
missing, the current file is copied instead (a cost that grows with the history); when there is
none, or its tables no longer match the build's (a mart added or changed), every mart is copied
whole. A published file is carried forward only while it is as published (its size and
modification time, recorded in core.published_files): one edited read-write since (DuckDB's CLI
opens read-write by default) is not trusted, and the marts are copied whole from the build.

Publication reads what the build made and imports nothing of the build (midoffice.warehouse):
the build's last step before a publication, bringing the run ledger up to date, is handed in by
the caller (stages.publish_date, which the DAG's publish task calls) and runs on the
publication's connection.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Callable

import duckdb

from midoffice import control, spans
from midoffice.config import Settings
from midoffice.duck import connect, quote_ident as q, restrict_to, sql_literal_path
from midoffice.models import Model, published_models

# (connection to build.duckdb, settings, business date, run id): writes the build's file before
# anything of it is published (warehouse.refresh_run_ledger)
LedgerRefresh = Callable[[duckdb.DuckDBPyConnection, Settings, str, str], None]


def _previous_db(settings: Settings) -> Path:
    return settings.warehouse_dir / "marts.previous.duckdb"


def _remove_leftovers(settings: Settings) -> list[str]:
    removed = []
    for stale in settings.warehouse_dir.glob("marts.next-*.duckdb*"):
        stale.unlink(missing_ok=True)
        removed.append(stale.name)
    previous, target = _previous_db(settings), settings.published_db
    # Killed between linking the current file as previous and replacing it: the two names are
    # one file, which must never be written while it is published.
    if previous.exists() and (not target.exists() or previous.samefile(target)):
        previous.unlink()
        removed.append(previous.name)
    return removed


def _columns(con, database: str) -> dict[str, list[tuple[str, str]]]:
    """Each table and view of the database's main schema: its columns and their types, in order
    (one catalog query: duckdb_columns() reads every attached database's catalog each time)."""
    tables: dict[str, list[tuple[str, str]]] = {}
    for table, column, data_type in con.execute(
            "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE database_name = ? "
            "AND schema_name = 'main' ORDER BY table_name, column_index", [database]).fetchall():
        tables.setdefault(table, []).append((column, data_type))
    return tables


def _same_tables(con, models: list[Model]) -> bool:
    """Does the published copy (attached as pub) hold exactly the build's marts, column for column?"""
    build_db = con.execute("SELECT current_database()").fetchone()[0]
    published = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'pub' AND schema_name = 'main'").fetchall()}
    expected = {t for m in models for t in m.stored_tables} | {"build_log", "publication"}
    pub, build = _columns(con, "pub"), _columns(con, build_db)
    return published == expected and all(
        pub.get(t) == build.get(t) for m in models for t in [m.name, *m.stored_tables])


def _generation(con) -> int | None:
    """The generation of the attached published file (None: a file from before generations)."""
    if ("generation", "BIGINT") not in _columns(con, "pub").get("publication", []):
        return None
    row = con.execute("SELECT generation FROM pub.publication").fetchone()
    return row[0] if row else None


def _dates_since(con, generation: int) -> list[str]:
    """The dates a file of this generation lacks: published later, or not published yet."""
    return [str(r[0]) for r in con.execute(
        "SELECT business_date FROM core.published_dates WHERE generation > ? "
        "UNION SELECT business_date FROM core.unpublished_dates ORDER BY 1", [generation]).fetchall()]


def _open_as_base(con, staging: Path, models: list[Model]) -> int | None:
    """Attach staging as pub if it can be brought up to date by replacing dates: its generation."""
    try:
        con.execute(f"ATTACH {sql_literal_path(staging)} AS pub")
    except duckdb.IOException:  # a reader still holds it (DuckDB's file lock)
        return None
    generation = _generation(con)
    if generation is None or not _same_tables(con, models):
        con.execute("DETACH pub")
        return None
    return generation


# The rows are copied in the build's order, not sorted by grain: each date is appended whole, so
# the row groups of a date stay together (a filter on the date skips the others), and sorting
# within it cost 1.1 s of a 1M-trade date's 6 s publication. The extracts are sorted.
def _copy_whole(con, models: list[Model]) -> None:
    for model in models:
        for table in model.stored_tables:
            con.execute(f"CREATE TABLE pub.{q(table)} AS SELECT * FROM main.{q(table)}")
    # the table macros the views read (warehouse/marts.sql), as the build's file defines them
    for name, parameters, definition in con.execute(
            "SELECT function_name, parameters, macro_definition FROM duckdb_functions() "
            "WHERE database_name = current_database() AND schema_name = 'main' AND function_type = 'table_macro' "
            "AND NOT internal").fetchall():
        con.execute(f"CREATE MACRO pub.main.{q(name)}({', '.join(parameters)}) AS TABLE {definition}")
    for model in models:
        if model.spans:  # the view, as the build's file defines it: it reads the file it is in
            sql = con.execute("SELECT sql FROM duckdb_views() WHERE database_name = current_database() "
                              "AND schema_name = 'main' AND view_name = ?", [model.name]).fetchone()[0]
            head = f"CREATE VIEW {model.name} AS"
            if not sql.startswith(head):
                raise RuntimeError(f"{model.name}: unexpected view definition {sql[:80]!r}")
            con.execute(f"CREATE VIEW pub.main.{q(model.name)} AS" + sql[len(head):])


def _replay_spans(con, model: Model, dates: list[str]) -> None:
    """Bring the published spans up to date: write each changed date's rows (the build's spans
    holding on it) in them, oldest first, as the build did (the spans' normal form is the same
    whatever the order of the writes, midoffice.spans)."""
    built = {str(r[0]) for r in con.execute(f"SELECT as_of_date FROM main.{q(model.dates_table)}").fetchall()}
    for day in sorted(d for d in dates if d in built):
        spans.replay_date(con, model, "pub", "main", day)


def _replace_dates(con, models: list[Model], dates: list[str]) -> None:
    for model in models:
        if model.spans:
            _replay_spans(con, model, dates)
            continue
        where = f"{q(model.partition)} IN (SELECT CAST(unnest(?) AS DATE))"
        con.execute(f"DELETE FROM pub.{q(model.name)} WHERE {where}", [dates])
        con.execute(f"INSERT INTO pub.{q(model.name)} SELECT * FROM main.{q(model.name)} WHERE {where}",
                    [dates])


PUBLISHED_FILES_DDL = """CREATE TABLE IF NOT EXISTS core.published_files (
    generation BIGINT, size UBIGINT, mtime_ns UBIGINT)"""


MADE_BY = {"previous": "from the previous published file", "copy": "from a copy of the current published file",
           "whole": "by copying every mart from the build"}


def _file_identity(path: Path) -> tuple[int, int]:
    """Size and modification time: what any write changes, and what a copy or a backup restore
    that keeps times (cp -p, shutil.copytree, rsync -t) keeps."""
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _as_published(con, path: Path) -> bool:
    """Is the file still as this pipeline published it (the size and modification time recorded
    when it was put in place)? Anything that wrote into it since, say DuckDB's CLI opened
    read-write, changes them: its content must not be carried into the next version."""
    con.execute(PUBLISHED_FILES_DDL)
    size, mtime_ns = _file_identity(path)
    return con.execute("SELECT count(*) > 0 FROM core.published_files WHERE size = ? AND mtime_ns = ?",
                       [size, mtime_ns]).fetchone()[0]


def _record_published_file(con, path: Path, generation: int) -> None:
    con.execute(PUBLISHED_FILES_DDL)
    con.execute("INSERT INTO core.published_files VALUES (?, ?, ?)", [generation, *_file_identity(path)])


def _prepare_staging(con, settings: Settings, staging: Path, models: list[Model]) -> tuple[str, list[str], list[str]]:
    """Attach as pub the file the new publication starts from; how ('previous', 'copy' or
    'whole'), the dates it must replace (every mart when whole), and the files it did not
    trust (changed since they were published)."""
    distrusted = []
    # the previous file is taken (renamed: nobody reaches it by name any more), the current copied
    for mode, source, take in (("previous", _previous_db(settings), os.replace),
                               ("copy", settings.published_db, shutil.copyfile)):
        if source.exists() and not _as_published(con, source):
            distrusted.append(source.name)
            continue
        if source.exists():
            take(source, staging)
            generation = _open_as_base(con, staging, models)
            if generation is not None:
                return mode, _dates_since(con, generation), distrusted
            staging.unlink()
    con.execute(f"ATTACH {sql_literal_path(staging)} AS pub")
    return "whole", [], distrusted


def publish(settings: Settings, business_date: str, run_id: str,
            refresh_ledger: LedgerRefresh | None = None) -> dict:
    """Publish the build's audited marts as <home>/warehouse/marts.duckdb; `refresh_ledger` first
    (in the same connection and failure handling), so the published ledger shows this run's build."""
    started_at = control.utc_now()
    t0 = time.monotonic()
    settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    removed = _remove_leftovers(settings)
    target, previous = settings.published_db, _previous_db(settings)
    staging = settings.warehouse_dir / f"marts.next-{os.getpid()}.duckdb"
    con = connect(settings, settings.build_db)
    tables = {}
    try:
        # the build, previous and next files only; not locked: the run ledger's model sets threads
        restrict_to(con, settings.warehouse_dir, settings.tmp, lock=False)
        if refresh_ledger is not None:
            refresh_ledger(con, settings, business_date, run_id)
        existing = {r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main'"
        ).fetchall()}
        models = [m for m in published_models() if set(m.stored_tables) <= existing]  # not the intermediate ones
        unpublished = [str(r[0]) for r in con.execute(
            "SELECT business_date FROM core.unpublished_dates ORDER BY 1").fetchall()]
        mode, dates, distrusted = _prepare_staging(con, settings, staging, models)
        if mode == "whole":
            _copy_whole(con, models)
        else:
            _replace_dates(con, models, dates)
            con.execute("DROP TABLE pub.build_log")
            con.execute("DROP TABLE pub.publication")
        generation = con.execute(
            "SELECT coalesce(max(generation), 0) + 1 FROM core.published_dates").fetchone()[0]
        con.execute("CREATE TABLE pub.build_log AS SELECT * FROM core.build_log ORDER BY business_date, mart")
        con.execute(
            "CREATE TABLE pub.publication AS SELECT CAST(? AS VARCHAR) AS run_id, CAST(? AS DATE) AS business_date, "
            "CAST(? AS TIMESTAMP) AS published_at, CAST(? AS BIGINT) AS generation",
            [run_id, business_date, started_at.rstrip("Z"), generation],
        )
        for table in (t for m in models for t in m.stored_tables):  # a spans model: its spans, not rows
            tables[table] = con.execute(f"SELECT count(*) FROM pub.{q(table)}").fetchone()[0]
        con.execute("DETACH pub")  # checkpoints the new file: no .wal is left beside it
        con.execute("INSERT INTO core.published_dates SELECT ?, CAST(unnest(?) AS DATE)", [generation, unpublished])
    except Exception as exc:
        con.close()
        # and its WAL: a write that failed half way (a full disk) leaves one beside the file
        for leftover in (staging, staging.with_name(staging.name + ".wal")):
            leftover.unlink(missing_ok=True)
        control.record_stage(settings, run_id, business_date, "publish", "FAILED", started_at, message=str(exc))
        raise
    try:
        if target.exists():
            # the file readers hold now becomes the next publication's starting point
            link = settings.warehouse_dir / f"marts.next-{os.getpid()}.previous.duckdb"
            os.link(target, link)
            os.replace(link, previous)
        os.replace(staging, target)
        _record_published_file(con, target, generation)
        # Published: these dates no longer wait. A kill before this line only makes the next
        # publication replace them again (idempotent).
        con.execute("DELETE FROM core.unpublished_dates WHERE business_date IN (SELECT CAST(unnest(?) AS DATE))",
                    [unpublished])
    finally:
        con.close()
    summary = {"business_date": business_date, "run_id": run_id, "published": str(target), "mode": mode,
               "generation": generation, "dates_replaced": dates if mode != "whole" else "all", "tables": tables,
               "removed_leftovers": removed, "distrusted": distrusted, "seconds": round(time.monotonic() - t0, 3)}
    control.record_stage(settings, run_id, business_date, "publish", "SUCCESS", started_at,
                         rows_out=sum(tables.values()),
                         message="; ".join(f"{name} was changed after it was published: not carried forward"
                                           for name in distrusted)
                         + (f"; this version was made {MADE_BY[mode]}" if distrusted else ""))
    return summary
