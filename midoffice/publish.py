"""Publish: the audited marts of the build committed to the lake, one DuckLake snapshot per publication.

Write, audit, publish: the build writes and audits its marts in its own file
(`<home>/warehouse/build.duckdb`), which no reader opens; publication then brings the lake
(midoffice.lake) up to date in ONE transaction, whose commit is one snapshot: the product's
version number. A reader sees the version before or the version after, never a mix, and is never
blocked (DuckLake readers read their snapshot; the SQLite catalog is in WAL mode). Every earlier
version stays readable as it was (`midoffice query --as-of-version N`).

The cost of a publication follows the new data, not the length of the history: only the dates
built since the last publication (core.unpublished_dates) are replaced, each mart's rows of those
dates deleted and inserted; a mart stored as spans has its changed dates' states written into its
spans as the build wrote them (midoffice.spans). A mart the lake does not have yet, or whose
columns changed, is written whole. The views and table macros analysts use (warehouse/marts.sql)
are kept as the build defines them.

Trust: DuckLake records each data file's size; publication checks every file the current
version reads against it and against the size and modification time recorded when it was
written (core.lake_files). A file edited, replaced or removed behind the catalog's back is not
carried forward: the marts that read it are written whole from the build in the new version, and
the publication says so.

A date that an earlier version already published is a restatement (DOMAIN §10.2): it needs a
reason recorded for it since (midoffice.restate), and the differences per mart are recorded in
the `restatements` table of the same snapshot.

The lake also holds the build's business calendars (core.calendar_days, written whole when they
differ from the lake's): the recon's view ages its breaks on them.

Publication reads what the build made and imports nothing of the build (midoffice.warehouse):
the build's last step before a publication, bringing the run ledger up to date, is handed in by
the caller (stages.publish_date, which the DAG's publish task calls) and runs on the
publication's connection.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

import duckdb

from midoffice import control, duck, lake, spans
from midoffice.config import Settings
from midoffice.duck import insert_rows, quote_ident as q, restrict_to
from midoffice.models import Model, published_models

# (connection to build.duckdb, settings, business date, run id): writes the build's file before
# anything of it is published (warehouse.refresh_run_ledger)
LedgerRefresh = Callable[[duckdb.DuckDBPyConnection, Settings, str, str], None]
L = lake.LAKE
# the DuckLake catalog's own database, as DuckLake attaches it beside the lake
L_META = f"__ducklake_metadata_{L}"

# Tables publish writes beside the marts (documented in midoffice.dictionary.CONTROL_TABLES)
PUBLICATIONS_DDL = f"""CREATE TABLE IF NOT EXISTS {L}.publications (
    version BIGINT, published_at TIMESTAMP, run_id VARCHAR, business_date DATE, dates DATE[],
    restated_dates DATE[], reason VARCHAR, rewritten_marts VARCHAR[])"""
LAKE_FILES_DDL = """CREATE TABLE IF NOT EXISTS core.lake_files (
    path VARCHAR PRIMARY KEY, size UBIGINT, mtime_ns UBIGINT)"""


def _columns(con, database: str) -> dict[str, list[tuple[str, str]]]:
    """Each table of the database's main schema: its columns and their types, in order."""
    tables: dict[str, list[tuple[str, str]]] = {}
    for table, column, data_type in con.execute(
            "SELECT c.table_name, c.column_name, c.data_type FROM duckdb_columns() c JOIN duckdb_tables() t "
            "USING (database_name, schema_name, table_name) WHERE c.database_name = ? AND c.schema_name = 'main' "
            "ORDER BY c.table_name, c.column_index", [database]).fetchall():
        tables.setdefault(table, []).append((column, data_type))
    return tables


# --- trust: the files the current version reads ----------------------------------------------

