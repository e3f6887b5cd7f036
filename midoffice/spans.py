"""Status spans: a mart whose rows mostly repeat from one date to the next, stored once per run.

The recon has a row for every trade of a 20-date window on every date, and a trade's state
(status, both sides, first_seen_date) changes on a handful of dates. Stored a row a date, a date
writes the whole window again (381,000 rows at 20,000 trades a day, of which 48,000 changed),
and the build and the publication each pay for it. Stored as spans, a trade has one row per run
of consecutive built dates over which its state stays the same: valid_from .. valid_to, NULL
when it still holds on the latest date. The model's view (warehouse/marts.sql) gives back one
row per trade and date.

The spans are kept in their one normal form: for each trade, non-overlapping and maximal (two
spans of the same state never meet). Writing a date's rows therefore gives the same spans
whatever the order in which dates were written, so the publication brings its copy up to date
by writing each changed date's rows in it the same way (replay), and a rerun or a backfill of a
past date is the same operation as the daily one.

Writing date D (its rows of the chunk's trades; P and N the built dates before and after it):
only the trades whose state on D is not the one their span already gives it change anything.
For those, D is cut out of the span covering it (its part before D ends at P; its part after D
starts at N), and the new state is joined to the span ending at P or starting at N when that has
the same state, else it gets its own span.
"""

from __future__ import annotations

from midoffice.duck import quote_ident as q
from midoffice.models import Model

FOREVER = "DATE '9999-12-31'"


def _same_state(model: Model, a: str, b: str) -> str:
    return " AND ".join(f"{a}.{q(c)} IS NOT DISTINCT FROM {b}.{q(c)}" for c in model.state_columns)


def neighbours(con, model: Model, schema: str, day: str) -> tuple[str | None, str | None]:
    """The built dates before and after the date (P and N), or None."""
    prev, nxt = con.execute(
        f"SELECT max(as_of_date) FILTER (WHERE as_of_date < $1), min(as_of_date) FILTER (WHERE as_of_date > $1) "
        f"FROM {schema}.{q(model.dates_table)}", [day]).fetchone()
    return (str(prev) if prev else None), (str(nxt) if nxt else None)


def add_date(con, model: Model, schema: str, day: str) -> None:
    dates = f"{schema}.{q(model.dates_table)}"
    con.execute(f"INSERT INTO {dates} SELECT CAST(? AS DATE) WHERE NOT EXISTS "
                f"(SELECT 1 FROM {dates} WHERE as_of_date = CAST(? AS DATE))", [day, day])


