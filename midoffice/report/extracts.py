"""The extracts beside the pack: CSV and Parquet of every published mart for the date, with
their SHA-256 checksums in extracts/index.json.

Each file is written under a temporary name and renamed into place, so a killed report leaves
the previous extract or the new one, never a truncated file. In the CSV, a text value that a
spreadsheet would run as a formula (it starts with = + - @, a tab or a carriage return: a
sender's `=HYPERLINK(...)` or `+cmd|...`) gets a leading apostrophe, as spreadsheet-safe
exporters do; the Parquet file keeps every value as published.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

from midoffice import control
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
# What a spreadsheet reads as the start of a formula (OWASP's CSV injection list).
FORMULA_START = r"^[=+@\t\r-]"


def _spreadsheet_safe(con, parquet) -> str:
    """The select list of a CSV extract: text columns that could start a formula get a leading
    apostrophe (displayed as text, not run); every other column as it is."""
    described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({sql_literal_path(parquet)})").fetchall()
    return ", ".join(
        f"CASE WHEN regexp_matches({q(name)}, '{FORMULA_START}') THEN chr(39) || {q(name)} ELSE {q(name)} END "
        f"AS {q(name)}" if kind == "VARCHAR" else q(name)
        for name, kind, *_ in described)


def write_extracts(con, settings: Settings, d: str, columns: dict[str, set[str]]) -> tuple[list[dict], list[str]]:
    """CSV and Parquet of every published mart's rows for the date, plus extracts/index.json."""
    out_dir = settings.reports / d / "extracts"
    out_dir.mkdir(parents=True, exist_ok=True)
    index, absent, digests = [], [], {}
    # The checksums are taken on a thread while DuckDB writes the next mart's files: hashlib lets
    # go of the GIL, and at 1M trades a day the extracts hold 500 MB (1.5 s of hashing in line).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="extract-sha256") as hasher:
        for model in published_models():
            if model.name not in columns:
                absent.append(model.name)
                continue
            where = f"WHERE {q(model.partition)} = CAST(? AS DATE)"
            order = ", ".join(q(c) for c in model.grain)
            select = f"SELECT * FROM {q(model.name)} {where} ORDER BY {order}"
            parquet, csv = out_dir / f"{model.name}.parquet", out_dir / f"{model.name}.csv"
            parquet_tmp, csv_tmp = (f.with_name(f"{TEMP_PREFIX}{f.name}") for f in (parquet, csv))
            rows = con.execute(f"COPY ({select}) TO {sql_literal_path(parquet_tmp)} "
                               "(FORMAT parquet, COMPRESSION zstd)", [d]).fetchone()[0]
            # The CSV from the sorted Parquet file, read in file order: one filter and sort, not two.
            con.execute(f"COPY (SELECT {_spreadsheet_safe(con, parquet_tmp)} FROM read_parquet("
                        f"{sql_literal_path(parquet_tmp)})) TO {sql_literal_path(csv_tmp)} (FORMAT csv, HEADER true)")
            os.replace(parquet_tmp, parquet)
            os.replace(csv_tmp, csv)
            digests[model.name] = (hasher.submit(_sha256, csv), hasher.submit(_sha256, parquet))
            index.append({
                "mart": model.name, "rows": rows, "grain": list(model.grain), "partition": model.partition,
                "columns": list(model.columns), "csv": csv.name, "parquet": parquet.name,
                "description": model.description.split(". ")[0].rstrip(".") + ".",
            })
    for entry in index:
        csv_digest, parquet_digest = digests[entry["mart"]]
        entry["sha256_csv"], entry["sha256_parquet"] = csv_digest.result(), parquet_digest.result()
    control.write_json_atomic(out_dir / "index.json", {"business_date": d, "extracts": index,
                                                       "not_published": absent})
    return index, absent
