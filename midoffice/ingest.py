"""Ingest: landing file → staged Parquet partition + quarantine, for one feed and business date.

Every received record ends in exactly one place. The file is read with every column as text and
an explicit column list (no type sniffing), so that a bad value quarantines one record instead of
failing the file; lines that do not parse at all come from DuckDB's reject tables. Then each
record gets the first rule of the contract it breaks (type, required, values, range, pattern,
ref, duplicate_key, row rules); records with none are loaded.

Hostile input is expected (docs/RELIABILITY.md): the DuckDB connection may only read the date's
landing folder and write the lake (external access off, configuration locked); a Parquet file is
checked against the contract's types and its decoded size before any of it is loaded; anything
that cannot be read within the memory limit fails the file with a message, never the process.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from midoffice import control, landing
from midoffice.config import Settings
from midoffice.contracts import Column, Feed, get_feed
from midoffice.duck import (connect, human_bytes, memory_limit_bytes, memory_limit_text, quote_ident as q,
                            restrict_to, sql_literal_path)

RAW_RECORD_MAX_CHARS = 100_000
# The split holds a file's records about four times over (raw text, typed, checked, output), so
# a Parquet file whose values decode to more than this share of the memory limit is refused
# before it is loaded: a few hundred KB of dictionary-encoded Parquet can expand to gigabytes.
PARQUET_DECODED_SHARE_OF_MEMORY = 0.25
TEMP_PREFIX = ".tmp-"
# The n-th parsed record of a file (1-based). A table created from a scan keeps the scan's order
# (DuckDB preserves insertion order), so its rowid counts the records; row_number() OVER () over
# the scan gives the same numbers but is a single-threaded window (1.5 s of 1M trades' 2.7 s read).
RECORD_ORDINAL = "rowid + 1"


@dataclass
class IngestResult:
    feed: str
    business_date: str
    run_id: str
    file: str
    status: str = "FAILED"  # LOADED | FAILED
    error: str | None = None
    expected_rows: int | None = None
    received_rows: int | None = None
    loaded_rows: int = 0
    quarantined_rows: int = 0
    conservation_ok: bool = False
    sha256: str | None = None
    delivered_at: str | None = None
    deadline: str | None = None
    freshness: str = "UNKNOWN"
    schema_note: str | None = None
    references_from: dict = field(default_factory=dict)
    rules: dict = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


# --- reading the file as text ------------------------------------------------------------------

def _csv_header(path: Path, business_date: str, feed: Feed) -> list[str]:
    with path.open("rb") as fh:
        first = fh.readline(1 << 20)
    if not first.strip():
        raise landing.FileLevelError(business_date, feed.name, str(path), "empty file: no header row")
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise landing.FileLevelError(business_date, feed.name, str(path), "header is not valid UTF-8")
    return next(csv.reader(io.StringIO(text)))


def _columns_in_file(header: list[str], business_date: str, feed: Feed, path: Path) -> tuple[list[str], str | None]:
    """The file's column order, if it is the contract's set; schema drift fails the file.

    Optional columns (DOMAIN §7) may be left out: they load as null, and the note says so."""
    expected = feed.column_names
    if header == expected:
        return expected, None
    optional = {c.name for c in feed.columns if c.optional}
    missing = [c for c in expected if c not in header and c not in optional]
    unexpected = [c for c in header if c not in expected]
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if missing or unexpected or duplicated:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if unexpected:
            parts.append(f"unexpected {unexpected}")
        if duplicated:
            parts.append(f"duplicated {duplicated}")
        raise landing.FileLevelError(business_date, feed.name, str(path), "wrong columns: " + ", ".join(parts))
    notes = []
    absent = [c for c in expected if c not in header]
    if absent:
        notes.append(f"optional columns not sent (loaded as null): {absent}")
    if [c for c in expected if c in header] != header:
        # Same columns, other order: read by name, and say so (an explicitly accepted change).
        notes.append(f"columns reordered in file: {header}")
    return header, "; ".join(notes) or None


def _absent_as_null(feed: Feed, present: list[str]) -> str:
    """Select-list entries that give the optional columns a file left out as null text."""
    return "".join(f", NULL::VARCHAR AS {q(c)}" for c in feed.column_names if c not in present)


def _csv_quote_expr(col: str) -> str:
    v = q(col)
    return (f"CASE WHEN {v} IS NULL THEN '' WHEN regexp_matches({v}, '[,\"\\n\\r]') "
            f"THEN '\"' || replace({v}, '\"', '\"\"') || '\"' ELSE {v} END")


def _load_raw_csv(con, path: Path, business_date: str, feed: Feed, result: IngestResult) -> tuple[str | None, int, str]:
    header = _csv_header(path, business_date, feed)
    order, note = _columns_in_file(header, business_date, feed, path)
    columns = "{" + ", ".join(f"'{c}': 'VARCHAR'" for c in order) + "}"
    # The raw record is rebuilt from the text columns only for the records that get quarantined
    # (a per-record quoting expression over every line costs as much as the whole parse).
    raw_record = " || ',' || ".join(_csv_quote_expr(c) for c in order)
    con.execute(f"""
        CREATE TEMP TABLE raw_text AS
        SELECT *
        FROM read_csv({sql_literal_path(path)}, header = true, columns = {columns},
                      auto_detect = false, delim = ',', quote = '"', escape = '"',
                      store_rejects = true, rejects_scan = 'rej_scan', rejects_table = 'rej_err',
                      strict_mode = true, encoding = 'utf-8')
    """)
    con.execute(f"CREATE TEMP VIEW raw AS SELECT {RECORD_ORDINAL} AS _ord, *{_absent_as_null(feed, order)} FROM raw_text")
    return note, 1, raw_record


def _load_raw_jsonl(con, path: Path, business_date: str, feed: Feed, result: IngestResult) -> tuple[str | None, int, str]:
    with path.open("rb") as fh:
        first = fh.readline(1 << 20)
    if not first.strip():
        raise landing.FileLevelError(business_date, feed.name, str(path), "empty file")
    try:
        keys = list(json.loads(first.decode("utf-8")).keys())
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        keys = None  # a bad first record is a record-level problem; it gets quarantined
    note = None
    if keys is not None:
        _, note = _columns_in_file(keys, business_date, feed, path)
    # One text column per line; \x1e (record separator) never occurs in JSON text.
    con.execute(f"""
        CREATE TEMP TABLE lines AS
        SELECT _json
        FROM read_csv({sql_literal_path(path)}, header = false, columns = {{'_json': 'VARCHAR'}},
                      auto_detect = false, delim = '\x1e', quote = '', escape = '',
                      store_rejects = true, rejects_scan = 'rej_scan', rejects_table = 'rej_err',
                      strict_mode = true, encoding = 'utf-8')
    """)
    names = feed.column_names
    optional = [c.name for c in feed.columns if c.optional]
    expected_keys = "[" + ", ".join(f"'{c}'" for c in sorted(set(names) - set(optional))) + "]"
    optional_keys = "[" + ", ".join(f"'{c}'" for c in optional) + "]::VARCHAR[]"
    # A record has every contract key, with optional keys allowed to be absent (they read as null).
    sent_keys = f"list_sort(list_filter(json_keys(_jo), k -> NOT list_contains({optional_keys}, k)))"
    # Each JSON function parses the document again: one list-of-paths call for the values and
    # one for their types parse it twice, instead of twice per column.
    paths = "[" + ", ".join(f"'$.{c}'" for c in names) + "]"
    fields = ", ".join(
        f"_values[{i}] AS {q(c)}, coalesce(_types[{i}] IN ('OBJECT', 'ARRAY'), false) AS {q('_nested_' + c)}"
        for i, c in enumerate(names, start=1)
    )
    # DuckDB evaluates both sides of AND, so JSON functions only ever see valid JSON (_j).
    con.execute(f"""
        CREATE TEMP TABLE raw AS
        WITH parsed AS (
            SELECT {RECORD_ORDINAL} AS _ord, _json, CASE WHEN json_valid(_json) THEN _json END AS _j FROM lines
        ), objects AS (
            SELECT *, CASE WHEN json_type(_j) = 'OBJECT' THEN _j END AS _jo FROM parsed
        ), keyed AS (
            SELECT *, CASE WHEN {sent_keys} = {expected_keys}
                                AND len(json_keys(_jo)) = len(list_distinct(json_keys(_jo)))
                                AND list_has_all({"[" + ", ".join(f"'{c}'" for c in names) + "]"}, json_keys(_jo))
                           THEN _jo END AS _o FROM objects
        ), extracted AS (
            SELECT *, json_extract_string(_o, {paths}) AS _values, json_type(_o, {paths}) AS _types FROM keyed
        )
        SELECT _ord, {fields}, _json AS _raw,
               CASE WHEN _jo IS NULL THEN 'not a JSON object'
                    WHEN _o IS NULL THEN 'keys differ from the contract: ' || array_to_string(list_sort(json_keys(_jo)), ',')
               END AS _malformed
        FROM extracted
    """)
    return note, 0, "_raw"


def _parquet_type_ok(contract_type: str, arrow_type) -> bool:
    """Is the file's column type the contract's type (or a lossless encoding of it)?"""
    import pyarrow as pa

    t = arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type
    if contract_type == "VARCHAR":
        return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
    if contract_type == "BIGINT":
        return pa.types.is_integer(t) and t != pa.uint64()
    if contract_type == "DOUBLE":
        # float32 or integers would be a silent change of precision or unit: refuse, don't guess.
        return pa.types.is_float64(t) or pa.types.is_decimal(t)
    if contract_type == "DATE":
        return pa.types.is_date(t)
    if contract_type == "TIMESTAMP":
        return pa.types.is_timestamp(t) and t.tz in (None, "UTC", "+00:00", "Etc/UTC")
    return False


def _parquet_as_text(col: Column) -> str:
    """The typed Parquet value as the text the contract's parser reads (same rules as CSV)."""
    if col.type == "TIMESTAMP":
        return f"strftime(CAST({q(col.name)} AS TIMESTAMP), '%Y-%m-%dT%H:%M:%SZ')"
    return f"CAST({q(col.name)} AS VARCHAR)"