# The data and delete files of the current version of the given tables of the lake's main schema,
# read from the DuckLake catalog's own tables (DuckLake specification 1.0: ducklake_schema,
# ducklake_table, ducklake_data_file, ducklake_delete_file; a row is current while its
# end_snapshot is NULL, and a relative path is relative to the one above it, the data path at
# the root). One query: ducklake_list_files per table took 0.25 s a publication, twice, at 43
# tables. tests/test_lake.py checks that it lists what ducklake_list_files lists.
LAKE_FILES_SQL = f"""
WITH tables AS (
    SELECT
        t.table_id,
        t.table_name,
        CASE WHEN NOT t.path_is_relative THEN t.path
             WHEN NOT s.path_is_relative THEN s.path || t.path
             ELSE (SELECT data_path FROM ducklake_settings('{L}')) || s.path || t.path END AS folder
    FROM {L_META}.ducklake_table t
    JOIN {L_META}.ducklake_schema s USING (schema_id)
    WHERE t.end_snapshot IS NULL AND s.end_snapshot IS NULL AND s.schema_name = 'main'
      AND t.table_name IN (SELECT unnest(CAST(? AS VARCHAR[])))
)
SELECT t.table_name, CASE WHEN f.path_is_relative THEN t.folder || f.path ELSE f.path END, f.file_size_bytes
FROM {L_META}.ducklake_data_file f JOIN tables t USING (table_id)
WHERE f.end_snapshot IS NULL
UNION ALL
SELECT t.table_name, CASE WHEN f.path_is_relative THEN t.folder || f.path ELSE f.path END, f.file_size_bytes
FROM {L_META}.ducklake_delete_file f JOIN tables t USING (table_id)
WHERE f.end_snapshot IS NULL
"""


def _lake_files(con, tables: list[str]) -> list[tuple[str, str, int]]:
    """(table, file, size recorded by DuckLake) of every data and delete file the current version reads."""
    return [(t, f, size) for t, f, size in con.execute(LAKE_FILES_SQL, [tables]).fetchall()]


def _untrusted_tables(con, files: list[tuple[str, str, int]]) -> dict[str, str]:
    """table -> why, for the tables one of whose files is not as it was written: missing, another
    size than the catalog's, or another size or modification time than recorded at publication."""
    recorded = {p: (s, m) for p, s, m in con.execute("SELECT path, size, mtime_ns FROM core.lake_files").fetchall()}
    bad: dict[str, str] = {}
    for table, path, size in files:
        if table in bad:
            continue
        try:
            st = os.stat(path)
        except FileNotFoundError:
            bad[table] = f"{Path(path).name} is missing"
            continue
        if st.st_size != size:
            bad[table] = f"{Path(path).name} has {st.st_size} bytes, the catalog says {size}"
        elif path in recorded and recorded[path] != (st.st_size, st.st_mtime_ns):
            bad[table] = f"{Path(path).name} was modified after it was published"
    return bad


def _record_files(con, files: list[tuple[str, str, int]]) -> None:
    """The size and modification time of the files the new version reads (new ones only: the
    others were recorded when they were written)."""
    con.execute(LAKE_FILES_DDL)
    known = {r[0] for r in con.execute("SELECT path FROM core.lake_files").fetchall()}
    new = []
    for _, path, _ in files:
        if path not in known and os.path.exists(path):
            st = os.stat(path)
            new.append((path, st.st_size, st.st_mtime_ns))
            known.add(path)
    if new:
        insert_rows(con, "core.lake_files", new)


# --- writing the marts -----------------------------------------------------------------------

def _write_whole(con, table: str) -> None:
    con.execute(f"DROP TABLE IF EXISTS {L}.{q(table)}")
    con.execute(f"CREATE TABLE {L}.{q(table)} AS SELECT * FROM main.{q(table)}")