def write_date(con, model: Model, schema: str, day: str, rows: str, trades_filter: str = "true",
               params: list | None = None) -> dict[str, int]:
    """Make the spans in `schema` give exactly `rows` (a table or subquery with `params`: the state
    columns, run_id, loaded_at) on `day` for the trades that `trades_filter` (SQL on trade_id)
    selects. The date must be in the dates table (add_date). `rows` is read once, by the
    comparison, which keeps only the changed ones with their new state: most of a date's rows are
    the state their span already gives, and writing them all down first cost more than comparing
    them (bench/RESULTS.md, session 11). Returns what changed, for the build's log."""
    spans = f"{schema}.{q(model.spans_table)}"
    prev, nxt = neighbours(con, model, schema, day)
    d = f"DATE '{day}'"
    state = ", ".join(q(c) for c in model.state_columns)
    # the trades whose state on the date is not the one their span gives it (or none now)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE span_changes AS
        SELECT coalesce(c.trade_id, r.trade_id) AS trade_id, c.valid_from AS covering_from,
               c.valid_to AS covering_to, r.trade_id IS NOT NULL AS has_row, r.* EXCLUDE (trade_id)
        FROM (SELECT * FROM {spans} WHERE valid_from <= {d} AND coalesce(valid_to, {FOREVER}) >= {d}
                AND ({trades_filter})) c
        FULL JOIN {rows} r ON r.trade_id = c.trade_id
        WHERE c.trade_id IS NULL OR r.trade_id IS NULL OR NOT ({_same_state(model, 'c', 'r')})""", params or [])
    changed = con.execute("SELECT count(*) FROM span_changes").fetchone()[0]
    if changed == 0:
        return {"changed": 0, "new_spans": 0}
    covering = ("s.trade_id = x.trade_id AND s.valid_from = x.covering_from")
    # cut the date out of the covering spans: the part after it starts at N ...
    if nxt:
        con.execute(f"INSERT INTO {spans} SELECT s.* REPLACE (DATE '{nxt}' AS valid_from) FROM {spans} s "
                    f"JOIN span_changes x ON {covering} WHERE coalesce(s.valid_to, {FOREVER}) >= DATE '{nxt}'")
    # ... the part before it ends at P (none when the span began on the date)
    con.execute(f"DELETE FROM {spans} s USING span_changes x WHERE {covering} AND x.covering_from = {d}")
    if prev:
        con.execute(f"UPDATE {spans} s SET valid_to = DATE '{prev}' FROM span_changes x "
                    f"WHERE {covering} AND x.covering_from < {d}")
    # the new states, and the spans of the same state they join: ending at P, starting at N
    left = (f"LEFT JOIN {spans} l ON l.trade_id = r.trade_id AND l.valid_to = DATE '{prev}' "
            f"AND {_same_state(model, 'l', 'r')}") if prev else "LEFT JOIN (SELECT NULL AS valid_from) l ON false"
    right = (f"LEFT JOIN {spans} n ON n.trade_id = r.trade_id AND n.valid_from = DATE '{nxt}' "
             f"AND {_same_state(model, 'n', 'r')}") if nxt else "LEFT JOIN (SELECT NULL AS valid_from, NULL AS valid_to) n ON false"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE span_plan AS
        SELECT r.trade_id, l.valid_from AS left_from, n.valid_from AS right_from, n.valid_to AS right_to
        FROM span_changes r
        {left} {right}
        WHERE r.has_row""")
    own_end = f"DATE '{day}'" if nxt else "NULL"  # the latest date's states are open-ended
    con.execute(f"UPDATE {spans} s SET valid_to = CASE WHEN p.right_from IS NOT NULL THEN p.right_to ELSE {own_end} END "
                f"FROM span_plan p WHERE s.trade_id = p.trade_id AND s.valid_from = p.left_from")
    if nxt:
        con.execute(f"DELETE FROM {spans} s USING span_plan p WHERE s.trade_id = p.trade_id "
                    f"AND s.valid_from = p.right_from AND p.left_from IS NOT NULL")
        con.execute(f"UPDATE {spans} s SET valid_from = {d} FROM span_plan p WHERE s.trade_id = p.trade_id "
                    f"AND s.valid_from = p.right_from AND p.left_from IS NULL")
    new_spans = con.execute(
        f"INSERT INTO {spans} SELECT {state}, {d}, {own_end}, r.run_id, r.loaded_at FROM span_changes r "
        f"SEMI JOIN span_plan p ON p.trade_id = r.trade_id AND p.left_from IS NULL AND p.right_from IS NULL"
    ).fetchone()[0]
    return {"changed": changed, "new_spans": new_spans}


def write_only_date(con, model: Model, schema: str, day: str, rows: str, params: list,
                    trades_filter: str = "true") -> int:
    """write_date when the date is the only built date (a first build): no span can be joined,
    so the rows go straight in as spans, without being compared first."""
    spans = f"{schema}.{q(model.spans_table)}"
    state = ", ".join(q(c) for c in model.state_columns)
    con.execute(f"DELETE FROM {spans} WHERE {trades_filter}")
    return con.execute(f"INSERT INTO {spans} SELECT {state}, DATE '{day}', NULL, run_id, loaded_at FROM {rows}",
                       params).fetchone()[0]


def replay_date(con, model: Model, target: str, source: str, day: str) -> dict[str, int]:
    """Make the spans in `target` give on the date what those in `source` give: the publication
    bringing its copy up to date, its changed dates replayed oldest first. (Comparing only the
    trades whose spans change around the date in either schema was tried: finding them scans
    both spans tables, which is what the whole comparison costs; session 11.)"""
    add_date(con, model, target, day)
    return write_date(con, model, target, day, rows_on(model, source, day))


def rows_on(model: Model, schema: str, day: str) -> str:
    """The spans in `schema` that hold on the date, as rows for write_date (the publication's replay)."""
    state = ", ".join(q(c) for c in model.state_columns)
    return (f"(SELECT {state}, run_id, loaded_at FROM {schema}.{q(model.spans_table)} "
            f"WHERE valid_from <= DATE '{day}' AND coalesce(valid_to, {FOREVER}) >= DATE '{day}')")