def _load_raw_parquet(con, path: Path, business_date: str, feed: Feed, result: IngestResult) -> tuple[str | None, int, str]:
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except Exception as exc:  # truncated or not Parquet at all
        raise landing.FileLevelError(business_date, feed.name, str(path), f"unreadable Parquet: {exc}")
    order, note = _columns_in_file(list(schema.names), business_date, feed, path)
    retyped = [
        f"{c.name} is {schema.field(c.name).type} in the file, the contract says {c.type}"
        for c in feed.columns if c.name in order and not _parquet_type_ok(c.type, schema.field(c.name).type)
    ]
    if retyped:
        raise landing.FileLevelError(business_date, feed.name, str(path), "retyped columns: " + "; ".join(retyped))
    # The footer knows the record count: a mismatch fails the file before anything is decoded.
    if result.expected_rows is not None and meta.num_rows != result.expected_rows:
        raise landing.FileLevelError(
            business_date, feed.name, str(path),
            f"record count mismatch: manifest says {result.expected_rows}, file has {meta.num_rows}",
        )
    # The footer's sizes are those of encoded pages (a dictionary of one long string repeated
    # millions of times is tiny there), so measure what the values decode to with a streaming
    # aggregate, which holds one vector at a time, before materialising anything.
    sent = [c for c in feed.columns if c.name in order]
    text_cols = [c for c in sent if c.type == "VARCHAR"]
    sizes = " + ".join(f"coalesce(sum(strlen({q(c.name)})), 0)" for c in text_cols) or "0"
    decoded = con.execute(f"SELECT {sizes} FROM read_parquet({sql_literal_path(path)})").fetchone()[0]
    decoded += 8 * meta.num_rows * (len(sent) - len(text_cols))
    limit = int(memory_limit_bytes(con) * PARQUET_DECODED_SHARE_OF_MEMORY)
    if decoded > limit:
        raise landing.FileLevelError(
            business_date, feed.name, str(path),
            f"refused unread: its {meta.num_rows} records decode to {human_bytes(decoded)} "
            f"({human_bytes(path.stat().st_size)} on disk), over the {human_bytes(limit)} that the ingest's "
            f"memory limit allows for one file",
        )
    casts = ", ".join(f"{_parquet_as_text(c)} AS {q(c.name)}" for c in sent) + _absent_as_null(feed, order)
    struct = ", ".join(f"{q(c.name)} := {q(c.name)}" for c in sent)
    con.execute(f"""
        CREATE TEMP TABLE raw AS
        SELECT file_row_number + 1 AS _ord, {casts}, CAST(to_json(struct_pack({struct})) AS VARCHAR) AS _raw
        FROM read_parquet({sql_literal_path(path)}, file_row_number = true)
    """)
    return note, 0, "_raw"