def _replace_dates(con, model: Model, dates: list[str], published: set[str]) -> None:
    """The model's rows of `dates` in the lake replaced by the build's; only the dates the lake
    has already (`published`) are deleted first: a delete reads the table's files, whose number
    grows with the history, and the nightly date has nothing to delete."""
    if model.spans:
        built = {str(r[0]) for r in con.execute(f"SELECT as_of_date FROM main.{q(model.dates_table)}").fetchall()}
        for day in sorted(d for d in dates if d in built):  # oldest first, as the build did
            spans.replay_date(con, model, L, "main", day)
        return
    where = f"{q(model.partition)} IN (SELECT CAST(unnest(?) AS DATE))"
    again = [d for d in dates if d in published]
    if again:
        con.execute(f"DELETE FROM {L}.{q(model.name)} WHERE {where}", [again])
    con.execute(f"INSERT INTO {L}.{q(model.name)} SELECT * FROM main.{q(model.name)} WHERE {where}", [dates])


def _copy_calendar(con) -> None:
    """The build's business calendars (core.calendar_days: every calendar's business-day ordinals)
    into the lake's core schema: the recon's view ages its breaks on them (warehouse/marts.sql),
    and a calendars delivery can change any date's count. Written whole, only when they differ
    from the lake's (a calendar changes rarely: no new data file per version)."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {L}.core")
    have = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'core' "
                       "AND table_name = 'calendar_days'", [L]).fetchone()[0]
    # the same rows: compared by their count and the sum of each row's 64-bit hash (380,000 rows:
    # 0.02 s, where comparing them row by row both ways took 0.3 s of every publication)
    fingerprint = "SELECT (count(*), sum(hash(c)::HUGEINT)) FROM {} c"
    if have and con.execute(f"SELECT ({fingerprint.format('core.calendar_days')}) = "
                            f"({fingerprint.format(L + '.core.calendar_days')})").fetchone()[0]:
        return
    con.execute(f"DROP TABLE IF EXISTS {L}.core.calendar_days")
    con.execute(f"CREATE TABLE {L}.core.calendar_days AS "
                "SELECT * FROM core.calendar_days ORDER BY day, calendar_id")  # as the build keeps it


def _sync_definitions(con, models: list[Model]) -> list[str]:
    """The table macros and the views of spans models (warehouse/marts.sql) in the lake, as the
    build's file defines them; created or replaced only when they differ. Returns what changed."""
    build = con.execute("SELECT current_database()").fetchone()[0]
    changed = []
    macros = {(n, tuple(p), d) for n, p, d in con.execute(
        "SELECT function_name, parameters, macro_definition FROM duckdb_functions() WHERE database_name = ? "
        "AND schema_name = 'main' AND function_type = 'table_macro' AND NOT internal", [build]).fetchall()}
    have = {(n, tuple(p), d) for n, p, d in con.execute(
        "SELECT function_name, parameters, macro_definition FROM duckdb_functions() WHERE database_name = ? "
        "AND schema_name = 'main' AND function_type = 'table_macro' AND NOT internal", [L]).fetchall()}
    views = {}
    for model in models:
        if model.spans:
            sql = con.execute("SELECT sql FROM duckdb_views() WHERE database_name = ? AND schema_name = 'main' "
                              "AND view_name = ?", [build, model.name]).fetchone()[0]
            views[model.name] = sql
    have_views = dict(con.execute("SELECT view_name, sql FROM duckdb_views() WHERE database_name = ? "
                                  "AND schema_name = 'main'", [L]).fetchall())
    if not (macros - have) and all(_same_sql(have_views.get(v), s) for v, s in views.items()):
        return changed
    # names in macro and view bodies bind in the lake (the catalog they are created in)
    con.execute(f"USE {L}")
    try:
        for name, parameters, definition in sorted(macros - have):
            con.execute(f"CREATE OR REPLACE MACRO {L}.main.{q(name)}({', '.join(parameters)}) AS TABLE {definition}")
            changed.append(name)
        for name, sql in views.items():
            if not _same_sql(have_views.get(name), sql):
                head = f"CREATE VIEW {name} AS"
                if not sql.startswith(head):
                    raise RuntimeError(f"{name}: unexpected view definition {sql[:80]!r}")
                con.execute(f"CREATE OR REPLACE VIEW {L}.main.{q(name)} AS" + sql[len(head):].rstrip().rstrip(";"))
                changed.append(name)
    finally:
        con.execute(f"USE {q(build)}")
    return changed


