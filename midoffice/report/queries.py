"""The published warehouse as the pack reads it: which marts and columns it holds, and the
queries of each section (one function each, the rows as DuckDB returns them).

Sums of DOUBLE columns are DECIMAL, as in the marts: a mart's rows may be scanned by several
threads, and a DOUBLE sum's last bits depend on the order in which they combine, while the
pack for a date must be the same bytes each time it is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from midoffice.duck import quote_ident as q

DECIMAL_SUM = "CAST(sum(CAST({} AS DECIMAL(38, 12))) AS DOUBLE)"


@dataclass
class Pack:
    con: object
    d: str
    columns: dict[str, set[str]]                      # published table -> its columns
    skipped: dict[str, str] = field(default_factory=dict)  # mart -> why the build kept it for d
    quarantine_threshold: float = 0.01                       # the gate's share (Settings)
    errors: list[str] = field(default_factory=list)

    def has(self, mart: str, *cols: str) -> bool:
        return mart in self.columns and set(cols) <= self.columns[mart]

    def missing(self, mart: str, *cols: str) -> str | None:
        """Why a section cannot use `mart`, or None when it can."""
        if mart not in self.columns:
            return f"{mart} is not in the published warehouse"
        lacking = [c for c in cols if c not in self.columns[mart]]
        if lacking:
            return f"{mart} has no column {', '.join(lacking)}"
        return None

    def rows(self, sql: str, params: Sequence = ()) -> list[tuple]:
        return self.con.execute(sql, list(params)).fetchall()

    def one(self, sql: str, params: Sequence = ()):
        return self.con.execute(sql, list(params)).fetchone()

    def has_rows(self, mart: str, partition: str) -> bool:
        return self.one(f"SELECT count(*) FROM {q(mart)} WHERE {q(partition)} = ?", [self.d])[0] > 0

    def why_empty(self, mart: str) -> str:
        reason = self.skipped.get(mart)
        return f"{mart} has no rows for {self.d}" + (f" ({reason})" if reason else "")


# --- the date's context ------------------------------------------------------------------------

def publication(p: Pack) -> dict | None:
    """The publication the pack reads: run, business date, when, and its generation if recorded."""
    if not p.has("publication", "run_id", "business_date", "published_at"):
        return None
    generation = "generation" if p.has("publication", "generation") else "NULL"
    row = p.one("SELECT run_id, CAST(business_date AS VARCHAR), strftime(published_at, '%Y-%m-%d %H:%M'), "
                f"{generation} FROM publication")
    return dict(zip(("run_id", "business_date", "published_at", "generation"), row)) if row else None


def skipped_marts(p: Pack) -> dict[str, str]:
    if not p.has("build_log", "mart", "status", "reason"):
        return {}
    return dict(p.rows("SELECT mart, reason FROM build_log WHERE business_date = ? AND status = 'SKIPPED'", [p.d]))


def published_range(p: Pack) -> tuple:
    return p.one("SELECT min(business_date), max(business_date) FROM dq_feed_health")


def targets(p: Pack) -> dict[tuple[str, str], tuple]:
    """(metric, scope_id) -> (actual, target_value, met, direction, target_id) for the date."""
    if p.missing("kpi_targets", "metric", "scope_id", "actual", "target_value", "met", "direction", "target_id"):
        return {}
    return {(m, s): (a, t, met, dr, tid) for m, s, a, t, met, dr, tid in p.rows(
        "SELECT metric, scope_id, actual, target_value, met, direction, target_id FROM kpi_targets "
        "WHERE business_date = ?", [p.d])}


def kpi_row(p: Pack) -> dict | None:
    """The date's row of kpi_daily, by column (None: no row)."""
    cur = p.con.execute("SELECT * FROM kpi_daily WHERE business_date = ?", [p.d])
    row = cur.fetchone()
    return None if row is None else dict(zip([c[0] for c in cur.description], row))


# --- sections ----------------------------------------------------------------------------------

def alert_rows(p: Pack) -> list[tuple]:
    return p.rows("SELECT severity, alert_type, subject_id, message FROM alerts WHERE business_date = ? "
                  "ORDER BY severity = 'CRITICAL' DESC, alert_type, subject_id", [p.d])


def target_rows(p: Pack) -> list[tuple]:
    return p.rows("SELECT target_id, metric, scope_id, actual, target_value, met FROM kpi_targets "
                  "WHERE business_date = ? ORDER BY met NULLS FIRST, metric, scope_id", [p.d])


def concentration_rows(p: Pack, dimension: str) -> list[tuple]:
    return p.rows("SELECT member, gross_usd, net_usd, hhi, effective_n FROM risk_concentration "
                  "WHERE as_of_date = ? AND dimension = ? ORDER BY gross_usd DESC, member", [p.d, dimension])


def book_exposure_rows(p: Pack, key: str) -> list[tuple]:
    """Gross and net BOOK exposure by `key`, when risk_concentration is not published."""
    return p.rows(f"SELECT coalesce({q(key)}, 'UNKNOWN'), {DECIMAL_SUM.format('abs(market_value_usd)')}, "
                  f"{DECIMAL_SUM.format('market_value_usd')} FROM risk_exposure "
                  "WHERE as_of_date = ? AND holder_type = 'BOOK' GROUP BY 1 ORDER BY 2 DESC, 1", [p.d])