# --- rules ------------------------------------------------------------------------------------

def _typed(col: Column) -> str:
    v = q(col.name)
    return {
        "VARCHAR": v,
        "BIGINT": f"TRY_CAST({v} AS BIGINT)",
        "DOUBLE": f"CASE WHEN isfinite(TRY_CAST({v} AS DOUBLE)) THEN TRY_CAST({v} AS DOUBLE) END",
        "DATE": f"TRY_CAST(TRY_STRPTIME({v}, '%Y-%m-%d') AS DATE)",
        "TIMESTAMP": f"TRY_STRPTIME({v}, '%Y-%m-%dT%H:%M:%SZ')",
    }[col.type]


BUSINESS_DATE_SQL = "getvariable('business_date')"  # what `business_date` / `$business_date` in a contract means


def _literal(value) -> str:
    if value == "business_date":
        return BUSINESS_DATE_SQL
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _column_checks(feed: Feed, fmt: str) -> list[tuple[str, str]]:
    """(rule name, SQL condition that is TRUE when the record breaks it), in first-wins order."""
    t = lambda c: q("t_" + c.name)  # noqa: E731 - typed value
    checks: list[tuple[str, str]] = []
    for c in feed.columns:
        cond = f"{q(c.name)} IS NOT NULL AND {t(c)} IS NULL"
        if fmt == "jsonl":
            cond = f"({cond}) OR {q('_nested_' + c.name)}"
        checks.append((f"{c.name}:type", cond))
    for c in feed.columns:
        if c.required:
            checks.append((f"{c.name}:required", f"{t(c)} IS NULL"))
    for c in feed.columns:
        if c.values:
            checks.append((f"{c.name}:values", f"{t(c)} NOT IN ({', '.join(_literal(v) for v in c.values)})"))
    for c in feed.columns:
        bounds = []
        if c.min is not None:
            bounds.append(f"{t(c)} < {_literal(c.min)}")
        if c.min_exclusive is not None:
            bounds.append(f"{t(c)} <= {_literal(c.min_exclusive)}")
        if c.max is not None:
            bounds.append(f"{t(c)} > {_literal(c.max)}")
        if c.max_exclusive is not None:
            bounds.append(f"{t(c)} >= {_literal(c.max_exclusive)}")
        if bounds:
            checks.append((f"{c.name}:range", " OR ".join(bounds)))
    for c in feed.columns:
        if c.pattern:
            checks.append((f"{c.name}:pattern", f"NOT regexp_full_match({t(c)}, {_literal(c.pattern)})"))
    for c in feed.columns:
        if c.ref:
            checks.append((f"{c.name}:ref", f"{t(c)} IS NOT NULL AND {q('ref_' + c.name)} IS NULL"))
    return checks


