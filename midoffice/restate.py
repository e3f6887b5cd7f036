"""Restatements (DOMAIN §10.2): publishing again a business date that an earlier version published.

A rerun of a published date needs a reason. The reason is a person's word, so it is kept with
people's actions (midoffice.people.store, kind `restatement_reasons`), not in the rebuildable
warehouse: `midoffice run ... --reason TEXT` records it for each published date of the run before
the run starts (and refuses to start without one), and on a scheduler `midoffice restate --date D
--reason TEXT --by NAME` records it before the rerun is triggered. The publication that restates
a date looks for a reason recorded for that date since its last publication, and refuses without.

What changed is recorded by the same publication, in the same snapshot, in the lake's
`restatements` table (grain version × as_of_date × mart): the rows the mart had for the date in
the version before (as published) and in the new one (as built), the rows added, removed and
changed (matched on the mart's grain, lineage columns aside, numbers equal within a relative
1e-9), and the date's key figures before and after (kpi_daily: firm gross exposure, firm VaR,
open breaks; P&L when kpi_daily has it).
"""

from __future__ import annotations

import datetime as dt
import os

from midoffice import lake
from midoffice.config import Settings
from midoffice.duck import insert_rows, quote_ident as q
from midoffice.models import Model
from midoffice.people import store

L = lake.LAKE
KIND = store.RESTATEMENT_REASONS.name

# (column in restatements, column of kpi_daily): the date's key figures before and after. P&L is
# there when kpi_daily has one of these columns (product control's marts add it).
KEY_FIGURES = (("firm_exposure", "firm_gross_exposure_usd"), ("firm_var", "firm_var_99_usd"),
               ("open_breaks", "open_breaks"))
PNL_COLUMNS = ("firm_pnl_usd", "pnl_usd", "firm_daily_pnl_usd")

RESTATEMENTS_DDL = f"""CREATE TABLE IF NOT EXISTS {L}.restatements (
    version BIGINT, as_of_date DATE, mart VARCHAR, previous_version BIGINT, rows_before BIGINT,
    rows_after BIGINT, rows_added BIGINT, rows_removed BIGINT, rows_changed BIGINT,
    firm_exposure_before DOUBLE, firm_exposure_after DOUBLE, firm_var_before DOUBLE, firm_var_after DOUBLE,
    open_breaks_before DOUBLE, open_breaks_after DOUBLE, pnl_before DOUBLE, pnl_after DOUBLE,
    reason VARCHAR)"""


class RestatementRefused(RuntimeError):
    """A published date would be published again without a reason."""


def default_person() -> str:
    return os.environ.get("MIDOFFICE_USER") or os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown"


def record_reason(settings: Settings, dates: list[str], reason: str, by: str | None = None) -> list[int]:
    """Record why these published dates are run again (before the run)."""
    if not (reason or "").strip():
        raise RestatementRefused("a restatement needs a reason (--reason TEXT)")
    return [store.append(settings, KIND, {"effective_date": d, "reason": reason.strip(), "by": by or default_person()})
            for d in dates]


def refusal(day: str, version: int) -> str:
    return (f"{day} was published in version {version}: running it again is a restatement and needs a reason "
            f"(midoffice run ... --reason TEXT; on a scheduler, midoffice restate --date {day} --reason TEXT "
            "--by NAME before the rerun)")


def reason_for(settings: Settings, con, restated: list[str]) -> str:
    """The reason(s) recorded for the restated dates since each was last published (the lake
    attached on `con`, in the publication's transaction); refuses when a date has none."""
    last = {str(d): (v, at) for d, v, at in con.execute(
        f"SELECT d, arg_max(version, version), arg_max(published_at, version) "
        f"FROM (SELECT version, published_at, unnest(dates) AS d FROM {L}.publications) GROUP BY d").fetchall()}
    reasons: list[str] = []
    for day in restated:
        version, published_at = last[day]
        given = [r for r in store.records(settings, KIND)
                 if str(r["effective_date"]) == day and r["at"] >= published_at.replace(microsecond=0)]
        if not given:
            raise RestatementRefused(refusal(day, version))
        text = f"{given[-1]['reason']} ({given[-1]['by']})"
        if text not in reasons:
            reasons.append(text)
    return "; ".join(reasons)


# --- the differences -------------------------------------------------------------------------

def _rows(model: Model, schema: str, day: str) -> str:
    """The mart's rows of the date in `schema` (a spans mart: the spans holding on the date)."""
    if model.spans:
        from midoffice.spans import rows_on
        return rows_on(model, schema, day)
    return f"(SELECT * FROM {schema}.{q(model.name)} WHERE {q(model.partition)} = DATE '{day}')"