LIMIT_COLUMNS = ("limit_id", "scope_type", "scope_id", "metric", "exposure", "limit_value", "utilisation", "status",
                 "warning_pct", "consecutive_breach_days")


def limit_rows(p: Pack) -> list[tuple]:
    """Applicable limits, breaches first, then warnings, then the most used."""
    return p.rows(
        f"SELECT {', '.join(LIMIT_COLUMNS)} FROM risk_limit_utilisation WHERE as_of_date = ? "
        "AND status <> 'NOT_APPLICABLE' ORDER BY CASE status WHEN 'BREACH' THEN 0 WHEN 'WARNING' THEN 1 ELSE 2 END, "
        "utilisation DESC NULLS LAST, limit_id", [p.d])


def var_rows(p: Pack, history: int) -> list[tuple]:
    """(date, var_99, var_95, es_975) of FIRM over the last `history` dates, oldest first."""
    rows = p.rows("SELECT CAST(as_of_date AS VARCHAR), var_99, var_95, es_975 FROM risk_var "
                  "WHERE portfolio = 'FIRM' AND as_of_date <= ? ORDER BY as_of_date DESC LIMIT ?", [p.d, history])
    return rows[::-1]


def backtest_rows(p: Pack, since: str) -> dict[str, tuple]:
    """date -> (hypothetical P&L, exception, var_99, exceptions_250, zone) of FIRM."""
    return {d: rest for d, *rest in p.rows(
        "SELECT CAST(business_date AS VARCHAR), hypothetical_pnl_usd, exception, var_99, exceptions_250, zone "
        "FROM risk_var_backtest WHERE portfolio = 'FIRM' AND business_date <= ? AND business_date >= ?",
        [p.d, since])}


def break_rows(p: Pack) -> list[tuple]:
    """(age bucket, status, trades, notional) of the open breaks."""
    return p.rows(f"SELECT age_bucket, status, sum(trades), {DECIMAL_SUM.format('notional_usd')} FROM ops_recon_summary "
                  "WHERE as_of_date = ? AND is_break GROUP BY ALL ORDER BY 1, 2", [p.d])  # summed in this order


def recon_book_rows(p: Pack) -> list[tuple]:
    return p.rows("SELECT book, any_value(match_rate), any_value(book_trades), "
                  "sum(trades) FILTER (WHERE is_break) FROM ops_recon_summary WHERE as_of_date = ? "
                  "GROUP BY book ORDER BY 2, 1", [p.d])


def settlement_by_date(p: Pack) -> list[tuple]:
    return p.rows("SELECT CAST(intended_settle_date AS VARCHAR), sum(settled_on_time) / nullif(sum(due), 0), "
                  "CAST(sum(CAST(settled_on_time_amount_usd AS DECIMAL(38, 12))) / "
                  "nullif(sum(CAST(due_amount_usd AS DECIMAL(38, 12))), 0) AS DOUBLE), sum(due), sum(failed) "
                  "FROM ops_settlement_efficiency WHERE as_of_date = ? GROUP BY 1 ORDER BY 1", [p.d])


def settlement_by_custodian(p: Pack) -> list[tuple]:
    return p.rows("SELECT custodian, sum(settled_on_time) / nullif(sum(due), 0), sum(due), sum(failed), "
                  "sum(settled_late) FROM ops_settlement_efficiency WHERE as_of_date = ? GROUP BY 1 ORDER BY 2, 1",
                  [p.d])


def segment_rows(p: Pack) -> list[tuple]:
    return p.rows(f"SELECT segment, sum(clients_active), {DECIMAL_SUM.format('aum_usd')} FROM client_stats "
                  "WHERE as_of_date = ? GROUP BY 1 ORDER BY 1", [p.d])


def risk_profile_rows(p: Pack) -> list[tuple]:
    return p.rows("SELECT risk_profile, median(hhi), any_value(hhi_max), count(*), "
                  "count(*) FILTER (WHERE risk_profile_breach), median(effective_n) FROM client_portfolio "
                  "WHERE as_of_date = ? GROUP BY 1 ORDER BY 1", [p.d])


def cost_income_rows(p: Pack) -> list[tuple]:
    return p.rows("SELECT cost_center, revenue_usd, expense_usd, cost_to_income FROM cost_income "
                  "WHERE as_of_date = ? AND period = 'MTD' ORDER BY cost_center = 'FIRM' DESC, "
                  "cost_to_income DESC NULLS LAST, cost_center", [p.d])


FEED_HEALTH_COLUMNS = ("feed", "gate", "expected_rows", "received_rows", "loaded_rows", "quarantined_rows",
                       "quarantined_share", "freshness", "reason")


def feed_health_rows(p: Pack) -> list[tuple]:
    return p.rows(f"SELECT {', '.join(FEED_HEALTH_COLUMNS)} FROM dq_feed_health WHERE business_date = ? "
                  "ORDER BY gate = 'PASS', feed", [p.d])


def quarantine_rule_rows(p: Pack) -> list[tuple]:
    return p.rows("SELECT feed, rule, count(*) FROM dq_quarantine WHERE business_date = ? "
                  "GROUP BY ALL ORDER BY 3 DESC, 1, 2", [p.d])


def failed_stage_rows(p: Pack) -> list[tuple]:
    return p.rows("SELECT stage, status, message FROM pipeline_runs WHERE business_date = ? "
                  "AND status <> 'SUCCESS' ORDER BY stage", [p.d])