def _reference_joins(con, settings: Settings, feed: Feed, business_date: str, result: IngestResult) -> str:
    """LEFT JOINs for ref checks and lookups; registers the referenced partitions as views."""
    joins = []
    needed = {c.ref[0] for c in feed.columns if c.ref} | {lk.feed for lk in feed.lookups}
    for ref_feed in sorted(needed):
        found = settings.latest_staged_partition(ref_feed, business_date)
        if found is None:
            raise landing.FileLevelError(
                business_date, feed.name, feed.file,
                f"cannot check references: no loaded {ref_feed} on or before {business_date}",
            )
        used_date, path = found
        result.references_from[ref_feed] = used_date
        con.execute(f"CREATE TEMP VIEW {q('ref__' + ref_feed)} AS SELECT * FROM read_parquet({sql_literal_path(path)})")
    for c in feed.columns:
        if c.ref:
            rfeed, rcol = c.ref
            alias = q("ref_" + c.name + "_j")
            joins.append(
                f"LEFT JOIN (SELECT DISTINCT {q(rcol)} AS k FROM {q('ref__' + rfeed)}) {alias} "
                f"ON {alias}.k = {q('t_' + c.name)}"
            )
    for lk in feed.lookups:
        alias = q(lk.alias + "_j")
        value = f"any_value({q(lk.value)})" if lk.value else "true"
        joins.append(
            f"LEFT JOIN (SELECT {q(lk.key)} AS k, {value} AS v FROM {q('ref__' + lk.feed)} GROUP BY 1) {alias} "
            f"ON {alias}.k = {q('t_' + lk.by)}"
        )
    return "\n".join(joins)


def _ref_select(feed: Feed) -> str:
    cols = [f"{q('ref_' + c.name + '_j')}.k AS {q('ref_' + c.name)}" for c in feed.columns if c.ref]
    for lk in feed.lookups:
        if lk.value:
            cols.append(f"{q(lk.alias + '_j')}.v AS {q(lk.alias)}")
        else:
            cols.append(f"coalesce({q(lk.alias + '_j')}.v, false) AS {q(lk.alias)}")
    return (", " + ", ".join(cols)) if cols else ""


