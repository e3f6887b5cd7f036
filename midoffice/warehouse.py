"""Warehouse build: validated partitions → core tables, then marts → audits, in two transactions.

The only writer of build.duckdb. Each business date replaces its own partition of every core
table and mart (idempotent), and only for feeds whose gate passed; a mart whose feeds did not all
pass keeps its previous rows for that date. The core partitions of the date are committed first
(one transaction), then every mart of the date and the audits (a second one): any mart or audit
failure rolls all the date's marts back, nothing is published (publish runs only after a
successful build), and the retry replaces the core partitions again before building the marts,
so what gets published is never half built.
"""

from __future__ import annotations

import json
import time

from midoffice import control, spans
from midoffice.config import WAREHOUSE_DDL_DIR, Settings
from midoffice.contracts import Feed, control_parameters, ingest_order, load_contracts
from midoffice.duck import connect, quote_ident as q, restrict_to, sql_literal_path
from midoffice.gate import gates_for
from midoffice.people import store as people_store
from midoffice.models import ColumnTest, Model, column_tests, load_models, upstream_feeds
from midoffice.pseudonym import register as register_client_key, remember_clients, resolve_key

class AuditError(RuntimeError):
    """An invariant of the built marts does not hold; nothing of the date is kept."""


def create_schema(con) -> None:
    """The warehouse's tables that exist before any build: core (control tables and one table per
    feed contract) and the marts declared in warehouse/marts.sql. Idempotent."""
    con.execute((WAREHOUSE_DDL_DIR / "core.sql").read_text())
    for feed in load_contracts().values():
        cols = ", ".join(f"{q(c.name)} {c.type}" for c in feed.columns)
        con.execute(
            f"CREATE TABLE IF NOT EXISTS core.{q(feed.name)} "
            f"(business_date DATE NOT NULL, {cols}, run_id VARCHAR)"
        )
    con.execute((WAREHOUSE_DDL_DIR / "calendar.sql").read_text())
    con.execute((WAREHOUSE_DDL_DIR / "parameters.sql").read_text())
    con.execute((WAREHOUSE_DDL_DIR / "fx.sql").read_text())
    con.execute((WAREHOUSE_DDL_DIR / "valuation.sql").read_text())
    con.execute((WAREHOUSE_DDL_DIR / "marts.sql").read_text())
    con.execute((WAREHOUSE_DDL_DIR / "worklist.sql").read_text())
    for model in (m for m in load_models() if m.spans):
        kind = con.execute("SELECT table_type FROM information_schema.tables WHERE table_catalog = current_database() "
                           "AND table_schema = 'main' AND table_name = ?", [model.name]).fetchone()
        if kind != ("VIEW",):  # CREATE VIEW IF NOT EXISTS leaves a table of the name as it is
            raise AuditError(f"{model.name}: this warehouse holds it as a table of rows, the model now stores "
                             "status spans; rebuild the warehouse (midoffice run over the whole range with a "
                             "fresh --home)")


def _replace_feed_partition(con, settings: Settings, feed: Feed, business_date: str, run_id: str) -> int:
    path = settings.staged_partition(feed.name, business_date)
    con.execute(f"DELETE FROM core.{q(feed.name)} WHERE business_date = ?", [business_date])
    cols = ", ".join(q(c) for c in feed.column_names)
    con.execute(
        f"INSERT INTO core.{q(feed.name)} (business_date, {cols}, run_id) "
        f"SELECT CAST(? AS DATE), {cols}, ? FROM read_parquet({sql_literal_path(path)})",
        [business_date, run_id],
    )
    con.execute(
        "INSERT OR REPLACE INTO core.partition_loads "
        "SELECT ?, ?, (SELECT coalesce(max(load_seq), 0) + 1 FROM core.partition_loads)",
        [feed.name, business_date],
    )
    return con.execute(f"SELECT count(*) FROM core.{q(feed.name)} WHERE business_date = ?", [business_date]).fetchone()[0]