def _compared_columns(con, model: Model, day: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(key columns, [(other column, type)]) of the rows compared: lineage left out."""
    described = con.execute(f"DESCRIBE SELECT * FROM {_rows(model, 'main', day)}").fetchall()
    lineage = set(model.lineage) | {"run_id", "loaded_at"}
    keys = ["trade_id"] if model.spans else [k for k in model.grain]
    others = [(c, t) for c, t, *_ in described if c not in lineage and c not in keys]
    return keys, others


def _differs(column: str, data_type: str) -> str:
    a, b = f"b.{q(column)}", f"a.{q(column)}"
    if data_type in ("DOUBLE", "FLOAT", "REAL") or data_type.startswith("DECIMAL"):
        # the same build twice may sum in another order: equal within a relative 1e-9
        return (f"(({a} IS NULL) <> ({b} IS NULL) OR abs({a} - {b}) > 1e-9 * greatest(1, abs({a}), abs({b})) "
                f"OR (isnan({a}) <> isnan({b})))") if not data_type.startswith("DECIMAL") else \
            f"({a} IS DISTINCT FROM {b})"
    return f"({a} IS DISTINCT FROM {b})"


def compare(con, model: Model, day: str, before_schema: str, after_schema: str = "main") -> dict[str, int]:
    """Rows before, after, added, removed and changed for the mart on the date (matched on grain)."""
    keys, others = _compared_columns(con, model, day)
    on = " AND ".join(f"b.{q(k)} IS NOT DISTINCT FROM a.{q(k)}" for k in keys)
    changed = " OR ".join(_differs(c, t) for c, t in others) or "false"
    got = con.execute(f"""
        SELECT count(*) FILTER (WHERE b._here),
               count(*) FILTER (WHERE a._here),
               count(*) FILTER (WHERE a._here AND b._here IS NULL),
               count(*) FILTER (WHERE b._here AND a._here IS NULL),
               count(*) FILTER (WHERE a._here AND b._here AND ({changed}))
        FROM (SELECT *, true AS _here FROM {_rows(model, before_schema, day)}) b
        FULL JOIN (SELECT *, true AS _here FROM {_rows(model, after_schema, day)}) a ON {on}""").fetchone()
    return dict(zip(("rows_before", "rows_after", "rows_added", "rows_removed", "rows_changed"), got))


def key_figures(con, schema: str, day: str) -> dict[str, float | None]:
    """The date's key figures in `schema` (kpi_daily), None where absent."""
    columns = {c for (c,) in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = 'main' "
        "AND table_name = 'kpi_daily'", [con.execute("SELECT current_database()").fetchone()[0]
                                         if schema == "main" else schema]).fetchall()}
    wanted = list(KEY_FIGURES) + [("pnl", c) for c in PNL_COLUMNS if c in columns][:1]
    figures = {name: None for name, _ in KEY_FIGURES + (("pnl", None),)}
    usable = [(name, column) for name, column in wanted if column in columns]
    if not usable:
        return figures
    row = con.execute(f"SELECT {', '.join(f'CAST({q(c)} AS DOUBLE)' for _, c in usable)} FROM {schema}.kpi_daily "
                      f"WHERE business_date = DATE '{day}'").fetchone()
    if row:
        figures.update({name: value for (name, _), value in zip(usable, row)})
    return figures


def record_differences(con, models: list[Model], restated: list[str], version: int, reason: str) -> int:
    """Write the restatements rows of this publication (in its transaction, before the marts are
    replaced: the lake still shows the version before). Returns the rows written."""
    con.execute(RESTATEMENTS_DDL)
    published = {t for (t,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main'", [L]).fetchall()}
    previous = {str(d): v for d, v in con.execute(
        f"SELECT d, max(version) FROM (SELECT version, unnest(dates) AS d FROM {L}.publications) GROUP BY d").fetchall()}
    rows = []
    for day in restated:
        before, after = key_figures(con, L, day), key_figures(con, "main", day)
        for model in models:
            if not set(model.stored_tables) <= published:
                continue  # a mart the version before did not have: nothing to compare with
            counts = compare(con, model, day, L)
            rows.append([version, day, model.name, previous.get(day), *counts.values(),
                         before["firm_exposure"], after["firm_exposure"], before["firm_var"], after["firm_var"],
                         before["open_breaks"], after["open_breaks"], before["pnl"], after["pnl"], reason])
    if rows:
        insert_rows(con, f"{L}.restatements", rows)
    return len(rows)


def restatements_of(con, day: str | dt.date) -> list[dict]:
    """The restatements of a date in the attached lake (the version it reads), newest first."""
    if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name = 'restatements'",
                       [L]).fetchone()[0]:
        return []
    cur = con.execute(f"SELECT * FROM {L}.restatements WHERE as_of_date = CAST(? AS DATE) ORDER BY version DESC, mart",
                      [str(day)])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]