def _split(con, settings: Settings, feed: Feed, business_date: str, fmt: str, result: IngestResult) -> None:
    """Adds `_rule` and `_detail` to every parsed record (NULL when it loads)."""
    typed = ", ".join(f"{_typed(c)} AS {q('t_' + c.name)}" for c in feed.columns)
    joins = _reference_joins(con, settings, feed, business_date, result)
    checks = _column_checks(feed, fmt)
    malformed = "WHEN _malformed IS NOT NULL THEN 'malformed_record' " if fmt == "jsonl" else ""
    # A NUL character is never text a sender meant (it truncates values in C-string consumers).
    # Column by column: concatenating the record first builds a string per record (0.6 s at 1M).
    has_nul = "(" + " OR ".join(f"contains({q(c.name)}, chr(0))" for c in feed.columns) + ")"
    malformed += f"WHEN {has_nul} THEN 'malformed_record' "
    rule_case = "CASE " + malformed + " ".join(
        f"WHEN {cond} THEN '{name}'" for name, cond in checks
    ) + " END"
    details = []
    if fmt == "jsonl":
        details.append("WHEN _malformed IS NOT NULL THEN _malformed")
    details.append("WHEN _rule1 = 'malformed_record' THEN 'NUL character in the record'")
    for name, _ in checks:
        col = name.split(":")[0]
        details.append(f"WHEN _rule1 = '{name}' THEN '{col}=' || coalesce({q(col)}, '<null>')")
    detail_case = "CASE " + " ".join(details) + " END"
    # One wide materialisation (checked1: text, typed and reference columns and the first
    # failing column rule); the later verdicts (duplicate keys, row rules) are small tables of
    # the failing records only, joined back in the `checked` view.
    con.execute(f"""
        CREATE TEMP TABLE checked1 AS
        WITH typed AS (SELECT r.*, {typed} FROM raw r),
             j AS (SELECT t.* {_ref_select(feed)} FROM typed t {joins}),
             r1 AS (SELECT *, {rule_case} AS _rule1 FROM j)
        SELECT *, {detail_case} AS _detail1 FROM r1
    """)
    key = ", ".join(q("t_" + k) for k in feed.key)
    rule_checks = " ".join(
        f"WHEN ({rule.sql.replace('$business_date', BUSINESS_DATE_SQL)}) IS NOT TRUE THEN '{rule.name}'"
        for rule in feed.rules
    )
    # Row rules reference columns by their contract names: expose the typed values under them.
    typed_as_named = ", ".join(f"{q('t_' + c.name)} AS {q(c.name)}" for c in feed.columns)
    extra = [q("ref_" + c.name) for c in feed.columns if c.ref] + [q(lk.alias) for lk in feed.lookups]
    extra_sel = (", " + ", ".join(extra)) if extra else ""
    rule_texts = " ".join(f"WHEN '{r.name}' THEN {_literal(r.sql)}" for r in feed.rules) or "WHEN '' THEN ''"
    key_text = " || ', ' || ".join(f"coalesce(CAST({q('t_' + k)} AS VARCHAR), '<null>')" for k in feed.key)
    # First rule wins: a column rule, else a duplicate key, else the first failing row rule.
    con.execute(f"""
        CREATE TEMP TABLE verdict AS
        WITH clean AS (
            SELECT * FROM checked1 WHERE _rule1 IS NULL
        ), dup AS (
            SELECT _ord, 'key (' || {key_text} || ') seen on an earlier line' AS _detail
            FROM clean
            QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY _ord) > 1
        ), named AS (
            SELECT c._ord, {typed_as_named} {extra_sel} FROM clean c ANTI JOIN dup d USING (_ord)
        ), rules AS (
            SELECT _ord, CASE {rule_checks if rule_checks else "WHEN false THEN NULL"} END AS _rule3 FROM named
        )
        SELECT _ord, _rule1 AS _rule, _detail1 AS _detail FROM checked1 WHERE _rule1 IS NOT NULL
        UNION ALL
        SELECT _ord, 'duplicate_key', _detail FROM dup
        UNION ALL
        SELECT _ord, _rule3, 'row rule failed: ' || CASE _rule3 {rule_texts} END FROM rules WHERE _rule3 IS NOT NULL
    """)
    con.execute("""
        CREATE TEMP VIEW checked AS
        SELECT c.*, v._rule, v._detail FROM checked1 c LEFT JOIN verdict v USING (_ord)
    """)


