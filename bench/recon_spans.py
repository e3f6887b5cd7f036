"""How many rows ops_trade_recon would hold stored as status spans instead of one row a date.

A span is a trade's unbroken run of business dates with the same state: every column but the
ones that change by themselves each day (notional_usd at the date's FX, age_bd, age_bucket) and
the lineage. A new span starts when any state column changes or the trade was not in the
window on the business date before.

    .venv/bin/python bench/recon_spans.py /work/benchout/hist20000x60/home/warehouse/marts.duckdb
"""

from __future__ import annotations

import argparse
import json

import duckdb

DAILY = {"as_of_date", "trade_id", "notional_usd", "age_bd", "age_bucket", "run_id", "loaded_at"}

SPANS_SQL = """
WITH state AS (
    SELECT as_of_date, trade_id, hash({state}) AS h,
           5 * (date_diff('day', DATE '1970-01-05', as_of_date) // 7)
               + least(date_diff('day', DATE '1970-01-05', as_of_date) % 7, 4) AS bd
    FROM ops_trade_recon
),

runs AS (
    SELECT as_of_date,
           lag(h) OVER by_trade IS DISTINCT FROM h OR lag(bd) OVER by_trade IS DISTINCT FROM bd - 1 AS starts_span
    FROM state
    WINDOW by_trade AS (PARTITION BY trade_id ORDER BY as_of_date)
),

per_date AS (
    SELECT as_of_date, count(*) AS rows, count(*) FILTER (WHERE starts_span) AS new_spans
    FROM runs
    GROUP BY as_of_date
),

final AS (
    SELECT sum(rows) AS rows, sum(new_spans) AS spans, count(*) AS dates,
           max_by(rows, as_of_date) AS last_date_rows, max_by(new_spans, as_of_date) AS last_date_new_spans
    FROM per_date
)

SELECT * FROM final
"""


def recon_spans(published_db: str) -> dict:
    con = duckdb.connect(published_db, read_only=True)
    try:
        con.execute("SET enable_progress_bar = false")
        columns = [r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'ops_trade_recon' ORDER BY column_index"
        ).fetchall()]
        state = ", ".join(f'"{c}"' for c in columns if c not in DAILY)
        row = con.execute(SPANS_SQL.format(state=state)).fetchone()
    finally:
        con.close()
    rows, spans, dates, last_rows, last_spans = row
    return {"rows": rows, "spans": spans, "dates": dates, "rows_per_span": round(rows / spans, 2),
            "last_date_rows": last_rows, "last_date_new_spans": last_spans}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("published_db")
    print(json.dumps(recon_spans(p.parse_args().published_db)))
