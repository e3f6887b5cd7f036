"""The extracts beside the pack: for every published mart, where its rows of the date are in the
versioned lake, and a CSV of them for people who open it in a spreadsheet; extracts/index.json
lists them with the CSV's SHA-256 checksum.

The lake already holds the marts in Parquet, and every published version stays readable as it
was: an extract does not copy them again (at 10M trades a day the Parquet copies were half of
5 GB of extracts). Each entry names the version the pack was made from and the query that reads
the date's rows (`lake_sql`, on the lake attached at that version: `midoffice versions --attach
N`, or `midoffice query --as-of-version N`). The CSV is
written where people need it: a mart whose rows for the date fit in a spreadsheet (at most
1,048,575 rows, a spreadsheet's sheet less its header); a larger one (the recon, holdings at
volume) is read from the lake.

Each CSV is written under a temporary name and renamed into place, so a killed report leaves
the previous extract or the new one, never a truncated file. In the CSV, a text value that a
spreadsheet would run as a formula (it starts with = + - @, a tab or a carriage return: a
sender's `=HYPERLINK(...)` or `+cmd|...`) gets a leading apostrophe, as spreadsheet-safe
exporters do; the lake keeps every value as published.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

from midoffice import control, spans
from midoffice.config import Settings
from midoffice.duck import quote_ident as q, sql_literal_path
from midoffice.models import published_models


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


TEMP_PREFIX = ".tmp-"
# What a spreadsheet reads as the start of a formula (OWASP's CSV injection list): = + - @, tab, CR.
FORMULA_START = "'=', '+', '-', '@', chr(9), chr(13)"


SPREADSHEET_ROWS = 1_048_575  # a spreadsheet's sheet (1,048,576 rows) less the header


def _spreadsheet_safe(columns: list[tuple[str, str]]) -> str:
    """The select list of a CSV extract: text columns that could start a formula get a leading
    apostrophe (displayed as text, not run); every other column as it is. The first character is
    compared, not a regular expression: at a million rows a regex per text value costs seconds."""
    return ", ".join(
        f"CASE WHEN left({q(name)}, 1) IN ({FORMULA_START}) THEN chr(39) || {q(name)} ELSE {q(name)} END "
        f"AS {q(name)}" if kind == "VARCHAR" else q(name)
        for name, kind in columns)


def _rows_of_date(con, models: list, d: str) -> dict[str, int]:
    """Each mart's rows of the date, counted in one query (each query on the lake reads its
    catalog first: one per mart cost 0.9 s a pack on small dates). A spans mart is a view that
    computes each row's state from its spans: its rows are counted on the spans that hold on the
    date, and the view is computed once, by the COPY (at 1M trades, 0.6 s less than computing it
    into a table first)."""
    if not models:
        return {}
    counts = " UNION ALL ".join(
        f"SELECT {i} AS mart, count(*) AS n FROM "
        + (f"{spans.rows_on(m, 'main', d)} AS held" if m.spans else f"{q(m.name)} WHERE {q(m.partition)} = $d")
        for i, m in enumerate(models))
    found = dict(con.execute(counts, {"d": dt.date.fromisoformat(d)}).fetchall())
    return {m.name: found[i] for i, m in enumerate(models)}


def write_extracts(con, settings: Settings, d: str, published: dict[str, list[tuple[str, str]]],
                   version: int | None) -> tuple[list[dict], list[str]]:
    """For every published mart: its rows of the date in the lake at `version` (the version the
    pack reads), and a CSV of them when they fit a spreadsheet; plus extracts/index.json."""
    out_dir = settings.reports / d / "extracts"
    out_dir.mkdir(parents=True, exist_ok=True)
    index, absent, digests = [], [], {}
    # The checksums are taken on a thread while DuckDB writes the next mart's CSV: hashlib lets
    # go of the GIL.
    models = published_models()
    rows_of = _rows_of_date(con, [m for m in models if m.name in published], d)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="extract-sha256") as hasher:
        for model in models:
            if model.name not in published:
                absent.append(model.name)
                continue
            where = f"WHERE {q(model.partition)} = CAST(? AS DATE)"
            order = ", ".join(q(c) for c in model.grain)
            select = f"SELECT * FROM {q(model.name)} {where} ORDER BY {order}"
            rows = rows_of[model.name]
            csv = out_dir / f"{model.name}.csv"
            entry = {
                "mart": model.name, "rows": rows, "grain": list(model.grain), "partition": model.partition,
                "columns": list(model.columns), "version": version,
                # run on the lake attached at `version` (midoffice versions --attach N, or
                # midoffice query --as-of-version N): views such as ops_trade_recon read it too
                "lake_sql": f"SELECT * FROM {q(model.name)} WHERE {q(model.partition)} = DATE '{d}' ORDER BY {order}",
                "description": model.description.split(". ")[0].rstrip(".") + ".",
            }
            if rows <= SPREADSHEET_ROWS:
                csv_tmp = csv.with_name(f"{TEMP_PREFIX}{csv.name}")
                con.execute(f"COPY (SELECT {_spreadsheet_safe(published[model.name])} FROM ({select})) "
                            f"TO {sql_literal_path(csv_tmp)} (FORMAT csv, HEADER true)", [d])
                os.replace(csv_tmp, csv)
                digests[model.name] = hasher.submit(_sha256, csv)
                entry["csv"] = csv.name
            else:
                csv.unlink(missing_ok=True)  # an earlier, smaller extract of the date is not this version's
                entry["csv"] = None
                entry["csv_omitted"] = (f"{rows:,} rows: more than a spreadsheet opens; read them from the lake "
                                        "(lake_sql)")
            index.append(entry)
    for entry in index:
        if entry["mart"] in digests:
            entry["sha256_csv"] = digests[entry["mart"]].result()
    control.write_json_atomic(out_dir / "index.json", {"business_date": d, "version": version,
                                                       "attach": f"midoffice versions --attach {version}" if version else None,
                                                       "extracts": index, "not_published": absent})
    return index, absent