# --- writing ----------------------------------------------------------------------------------

def _copy_atomic(con, select_sql: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{TEMP_PREFIX}{os.getpid()}-{target.name}")
    try:
        con.execute(f"COPY ({select_sql}) TO {sql_literal_path(tmp)} (FORMAT parquet, COMPRESSION zstd)")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _remove_stale_temporaries(*partitions: Path) -> None:
    """Temporary files of an ingest that was killed half way (SIGKILL runs no cleanup).

    One ingest at a time writes a (feed, date) partition (one task per feed in a DAG run, one run
    per date at a time), so anything temporary in it when an ingest starts is a leftover.
    """
    for partition in partitions:
        if partition.parent.is_dir():
            for stale in partition.parent.glob(f"{TEMP_PREFIX}*"):
                stale.unlink(missing_ok=True)


def _restrict_file_access(con, settings: Settings, received_folder: Path) -> None:
    """This connection reads the private copy of the delivered file (its folder, under the spill
    root) and the lake, writes the lake, nothing else: the landing itself is not reachable."""
    restrict_to(con, received_folder, settings.staged, settings.quarantine, settings.tmp)


def _remove_partition(path: Path) -> None:
    if path.parent.is_dir():
        shutil.rmtree(path.parent)


def _reject_table_exists(con) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'rej_err'"
    ).fetchone()[0])


def ingest_feed(settings: Settings, business_date: str, feed_name: str, run_id: str) -> dict:
    """Ingest one feed for one business date; returns the (small) ingest control record."""
    started = time.monotonic()
    started_at = control.utc_now()
    feed = get_feed(feed_name)
    result = IngestResult(feed=feed.name, business_date=business_date, run_id=run_id, file=feed.file)
    staged = settings.staged_partition(feed.name, business_date)
    quarantined = settings.quarantine_partition(feed.name, business_date)
    _remove_stale_temporaries(staged, quarantined)
    # What validate and the gate decided about an earlier delivery no longer holds: if this
    # ingest dies, the build must not find a PASS for partitions it may have half replaced.
    for kind in ("gate", "validation"):
        settings.control_file(kind, feed.name, business_date).unlink(missing_ok=True)
    try:
        manifest = landing.read_manifest(settings.landing, business_date)
        entry = landing.manifest_entry(manifest, business_date, feed)
        result.expected_rows = entry.rows
        result.delivered_at = entry.delivered_at
        result.deadline, result.freshness = landing.freshness(business_date, feed, entry.delivered_at)
        path = landing.resolve_file(settings.landing, business_date, feed, entry)
        result.file = str(path)
        _ingest_received(settings, feed, business_date, path, entry, run_id, result, staged, quarantined)
    except landing.FileLevelError as exc:
        result.status, result.error = "FAILED", str(exc)
        # A refused file is refused whole: none of its records was received into the pipeline
        # (the count it had, if any, is in the message), so conservation is not broken by it.
        result.received_rows, result.loaded_rows, result.quarantined_rows, result.rules = None, 0, 0, {}
        # A failed delivery must not leave an earlier run's partition looking current.
        _remove_partition(staged)
        _remove_partition(quarantined)
    except Exception as exc:
        # Not the file's fault as far as we know (disk, a bug): record it, then let the
        # orchestrator retry. Nothing half written may look like a delivery.
        result.status = "FAILED"
        result.received_rows, result.loaded_rows, result.quarantined_rows, result.rules = None, 0, 0, {}
        result.error = f"{business_date} {feed.name} ({result.file}): ingest stopped: {type(exc).__name__}: " \
                       f"{(str(exc).splitlines() or [''])[0]}"
        _remove_partition(staged)
        _remove_partition(quarantined)
        _record(settings, result, started, started_at, run_id)
        raise
    _record(settings, result, started, started_at, run_id)
    return result.as_dict()


def _record(settings: Settings, result: IngestResult, started: float, started_at: str, run_id: str) -> None:
    result.seconds = round(time.monotonic() - started, 3)
    control.write_record(settings, "ingest", result.feed, result.business_date, result.as_dict())
    control.record_stage(
        settings, run_id, result.business_date, f"ingest:{result.feed}",
        "SUCCESS" if result.status == "LOADED" else "FAILED", started_at,
        rows_in=result.received_rows, rows_out=result.loaded_rows, message=result.error or "",
    )