def refresh_calendar_days(con) -> bool:
    """core.calendar_days for the date being built (variable as_of_date): the latest calendars
    delivered up to it. Before the models: they count business days with its macros. Remade
    only when its inputs (core.calendar_days_inputs) or the script changed since it was last
    made: most dates have the same calendars as the date before, and remaking ~47,000 days a
    calendar was a tenth of a second of every build. Returns whether it was remade."""
    script = (WAREHOUSE_DDL_DIR / "calendar_days.sql").read_text()
    fingerprint = con.execute(
        "SELECT md5(? || coalesce(string_agg(calendar_id || '|' || coalesce(CAST(holiday_date AS VARCHAR), ''), "
        "',' ORDER BY calendar_id, holiday_date), '')) FROM core.calendar_days_inputs", [script]).fetchone()[0]
    if con.execute("SELECT fingerprint FROM core.calendar_days_source").fetchall() == [(fingerprint,)]:
        return False
    con.execute(script)
    con.execute("DELETE FROM core.calendar_days_source")
    con.execute("INSERT INTO core.calendar_days_source VALUES (?)", [fingerprint])
    return True


def refresh_control_parameters(con) -> None:
    """core.control_parameter_values for the date being built (variable as_of_date): the latest
    control_parameters delivered up to it over the defaults of contracts/control_parameters.yaml."""
    con.execute("DELETE FROM core.control_parameter_defaults")
    rows = [row for p in control_parameters().values() for row in p.default_rows()]
    if rows:
        con.executemany("INSERT INTO core.control_parameter_defaults VALUES (?, ?, ?, ?)", rows)
    con.execute((WAREHOUSE_DDL_DIR / "control_parameter_values.sql").read_text())


def refresh_case_actions(con, settings: Settings, business_date: str) -> int:
    """core.case_actions for the date being built: people's worklist actions effective on or before
    it (DOMAIN §9.2), read from the people store, so that a rebuild applies the same ones."""
    return people_store.materialise(settings, con, "case_actions", business_date, table="core.case_actions")


def previous_business_date(con, business_date: str) -> str:
    """The FIRM business date before this one, by the build's calendar (core.calendar_days)."""
    return str(con.execute("SELECT core.previous_business_day('FIRM', CAST(? AS DATE))", [business_date]).fetchone()[0])


def carry_from_date(con, model: Model, business_date: str) -> str | None:
    """The previous business date, if the model's rows of it can be carried forward: built, and
    after the last load of every partition of its feeds up to that date (a rerun of an earlier
    date since then means they may be stale). Else None: the model evaluates everything."""
    previous = previous_business_date(con, business_date)
    # every feed upstream, soft reads too: a reload of any of them can change what it carries
    feeds = upstream_feeds(load_models(), hard_only=False)[model.name]
    row = con.execute(
        "SELECT 1 FROM core.mart_builds b WHERE b.mart = ? AND b.business_date = ? "
        "AND NOT EXISTS (SELECT 1 FROM core.partition_loads l WHERE l.feed IN (SELECT unnest(?)) "
        "AND l.business_date <= b.business_date AND l.load_seq > b.after_load_seq)",
        [model.name, previous, list(feeds)],
    ).fetchone()
    return previous if row else None


def _record_mart_build(con, model: Model, business_date: str, built: bool) -> None:
    """For a model that carries its previous date: which loads its rows of the date have seen."""
    if not model.carries_previous_date:
        return
    con.execute("DELETE FROM core.mart_builds WHERE mart = ? AND business_date = ?", [model.name, business_date])
    if built:
        con.execute("INSERT INTO core.mart_builds SELECT ?, ?, (SELECT coalesce(max(load_seq), 0) "
                    "FROM core.partition_loads)", [model.name, business_date])


def _replace_quarantine(con, settings: Settings, business_date: str) -> None:
    con.execute("DELETE FROM core.quarantine WHERE business_date = ?", [business_date])
    for feed in ingest_order():
        path = settings.quarantine_partition(feed, business_date)
        if path.is_file():
            con.execute(
                "INSERT INTO core.quarantine SELECT business_date, feed, file, line, rule, detail, raw_record, run_id "
                f"FROM read_parquet({sql_literal_path(path)})"
            )


