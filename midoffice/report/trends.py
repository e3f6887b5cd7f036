"""The pack's trends (issue 25: the pack at 8 am): open breaks, limits in breach and
cost-to-income over the published history up to the pack's date, at most TREND_DATES business
dates (as many as exist).

Each point is read from the mart that publishes it for its date, so every point traces back to
that mart, column and date (data-mart, data-column, data-member = the date, data-value).
"""

from __future__ import annotations

from midoffice.report import queries as Q
from midoffice.report.charts import MEASURE, STATUS, Line, time_chart
from midoffice.report.formats import fmt_count, fmt_pct, plural
from midoffice.report.queries import Pack
from midoffice.report.view import Figure, Grid, NotAvailable, Para, Section, Source, Value

TREND_DATES = 60  # business dates: long enough to see a drift, short enough to read day by day


def _count(v) -> str:
    """A count, and the fractional gridlines of a small one (0.5) as they are."""
    return fmt_count(v) if float(v).is_integer() else f"{v:g}"


def _trend_dates(*series: dict) -> list[str]:
    """The dates any series has, oldest first, the latest TREND_DATES of them."""
    return sorted({d for s in series for d in s})[-TREND_DATES:]


def _breaks_figure(p: Pack) -> tuple[Figure | None, dict[str, int]]:
    recon = {} if p.missing("ops_recon_summary", "trades", "is_break") else Q.recon_break_trend(p, TREND_DATES)
    items = {} if p.missing("bo_worklist", "item_id") else Q.worklist_open_trend(p, TREND_DATES)
    if not recon and not items:
        return None, recon
    lines = [Line("trades", "open reconciliation breaks (trades)", MEASURE["primary"], recon, "ops_recon_summary"),
             Line("item_id", "open worklist items", MEASURE["slate"], items, "bo_worklist", dashed=True)]
    chart = time_chart(_trend_dates(recon, items), [ln for ln in lines if ln.points], fmt=_count)
    refs = ["ops_recon_summary.trades"] * bool(recon) + ["bo_worklist.item_id"] * bool(items)
    return Figure([chart], Source(refs, "breaks: trades with is_break; items: the open rows of the date"),
                  "Open breaks and worklist items"), recon


def _limits_figure(p: Pack) -> tuple[Figure | None, dict[str, tuple[int, int]]]:
    if p.missing("risk_limit_utilisation", "status"):
        return None, {}
    status = Q.limit_status_trend(p, TREND_DATES)
    if not status:
        return None, status
    lines = [Line("status", "limits in breach", STATUS["BREACH"], {d: b for d, (b, _) in status.items()},
                  "risk_limit_utilisation"),
             Line("status", "limits in warning", STATUS["WARNING"], {d: w for d, (_, w) in status.items()},
                  "risk_limit_utilisation", dashed=True)]
    chart = time_chart(_trend_dates(status), lines, fmt=_count)
    return Figure([chart], Source(["risk_limit_utilisation.status"], "limits counted by status on each date"),
                  "Limits in breach and in warning"), status


def _cost_figure(p: Pack) -> tuple[Figure | None, dict[str, float | None]]:
    if p.missing("cost_income", "period", "cost_center", "cost_to_income"):
        return None, {}
    ratio = Q.cost_to_income_trend(p, TREND_DATES)
    if not ratio:
        return None, ratio
    target = {} if p.missing("kpi_targets", "metric", "scope_id", "target_value") else \
        Q.target_trend(p, "COST_TO_INCOME_MAX", "ALL", TREND_DATES)
    lines = [Line("cost_to_income", "cost-to-income MTD (FIRM)", MEASURE["primary"], ratio, "cost_income")]
    if target:
        lines.append(Line("target_value", "target in force", MEASURE["target"], target, "kpi_targets", dashed=True))
    chart = time_chart(_trend_dates(ratio), lines, fmt=lambda v: fmt_pct(v, 0))
    refs = ["cost_income.cost_to_income"] + ["kpi_targets.target_value"] * bool(target)
    return Figure([chart], Source(refs, "month to date: the ratio starts again with each month; no point when revenue ≤ 0"),
                  "Cost-to-income (FIRM)"), ratio


def _latest(series: dict, pick=lambda v: v):
    """(date, value) of the latest date with a value."""
    for d in sorted(series, reverse=True):
        if pick(series[d]) is not None:
            return d, pick(series[d])
    return None, None


def section_trends(p: Pack, tgts: dict) -> Section:
    title = "Trends"
    breaks, recon = _breaks_figure(p)
    limits, status = _limits_figure(p)
    cost, ratio = _cost_figure(p)
    figures = [f for f in (breaks, limits, cost) if f is not None]
    if not figures:
        return Section("trends", title, [NotAvailable(
            "none of ops_recon_summary, bo_worklist, risk_limit_utilisation and cost_income has rows up to the date")])
    n = len(_trend_dates(recon, status, ratio))
    lead: list = [f"Over the last {plural(n, 'business date')} published up to {p.d}"]
    d, v = _latest(recon)
    if d is not None:
        lead += [": open breaks ", Value(fmt_count(v), "ops_recon_summary", "trades", d, v)]
    d, v = _latest(status, lambda s: s[0])
    if d is not None:
        lead += [", limits in breach ", Value(fmt_count(v), "risk_limit_utilisation", "status", d, v,
                                              "BREACH" if v else "OK")]
    d, v = _latest(ratio)
    if d is not None:
        lead += [", cost-to-income ", Value(fmt_pct(v, 1), "cost_income", "cost_to_income", d, v)]
    lead.append(".")
    blocks: list = [Grid(figures[:2])] + figures[2:]
    if n < 20:
        blocks.append(Para([f"Only {plural(n, 'date')} published so far: the trend grows to {TREND_DATES} dates."],
                           note=True))
    return Section("trends", f"Trends ({plural(n, 'business date')})", blocks, lead)