def _count_mismatch(con, expected: int | None, received: int) -> str:
    cause = f"record count mismatch: manifest says {expected}, file has {received}"
    # An unterminated quote makes the reader take the rest of the file as one value; say where.
    hit = con.execute(
        "SELECT min(line) FROM rej_err WHERE error_type = 'UNQUOTED VALUE'"
    ).fetchone()[0]
    if hit is not None:
        cause += f" (an unterminated quote on line {hit} runs to the end of the file)"
    return cause


RECEIVING_STALE_SECONDS = 24 * 3600  # a folder this old is a killed ingest's, whatever its pid says


def _receiving_folder(settings: Settings, feed: Feed, business_date: str) -> Path:
    """A private folder for this ingest's copy of the delivered file. A killed ingest's folder of
    the same feed and date is removed: its process is gone (or it is a day old); a live one's is
    left alone (another ingest of the date may be reading it)."""
    root = settings.tmp / "receiving"
    prefix = f"{feed.name}-{business_date}-"
    if root.is_dir():
        for folder in root.glob(prefix + "*"):
            if _abandoned(folder, prefix):
                shutil.rmtree(folder, ignore_errors=True)
    return root / f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _abandoned(folder: Path, prefix: str) -> bool:
    try:
        if time.time() - folder.stat().st_mtime > RECEIVING_STALE_SECONDS:
            return True
        pid = int(folder.name[len(prefix):].split("-")[0])
        os.kill(pid, 0)  # raises if no such process
    except ProcessLookupError:
        return True
    except (OSError, ValueError):
        return False  # not ours to judge (another user's process, a name we did not make)
    return False


def _ingest_received(settings, feed, business_date, path, entry, run_id, result, staged, quarantined) -> None:
    """Ingest the bytes that were verified: a private copy, hashed as it was made (landing.receive).

    Messages and quarantine records still name the landing file (`result.file`), which stays in
    place as the archive of what was received.
    """
    folder = _receiving_folder(settings, feed, business_date)
    try:
        copy, result.sha256 = landing.receive(business_date, feed, path, entry, folder)
        try:
            _ingest_file(settings, feed, business_date, copy, run_id, result, staged, quarantined)
        except landing.FileLevelError as exc:
            raise landing.FileLevelError(exc.business_date, exc.feed, result.file, exc.cause) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _ingest_file(settings, feed, business_date, path, run_id, result, staged, quarantined) -> None:
    con = connect(settings)
    try:
        _restrict_file_access(con, settings, path.parent)
        con.execute("SET VARIABLE business_date = CAST(? AS DATE)", [business_date])
        loader = {"csv": _load_raw_csv, "jsonl": _load_raw_jsonl, "parquet": _load_raw_parquet}[feed.format]
        try:
            result.schema_note, header_lines, raw_record_sql = loader(con, path, business_date, feed, result)
        except landing.FileLevelError:
            raise
        except duckdb.OutOfMemoryException as exc:
            raise _too_big(business_date, feed, path, con, exc)
        except Exception as exc:  # DuckDB could not read it at all (encoding, size, corruption)
            raise landing.FileLevelError(business_date, feed.name, str(path), f"unreadable: {str(exc).splitlines()[0]}")
        has_rejects = _reject_table_exists(con)
        if not has_rejects:
            con.execute("CREATE TEMP TABLE rej_err (line BIGINT, csv_line VARCHAR, error_type VARCHAR, error_message VARCHAR)")
        con.execute("""
            CREATE TEMP TABLE rejects AS
            SELECT line, any_value(csv_line) AS csv_line,
                   string_agg(DISTINCT error_type, '; ') AS error_type,
                   any_value(error_message) AS error_message
            FROM rej_err GROUP BY line
        """)
        parsed = con.execute("SELECT count(*) FROM raw").fetchone()[0]
        n_rejects = con.execute("SELECT count(*) FROM rejects").fetchone()[0]
        result.received_rows = parsed + n_rejects
        if result.received_rows != result.expected_rows:
            raise landing.FileLevelError(
                business_date, feed.name, str(path),
                _count_mismatch(con, result.expected_rows, result.received_rows),
            )
        try:
            _split_and_write(con, settings, feed, business_date, path, run_id, result, staged, quarantined,
                             header_lines, raw_record_sql)
        except duckdb.OutOfMemoryException as exc:
            raise _too_big(business_date, feed, path, con, exc)
    finally:
        con.close()