def _replace_feed_health(con, settings: Settings, business_date: str, gates: dict[str, dict]) -> None:
    con.execute("DELETE FROM core.feed_health WHERE business_date = ?", [business_date])
    for feed in ingest_order():
        ing = control.read_record(settings, "ingest", feed, business_date) or {}
        val = control.read_record(settings, "validation", feed, business_date) or {}
        gate = gates[feed]
        con.execute(
            "INSERT INTO core.feed_health VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                business_date, feed, ing.get("file"), ing.get("expected_rows"), ing.get("received_rows"),
                ing.get("loaded_rows", 0), ing.get("quarantined_rows", 0), bool(ing.get("conservation_ok")),
                val.get("expectations_run"), val.get("expectations_failed"), val.get("engine"),
                val.get("rows_validated"), val.get("sampled"), gate.get("gate"), gate.get("reason"),
                ing.get("delivered_at"), ing.get("deadline"), ing.get("freshness", "UNKNOWN"),
                ing.get("schema_note"), ing.get("run_id"),
            ],
        )


def _replace_pipeline_runs(con, settings: Settings, business_date: str) -> None:
    con.execute("DELETE FROM core.pipeline_runs WHERE business_date = ?", [business_date])
    folder = settings.control / "runs" / business_date
    rows = []
    # [!.]: a temporary file left by a killed writer is not a record
    for path in sorted(folder.glob("*/[!.]*.json")) if folder.is_dir() else []:
        r = json.loads(path.read_text())
        rows.append([r["run_id"], r["business_date"], r["stage"], r["status"], r["started_at"].rstrip("Z"),
                     r["finished_at"].rstrip("Z"), r.get("rows_in"), r.get("rows_out"), r.get("message")])
    if rows:
        con.executemany("INSERT INTO core.pipeline_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def _table_column_types(con, schema: str, table: str) -> list[tuple[str, str]]:
    return con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = ? AND table_name = ? ORDER BY column_index",
        [schema, table],
    ).fetchall()


Columns = dict[str, list[tuple[str, str]]]  # table or view of main -> its (column, type)s, in order


def main_columns(con) -> Columns:
    """Every table and view of the build file's main schema with its columns, in one catalog
    query. A build needs each mart's columns twice (to insert, to audit); one duckdb_columns()
    query a time took 5-35 ms, about 0.4 s of a small date's 4 s build."""
    found: Columns = {}
    for table, column, data_type in con.execute(
            "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = 'main' ORDER BY table_name, column_index").fetchall():
        found.setdefault(table, []).append((column, data_type))
    return found


def _columns_of(con, table: str, columns: Columns | None) -> list[tuple[str, str]]:
    return columns.get(table, []) if columns is not None else _table_column_types(con, "main", table)


def _table_columns(con, table: str, columns: Columns | None = None) -> list[str] | None:
    return [c for c, _ in _columns_of(con, table, columns)] or None


def _created(con, table: str, columns: Columns | None) -> None:
    """Note a table the build has just created (it was not in main_columns)."""
    if columns is not None:
        columns[table] = _table_column_types(con, "main", table)


