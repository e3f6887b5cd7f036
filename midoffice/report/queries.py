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
    """The version the pack reads (the lake's latest publication it sees): its number, run,
    business date and when; and the version that last published the pack's own date."""
    if not p.has("publications", "version", "run_id", "business_date", "published_at", "dates"):
        return None
    row = p.one("SELECT version, run_id, CAST(business_date AS VARCHAR), strftime(published_at, '%Y-%m-%d %H:%M') "
                "FROM publications ORDER BY version DESC LIMIT 1")
    if not row:
        return None
    found = dict(zip(("version", "run_id", "business_date", "published_at"), row))
    found["date_version"] = p.one("SELECT max(version) FROM publications WHERE list_contains(dates, CAST(? AS DATE))",
                                  [p.d])[0]
    return found


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


def kpi_previous_row(p: Pack) -> dict | None:
    """kpi_daily's row of the latest business date before the date (None: none), for day on day."""
    cur = p.con.execute("SELECT * FROM kpi_daily WHERE business_date < ? ORDER BY business_date DESC LIMIT 1", [p.d])
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


LIMIT_CHANGE_COLUMNS = ("limit_id", "change_type", "scope_type", "scope_id", "metric", "old_limit_value",
                        "new_limit_value", "change_pct", "old_warning_pct", "new_warning_pct", "cured_by_limit_change")


def limit_change_rows(p: Pack) -> list[tuple]:
    """Today's limit changes (limit_changes): cured breaches first, then by limit."""
    return p.rows(f"SELECT {', '.join(LIMIT_CHANGE_COLUMNS)} FROM limit_changes WHERE as_of_date = ? "
                  "ORDER BY cured_by_limit_change DESC, limit_id", [p.d])


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
    """(segment, active clients, AUM) from each segment's total row, computed before small cells
    are suppressed (a version published before client_stats had totals: the cells summed)."""
    if p.has("client_stats", "suppressed"):
        return p.rows("SELECT segment, clients_active, aum_usd FROM client_stats WHERE as_of_date = ? "
                      "AND segment <> 'ALL' AND country = 'ALL' AND age_band = 'ALL' ORDER BY 1", [p.d])
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


# --- product control (DOMAIN §8) ----------------------------------------------------------------

PNL_BOOK_COLUMNS = ("book", "price_effect_usd", "fx_effect_usd", "carry_usd", "commission_usd", "fees_usd",
                    "total_pnl_usd", "reported_pnl_usd", "unexplained_usd", "pnl_break", "report_missing")


def pnl_book_rows(p: Pack) -> list[tuple]:
    """The desks' P&L and its explain, FIRM last."""
    return p.rows(f"SELECT {', '.join(PNL_BOOK_COLUMNS)} FROM pnl_book WHERE as_of_date = ? "
                  "ORDER BY book = 'FIRM', book", [p.d])


IPV_COLUMNS = ("instrument_id", "asset_class", "fo_price", "ipv_price", "diff_pct", "tolerance", "status",
               "stale_days", "adjustment_usd")


def ipv_summary(p: Pack) -> tuple:
    """(instruments, with an IPV price, breaches, stale, gross MV, gross MV covered, adjustment)."""
    return p.one(f"SELECT count(*), count(ipv_price), count(*) FILTER (WHERE status = 'BREACH'), "
                 f"count(*) FILTER (WHERE stale), {DECIMAL_SUM.format('gross_mv_usd')}, "
                 f"{DECIMAL_SUM.format('CASE WHEN ipv_price IS NOT NULL THEN gross_mv_usd ELSE 0 END')}, "
                 f"{DECIMAL_SUM.format('adjustment_usd')} FROM ipv_results WHERE as_of_date = ?", [p.d])


def ipv_exception_rows(p: Pack) -> list[tuple]:
    """Breaches and stale closes, the largest adjustment first."""
    return p.rows(f"SELECT {', '.join(IPV_COLUMNS)} FROM ipv_results WHERE as_of_date = ? "
                  "AND (status = 'BREACH' OR stale) ORDER BY abs(adjustment_usd) DESC, instrument_id", [p.d])


POSITION_BREAK_COLUMNS = ("client_key", "instrument_id", "custodian", "previous_quantity", "settled_change",
                          "expected_quantity", "actual_quantity", "difference")


def position_recon_summary(p: Pack) -> list[tuple]:
    return p.rows("SELECT status, count(*) FROM position_recon WHERE as_of_date = ? GROUP BY 1 ORDER BY 1", [p.d])


def position_break_rows(p: Pack) -> list[tuple]:
    return p.rows(f"SELECT {', '.join(POSITION_BREAK_COLUMNS)} FROM position_recon WHERE as_of_date = ? "
                  "AND status = 'BREAK' ORDER BY abs(difference) DESC, client_key, instrument_id", [p.d])


# --- trends: the history up to the date (issue 25: the pack at 8 am) ---------------------------

def recon_break_trend(p: Pack, history: int) -> dict[str, int]:
    """date -> open reconciliation breaks (trades), the last `history` dates up to the pack's."""
    return dict(p.rows("SELECT CAST(as_of_date AS VARCHAR), CAST(coalesce(sum(trades) FILTER (WHERE is_break), 0) AS BIGINT) "
                       "FROM ops_recon_summary WHERE as_of_date <= ? GROUP BY 1 ORDER BY 1 DESC LIMIT ?", [p.d, history]))


def worklist_open_trend(p: Pack, history: int) -> dict[str, int]:
    """date -> open worklist items, the last `history` dates up to the pack's."""
    return dict(p.rows("SELECT CAST(as_of_date AS VARCHAR), count(*) FROM bo_worklist WHERE as_of_date <= ? "
                       "GROUP BY 1 ORDER BY 1 DESC LIMIT ?", [p.d, history]))


def limit_status_trend(p: Pack, history: int) -> dict[str, tuple[int, int]]:
    """date -> (limits in BREACH, limits in WARNING), the last `history` dates up to the pack's."""
    return {d: (b, w) for d, b, w in p.rows(
        "SELECT CAST(as_of_date AS VARCHAR), count(*) FILTER (WHERE status = 'BREACH'), "
        "count(*) FILTER (WHERE status = 'WARNING') FROM risk_limit_utilisation WHERE as_of_date <= ? "
        "GROUP BY 1 ORDER BY 1 DESC LIMIT ?", [p.d, history])}


def cost_to_income_trend(p: Pack, history: int) -> dict[str, float | None]:
    """date -> FIRM's month-to-date cost-to-income, the last `history` dates up to the pack's."""
    return dict(p.rows("SELECT CAST(as_of_date AS VARCHAR), cost_to_income FROM cost_income WHERE as_of_date <= ? "
                       "AND period = 'MTD' AND cost_center = 'FIRM' ORDER BY as_of_date DESC LIMIT ?", [p.d, history]))


def target_trend(p: Pack, metric: str, scope_id: str, history: int) -> dict[str, float]:
    """date -> the target's milestone in force (kpi_targets), the last `history` dates up to the pack's."""
    return dict(p.rows("SELECT CAST(business_date AS VARCHAR), min(target_value) FROM kpi_targets "
                       "WHERE business_date <= ? AND metric = ? AND scope_id = ? GROUP BY 1 ORDER BY 1 DESC LIMIT ?",
                       [p.d, metric, scope_id, history]))