def _too_big(business_date: str, feed: Feed, path: Path, con, exc: Exception) -> landing.FileLevelError:
    return landing.FileLevelError(
        business_date, feed.name, str(path),
        f"cannot be processed within the ingest's memory limit ({memory_limit_text(con)}): "
        f"{str(exc).splitlines()[0]}",
    )


def _has_quoted_newlines(path: Path, header_lines: int, records: int) -> bool:
    """True when the file has more line breaks than records (a quoted value spans lines)."""
    breaks, last = 0, b""
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            breaks += chunk.count(b"\n")
            last = chunk[-1:]
    lines = breaks + (1 if last not in (b"", b"\n") else 0)
    return lines > header_lines + records


def _physical_line(con, logical_line_sql: str, column: str) -> str:
    """SQL for the physical line of the record at logical line `column`.

    DuckDB numbers records (its rejects' `line`, and our ordinals) as if each were one line; a
    quoted value with line breaks moves every later record down by as many lines. The records
    that hold breaks are few: their logical lines and break counts go into a small table.
    """
    breaks = "length({0}) - length(replace({0}, chr(10), ''))"
    con.execute(f"""
        CREATE TEMP TABLE line_breaks AS
        SELECT logical, n FROM (
            SELECT {logical_line_sql} AS logical, {breaks.format("concat_ws('', *COLUMNS(* EXCLUDE (_ord)))")} AS n
            FROM raw c
            UNION ALL
            SELECT line, {breaks.format("csv_line")} FROM rejects
        ) WHERE n > 0
    """)
    return f"({column} + coalesce((SELECT sum(b.n) FROM line_breaks b WHERE b.logical < {column}), 0))"


def _split_and_write(con, settings, feed, business_date, path, run_id, result, staged, quarantined,
                             header_lines, raw_record_sql) -> None:
    _split(con, settings, feed, business_date, feed.format, result)

    # Physical line of a parsed record: its ordinal, plus the header, plus rejected lines before it.
    con.execute(f"""
        CREATE TEMP TABLE reject_pos AS
        SELECT line - {header_lines} - row_number() OVER (ORDER BY line) AS parsed_before FROM rejects
    """)
    line_expr = "_ord" if feed.format == "parquet" else (
        f"_ord + {header_lines} + (SELECT count(*) FROM reject_pos WHERE parsed_before < c._ord)"
    )
    loaded_cols = ", ".join(f"{q('t_' + c.name)} AS {q(c.name)}" for c in feed.columns)
    _copy_atomic(con, f"SELECT {loaded_cols} FROM checked WHERE _rule IS NULL ORDER BY _ord", staged)
    line_out = "line"
    if feed.format == "csv" and _has_quoted_newlines(path, header_lines, result.received_rows):
        line_out = _physical_line(con, line_expr, "line")
    quarantine_sql = f"""
        SELECT CAST(getvariable('business_date') AS DATE) AS business_date, '{feed.name}' AS feed,
               {_literal(result.file)} AS file, CAST({line_out} AS BIGINT) AS line, rule, detail, raw_record, {_literal(run_id)} AS run_id
        FROM (
            SELECT {line_expr} AS line, _rule AS rule, _detail AS detail,
                   left({raw_record_sql}, {RAW_RECORD_MAX_CHARS}) AS raw_record
            FROM checked c WHERE _rule IS NOT NULL
            UNION ALL
            SELECT line, 'malformed_record', error_type || ': ' || coalesce(error_message, ''),
                   left(csv_line, {RAW_RECORD_MAX_CHARS})
            FROM rejects
        ) ORDER BY line
    """
    _copy_atomic(con, quarantine_sql, quarantined)
    result.quarantined_rows = con.execute(
        f"SELECT count(*) FROM read_parquet({sql_literal_path(quarantined)})"
    ).fetchone()[0]
    result.loaded_rows = con.execute(
        f"SELECT count(*) FROM read_parquet({sql_literal_path(staged)})"
    ).fetchone()[0]
    result.rules = dict(con.execute(
        f"SELECT rule, count(*) FROM read_parquet({sql_literal_path(quarantined)}) GROUP BY 1 ORDER BY 1"
    ).fetchall())
    result.conservation_ok = result.received_rows == result.loaded_rows + result.quarantined_rows
    result.status = "LOADED"