def build_plan(con, model: Model, business_date: str, threads: int) -> tuple[int, int]:
    """(chunks, threads) for the model's date. A chunked model holds at most chunk_rows records
    of its feed per thread at a time: enough chunks for every thread to have its share within
    that, then as many threads as the chunk size leaves room for (each thread's hash tables take
    their own memory). More, smaller chunks on every thread beat fewer on one, as a chunk reads
    only its share of the events: 10M trades a day, 8 chunks on two threads, 6.3 s a chunk for
    the recon's query, against 21 s a chunk for 4 on one (bench/RESULTS.md); 1M: one chunk on
    two threads."""
    if not model.chunk_feed or model.chunk_rows <= 0:
        return 1, threads
    records = con.execute(f"SELECT count(*) FROM core.{q(model.chunk_feed)} WHERE business_date = ?",
                          [business_date]).fetchone()[0]
    chunks = max(1, -(-records * threads // model.chunk_rows))
    per_chunk = max(1, -(-records // chunks))
    return chunks, max(1, min(threads, model.chunk_rows // per_chunk))


def _build_model(con, model: Model, business_date: str, run_id: str, loaded_at: str,
                 columns: Columns | None = None) -> int:
    """Replace the model's rows of the date with the query's, straight into its table (chunk by
    chunk for a large date); the caller's transaction makes the replacement atomic."""
    if model.own_run_id:
        select, params = f"SELECT *, CAST(? AS TIMESTAMP) AS loaded_at FROM ({model.sql})", [loaded_at]
    else:
        select = f"SELECT *, CAST(? AS VARCHAR) AS run_id, CAST(? AS TIMESTAMP) AS loaded_at FROM ({model.sql})"
        params = [run_id, loaded_at]
    new_cols = con.sql(model.sql).columns + list(model.lineage)  # bound, not run
    documented = (model.state_columns + list(model.lineage)) if model.spans else list(model.columns)
    if new_cols != documented:
        raise AuditError(
            f"{model.name}: the query's columns {new_cols} differ from the documented columns {documented} "
            f"(transforms/{model.name}.yml)"
        )
    if model.spans:
        return _build_spans(con, model, business_date, select, params, columns)
    existing = _table_columns(con, model.name, columns)
    if existing is None:
        con.execute(f"CREATE TABLE main.{q(model.name)} AS SELECT * FROM ({select}) WHERE false", params)
        _created(con, model.name, columns)
    elif existing != new_cols:
        raise AuditError(
            f"{model.name}: the published table has columns {existing}, the model now gives {new_cols}; "
            "rebuild the warehouse (midoffice run over the whole range with a fresh --home)"
        )
    con.execute(f"DELETE FROM main.{q(model.name)} WHERE {q(model.partition)} = ?", [business_date])
    # Deleting first is safe: a model reads its own table only for earlier dates (the recon's
    # previous business date), never the date it replaces.
    return _in_chunks(con, model, business_date, lambda chunk, chunks: con.execute(
        f"INSERT INTO main.{q(model.name)} {select}", params).fetchone()[0])


def _in_chunks(con, model: Model, business_date: str, build_chunk) -> int:
    """Run build_chunk(chunk, chunks) for each chunk of the date (build_plan) with the model's
    threads, the chunk in getvariable('chunk'); the rows it wrote, summed."""
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    chunks, model_threads = build_plan(con, model, business_date, threads)
    # UBIGINT, as hash() is: hash(trade_id) % chunk_count then needs no 128-bit arithmetic
    con.execute("SET VARIABLE chunk_count = CAST(? AS UBIGINT)", [chunks])
    rows = 0
    for chunk in range(chunks):
        con.execute("SET VARIABLE chunk = CAST(? AS UBIGINT)", [chunk])
        con.execute(f"SET threads = {model_threads}")
        rows += build_chunk(chunk, chunks)
    # Not in a `finally`: after a failed statement the transaction is aborted, and a SET there
    # would raise "Current transaction is aborted" in place of the error that says what broke.
    con.execute(f"SET threads = {threads}")
    return rows


def _build_spans(con, model: Model, business_date: str, select: str, params: list,
                 columns: Columns | None = None) -> int:
    """A spans model's date: each chunk's rows are evaluated, then written as spans (midoffice.spans);
    its view (warehouse/marts.sql) gives the rows back."""
    view = _table_columns(con, model.name, columns)
    if view != list(model.columns):
        raise AuditError(f"{model.name}: its view (warehouse/marts.sql) has columns {view}, the documented "
                         f"columns are {list(model.columns)} (transforms/{model.name}.yml)")
    spans.add_date(con, model, "main", business_date)
    only_date = spans.neighbours(con, model, "main", business_date) == (None, None)

    def build_chunk(chunk: int, chunks: int) -> int:
        in_chunk = "true" if chunks == 1 else f"hash(trade_id) % {chunks}::UBIGINT = {chunk}::UBIGINT"
        if only_date:
            return spans.write_only_date(con, model, "main", business_date, f"({select})", params, in_chunk)
        # the chunk's rows go straight into the comparison, on the chunk's threads
        spans.write_date(con, model, "main", business_date, f"({select})", in_chunk, params)
        return con.execute(f"SELECT count(*) FROM {spans.rows_on(model, 'main', business_date)} WHERE {in_chunk}"
                           ).fetchone()[0]

    return _in_chunks(con, model, business_date, build_chunk)


def _ensure_table(con, model: Model, columns: Columns | None = None) -> None:
    """Create a skipped model's table, empty, when it does not exist yet (a new warehouse or mart)."""
    if _table_columns(con, model.name, columns) is None:
        lineage = "" if model.own_run_id else "CAST(NULL AS VARCHAR) AS run_id, "
        con.execute(f"CREATE TABLE main.{q(model.name)} AS "
                    f"SELECT *, {lineage}CAST(NULL AS TIMESTAMP) AS loaded_at FROM ({model.sql}) WHERE false")
        _created(con, model.name, columns)


def _sql_value(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def violation(test: ColumnTest) -> str:
    """The condition a row breaks the test by (a null breaks only not_null)."""
    col = q(test.column)
    if test.test == "not_null":
        return f"{col} IS NULL"
    if test.test == "finite":  # inf, -inf or NaN: a DECIMAL cannot hold one, a DOUBLE can
        return f"NOT isfinite(CAST({col} AS DOUBLE))"
    if test.test == "accepted_values":
        return f"CAST({col} AS VARCHAR) NOT IN ({', '.join(_sql_value(v) for v in test.values)})"
    if test.test == "range":
        bounds = [f"{col} < {float(test.min)!r}" if test.min is not None else "",
                  f"{col} > {float(test.max)!r}" if test.max is not None else ""]
        return " OR ".join(b for b in bounds if b)
    raise ValueError(test.test)


def _audit_model(con, model: Model, business_date: str, columns: Columns | None = None) -> list[str]:
    """The model's tests on the date's rows: the grain is a key (unique, not null), then the
    column tests (column_tests). A spans model's rows of the date are the spans that hold on it,
    one row each: the grain without the date must be a key of those (read straight from the
    spans, as its view would sort them all); its per-date columns are its view's, not tested."""
    if model.spans:
        rows, params = spans.rows_on(model, "main", business_date), []
        key = [g for g in model.grain if g != model.partition]
        stored = dict(_columns_of(con, model.spans_table, columns))
        types = [(c, stored[c]) for c in model.state_columns]
    else:
        rows = f"(SELECT * FROM main.{q(model.name)} WHERE {q(model.partition)} = CAST(? AS DATE))"
        key, params = list(model.grain), [business_date]
        types = _columns_of(con, model.name, columns)
    tests = column_tests(model, types)
    checked = [t for t in tests if t.test != "unique"]
    nulls = " OR ".join(f"{q(g)} IS NULL" for g in key)
    # one pass over the date's rows for the grain's nulls and every column test but unique
    n_null, *counts = con.execute(
        "SELECT " + ", ".join([f"count(*) FILTER (WHERE {nulls})"]
                              + [f"count(*) FILTER (WHERE {violation(t)})" for t in checked])
        + f" FROM {rows}", params).fetchone()
    problems = []
    if n_null:
        problems.append(f"{model.name}: {n_null} rows with a null grain column")
    grain = ", ".join(q(g) for g in key)
    n_dup = con.execute(f"SELECT count(*) FROM (SELECT {grain} FROM {rows} GROUP BY ALL HAVING count(*) > 1)",
                        params).fetchone()[0]
    if n_dup:
        problems.append(f"{model.name}: {n_dup} grain keys ({', '.join(model.grain)}) appear more than once")
    problems += [f"{model.name}.{t.column}: test {t.label} fails for {business_date} on {n} rows"
                 for t, n in zip(checked, counts) if n]
    for t in (t for t in tests if t.test == "unique"):
        n = con.execute(f"SELECT count(*) FROM (SELECT {q(t.column)} FROM {rows} WHERE {q(t.column)} IS NOT NULL "
                        "GROUP BY ALL HAVING count(*) > 1)", params).fetchone()[0]
        if n:
            problems.append(f"{model.name}.{t.column}: test unique fails for {business_date}: {n} values repeat")
    return problems


def _audit_invariants(con, business_date: str, built: set[str]) -> list[str]:
    """Tie-outs across tables: nothing lost, nothing invented."""
    problems = []
    bad = con.execute(
        "SELECT feed, received_rows, loaded_rows, quarantined_rows FROM core.feed_health "
        "WHERE business_date = ? AND received_rows IS NOT NULL AND received_rows <> loaded_rows + quarantined_rows",
        [business_date],
    ).fetchall()
    problems += [f"conservation broken for {f}: {r} received != {lo} loaded + {qu} quarantined" for f, r, lo, qu in bad]
    q_health, q_rows = con.execute(
        "SELECT (SELECT coalesce(sum(quarantined_rows), 0) FROM core.feed_health WHERE business_date = $1), "
        "(SELECT count(*) FROM core.quarantine WHERE business_date = $1)",
        [business_date],
    ).fetchone()
    if q_health != q_rows:
        problems.append(f"quarantine holds {q_rows} records for the date, feed health counts {q_health}")
    if "risk_exposure" in built:
        n_pos, n_exp = con.execute(
            "SELECT (SELECT count(*) FROM core.positions WHERE business_date = $1), "
            "(SELECT count(*) FROM main.risk_exposure WHERE as_of_date = $1)",
            [business_date],
        ).fetchone()
        # Exposure is per holder and instrument, positions also per custodian.
        n_keys = con.execute(
            "SELECT count(*) FROM (SELECT DISTINCT holder_type, holder_id, instrument_id FROM core.positions WHERE business_date = ?)",
            [business_date],
        ).fetchone()[0]
        if n_exp != n_keys:
            problems.append(f"risk_exposure has {n_exp} rows, positions have {n_keys} holder-instrument keys ({n_pos} rows)")
    return problems


def refresh_run_ledger(con, settings: Settings, business_date: str, run_id: str) -> None:
    """Reload the date's pipeline_runs so the published ledger includes this run's build."""
    create_schema(con)
    con.execute("SET VARIABLE as_of_date = CAST(? AS DATE)", [business_date])
    con.execute("BEGIN TRANSACTION")
    try:
        _replace_pipeline_runs(con, settings, business_date)
        ledger = next(m for m in load_models() if m.name == "pipeline_runs")
        _build_model(con, ledger, business_date, run_id, control.utc_now().rstrip("Z"))
        con.execute("INSERT OR IGNORE INTO core.unpublished_dates VALUES (?)", [business_date])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def _replace_people_inputs(con, settings: Settings, business_date: str) -> None:
    """People's sign-offs effective up to the date (midoffice.people.store) and the version that
    last published each date (the lake, read-only): inputs of the build, never derived by it."""
    from midoffice import lake
    from midoffice.people import store

    store.materialise(settings, con, "signoffs", up_to_effective_date=business_date, table="core.signoffs")
    con.execute("DELETE FROM core.published_versions")
    published = lake.published_dates(settings)
    if published:
        con.executemany("INSERT INTO core.published_versions VALUES (CAST(? AS DATE), ?)", list(published.items()))


def build_warehouse(settings: Settings, business_date: str, run_id: str) -> dict:
    started_at = control.utc_now()
    t0 = time.monotonic()
    feeds = ingest_order()
    gates = gates_for(settings, business_date, feeds)
    settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    con = connect(settings, settings.build_db)
    loaded: dict[str, int] = {}
    built: dict[str, int] = {}
    skipped: dict[str, str] = {}
    mart_seconds: dict[str, float] = {}  # which mart took the night's time (the build task's XCom)
    try:
        key, _source = resolve_key(settings)  # refuse to build client identity without a key
        register_client_key(con, key)
        # The build reads the lake's partitions and writes its own file (and spills), nothing
        # else. Not locked: it sets each model's threads (the chunked recon), and its SQL is ours.
        restrict_to(con, settings.staged, settings.quarantine, settings.warehouse_dir, settings.tmp, lock=False)
        create_schema(con)
        con.execute("SET VARIABLE as_of_date = CAST(? AS DATE)", [business_date])
        con.execute("SET VARIABLE reporting_currency = ?", [settings.reporting_currency])
        con.execute("SET VARIABLE var_scenarios = ?", [settings.var_scenarios])
        con.execute("SET VARIABLE quarantine_threshold = ?", [settings.quarantine_threshold])
        con.execute("BEGIN TRANSACTION")
        for name, feed in load_contracts().items():
            if gates[name]["gate"] == "PASS":
                loaded[name] = _replace_feed_partition(con, settings, feed, business_date, run_id)
        refresh_calendar_days(con)
        refresh_control_parameters(con)
        refresh_case_actions(con, settings, business_date)
        _replace_quarantine(con, settings, business_date)
        _replace_feed_health(con, settings, business_date, gates)
        _replace_pipeline_runs(con, settings, business_date)
        _replace_people_inputs(con, settings, business_date)
        con.execute("DELETE FROM core.build_log WHERE business_date = ?", [business_date])
        # The date's core partitions are committed before the marts are built: uncommitted, 10M
        # trades a day held the memory the recon needs (out of memory at 4 GB). Marts still
        # change in one transaction; if it fails, the date's marts keep their previous rows
        # beside the new core partitions, nothing is published, and the rerun (the task's
        # retry) builds it again from the core, which it replaces first anyway.
        con.execute("COMMIT")
        # The client file's keys, computed once here, serve every client mart's client_key().
        remember_clients(con, "SELECT client_id FROM core.clients WHERE business_date = ?", [business_date])
        # The marts run on every thread: their sums over groups are DECIMAL (exact), so the
        # order in which threads combine partial results changes no bit and a rerun gives the
        # same rows (tests/test_parallel_marts.py).
        con.execute("BEGIN TRANSACTION")
        columns = main_columns(con)
        problems: list[str] = []
        for model in load_models():
            failed = [f for f in model.depends_on_feeds if gates[f]["gate"] != "PASS"]
            failed += [m for m in model.depends_on_models if m in skipped]
            if failed:
                skipped[model.name] = "not built for this date: " + ", ".join(failed) + " did not pass"
                con.execute("INSERT INTO core.build_log VALUES (?, ?, 'SKIPPED', ?, NULL, ?)",
                            [business_date, model.name, skipped[model.name], run_id])
                _ensure_table(con, model, columns)  # the models that read it (reads_models) still bind
                _record_mart_build(con, model, business_date, built=False)
                continue
            if model.carries_previous_date:
                con.execute("SET VARIABLE carry_from_date = CAST(? AS DATE)",
                            [carry_from_date(con, model, business_date)])
            model_started = time.monotonic()
            built[model.name] = _build_model(con, model, business_date, run_id, started_at.rstrip("Z"), columns)
            mart_seconds[model.name] = round(time.monotonic() - model_started, 3)
            _record_mart_build(con, model, business_date, built=True)
            con.execute("INSERT INTO core.build_log VALUES (?, ?, 'BUILT', NULL, ?, ?)",
                        [business_date, model.name, built[model.name], run_id])
            problems += _audit_model(con, model, business_date, columns)
        problems += _audit_invariants(con, business_date, set(built))
        con.execute("INSERT OR IGNORE INTO core.unpublished_dates VALUES (?)", [business_date])
        if problems:
            raise AuditError(f"{business_date}: audit failed, nothing of the date kept: " + "; ".join(problems))
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    except Exception as exc:
        try:
            con.execute("ROLLBACK")
        except Exception:
            pass
        control.record_stage(settings, run_id, business_date, "build", "FAILED", started_at, message=str(exc))
        raise
    finally:
        con.close()
    summary = {
        "business_date": business_date, "run_id": run_id, "loaded": loaded, "built": built,
        "skipped": skipped, "mart_seconds": mart_seconds, "seconds": round(time.monotonic() - t0, 3),
    }
    control.record_stage(
        settings, run_id, business_date, "build", "SUCCESS", started_at,
        rows_in=sum(loaded.values()), rows_out=sum(built.values()),
        message=("skipped: " + "; ".join(f"{k} ({v})" for k, v in skipped.items())) if skipped else "",
    )
    return summary