def _same_sql(a: str | None, b: str) -> bool:
    """The same view definition as DuckDB prints it back (the lake's catalog quotes type names)."""
    def norm(s: str) -> str:
        return " ".join(s.replace('"', "").rstrip().rstrip(";").split())
    return a is not None and norm(a) == norm(b)


def published_dates(con) -> dict[str, int]:
    """Business date -> the version that last published it, from the attached lake (empty when
    nothing is published)."""
    if "publications" not in _columns(con, L):
        return {}
    return {str(d): v for d, v in con.execute(
        f"SELECT d, max(version) FROM (SELECT version, unnest(dates) AS d FROM {L}.publications) GROUP BY d").fetchall()}


def publish(settings: Settings, business_date: str, run_id: str,
            refresh_ledger: LedgerRefresh | None = None) -> dict:
    """Publish the build's audited marts as one new version of the lake; `refresh_ledger` first
    (in the same connection and failure handling), so the published ledger shows this run's build."""
    from midoffice import restate

    started_at = control.utc_now()
    t0 = time.monotonic()
    settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    con = lake.connect_for_lake(settings, settings.build_db)
    tables: dict[str, int] = {}
    files_before: set[Path] | None = None
    commit_tried = commit_done = False
    try:
        lake.attach(con, settings)
        # the build, the lake's catalog and data files only; not locked: the run ledger's model sets threads
        restrict_to(con, settings.warehouse_dir, settings.lake_data_path, settings.tmp, lock=False)
        if refresh_ledger is not None:
            refresh_ledger(con, settings, business_date, run_id)
        existing = _columns(con, con.execute("SELECT current_database()").fetchone()[0])
        models = [m for m in published_models() if set(m.stored_tables) <= set(existing)]  # not the intermediate ones
        dates = [str(r[0]) for r in con.execute("SELECT business_date FROM core.unpublished_dates ORDER BY 1").fetchall()]

        con.execute(LAKE_FILES_DDL)
        files_before = _data_files(settings)
        # One transaction writes one database: the lake's, whose commit is the version
        con.execute("BEGIN TRANSACTION")
        before = lake.current_version(con) or 0
        earlier = published_dates(con)
        restated = [d for d in dates if d in earlier]
        reason = restate.reason_for(settings, con, restated) if restated else ""
        in_lake = _columns(con, L)
        untrusted = _untrusted_tables(con, _lake_files(con, sorted(in_lake)))
        stored = [t for m in models for t in m.stored_tables] + ["build_log"]
        shapes = {**existing, "build_log": existing.get("build_log") or _columns_of(con, "core", "build_log")}
        whole = [t for t in stored if t not in in_lake or in_lake[t] != shapes[t] or t in untrusted]
        if restated:
            restate.record_differences(con, models, restated, version=before + 1, reason=reason)
        for model in models:
            if any(t in whole for t in model.stored_tables):
                for t in model.stored_tables:
                    _write_whole(con, t)
            else:
                _replace_dates(con, model, dates, earlier)
        if "build_log" in whole:
            con.execute(f"DROP TABLE IF EXISTS {L}.build_log")
            con.execute(f"CREATE TABLE {L}.build_log AS SELECT * FROM core.build_log ORDER BY business_date, mart")
        else:
            con.execute(f"DELETE FROM {L}.build_log WHERE business_date IN (SELECT CAST(unnest(?) AS DATE))", [dates])
            con.execute(f"INSERT INTO {L}.build_log SELECT * FROM core.build_log "
                        f"WHERE business_date IN (SELECT CAST(unnest(?) AS DATE)) ORDER BY business_date, mart", [dates])
        _copy_calendar(con)  # before the recon's view, which reads it
        definitions = _sync_definitions(con, models)
        version = before + 1
        con.execute(PUBLICATIONS_DDL)
        con.execute(f"INSERT INTO {L}.publications VALUES (?, CAST(? AS TIMESTAMP), ?, CAST(? AS DATE), "
                    "CAST(? AS DATE[]), CAST(? AS DATE[]), ?, ?)",
                    [version, started_at.rstrip("Z"), run_id, business_date, dates, restated, reason or None,
                     sorted(set(whole) & set(untrusted))])
        # The build's file holds every table whole, as the lake has it after this commit: counted
        # there from DuckDB's own metadata (the lake's count would read every data file, whose
        # number grows with the history). A spans model: its spans, not rows.
        for table in (t for m in models for t in m.stored_tables):
            tables[table] = con.execute(f"SELECT count(*) FROM main.{q(table)}").fetchone()[0]
        info = {"run_id": run_id, "business_date": business_date, "dates": dates, "restated": restated,
                "reason": reason, "rewritten": sorted(whole), "untrusted": untrusted, "definitions": definitions}
        message = (f"publish {business_date}" + (f"; restates {', '.join(restated)}: {reason}" if restated else ""))
        con.execute(f"CALL {L}.set_commit_message(?, ?, extra_info => ?)", [lake.AUTHOR, message, json.dumps(info)])
        commit_tried = True
        con.execute("COMMIT")
        commit_done = True
        committed = lake.committed_version(con)
        if committed != version:
            raise RuntimeError(f"the lake committed version {committed}, not {version} (current_snapshot() says "
                               f"{lake.current_version(con)}): another process wrote it during the publication "
                               "(the warehouse has one writer)")
        # Published: these dates no longer wait. A kill before this line only makes the next
        # publication replace them again (idempotent; the lake has the version either way).
        con.execute("DELETE FROM core.unpublished_dates WHERE business_date IN (SELECT CAST(unnest(?) AS DATE))",
                    [dates])
        _record_files(con, _lake_files(con, sorted(_columns(con, L))))
    except Exception as exc:
        failed: Exception = exc
        commit_failed = commit_tried and not commit_done
        if commit_failed:  # first: nothing below may open the build again before it
            cause = (str(exc).splitlines() or [type(exc).__name__])[-1]
            duck.mark_held_by_failed_commit(settings.build_db, f"the lake's commit for {business_date} failed ({cause})")
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass
        con.close()
        if commit_failed:
            failed = RuntimeError(
                f"publishing {business_date}: the commit to {lake.describe(settings)} failed: {' '.join(str(exc).split())}"
                + (" (another process holds the catalog's write lock; the warehouse has one writer)"
                   if "database is locked" in cause else ""))
        if files_before is not None and not commit_done:
            _remove_uncommitted(settings, files_before)
        control.record_stage(settings, run_id, business_date, "publish", "FAILED", started_at, message=str(failed))
        if failed is exc:
            raise
        raise failed from exc
    con.close()
    summary = {"business_date": business_date, "run_id": run_id, "published": lake.describe(settings),
               "version": version, "dates_replaced": dates, "restated": restated, "reason": reason,
               "written_whole": whole, "untrusted": untrusted, "tables": tables,
               "seconds": round(time.monotonic() - t0, 3)}
    control.record_stage(settings, run_id, business_date, "publish", "SUCCESS", started_at,
                         rows_out=sum(tables.values()),
                         message="; ".join([f"version {version}"]
                                           + [f"restated {', '.join(restated)} ({reason})"] * bool(restated)
                                           + [f"{t}: {why}: not carried forward, written whole from the build"
                                              for t, why in sorted(untrusted.items())]))
    return summary


def _data_files(settings: Settings) -> set[Path]:
    return {p for p in settings.lake_data_path.rglob("*") if p.is_file()}


def _remove_uncommitted(settings: Settings, files_before: set[Path]) -> None:
    """The data files a failed (rolled back) publication wrote: no version reads them, and a full
    disk must not stay full of them. The warehouse has one writer, so every file that appeared
    since the transaction began is this publication's."""
    for path in _data_files(settings) - files_before:
        path.unlink(missing_ok=True)


def _columns_of(con, schema: str, table: str) -> list[tuple[str, str]]:
    return [(c, t) for c, t in con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = ? AND table_name = ? ORDER BY column_index", [schema, table]).fetchall()]
