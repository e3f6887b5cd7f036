"""Each section of the pack: the queries' rows turned into charts, tables and traced figures.

A section reads the marts it needs and says "not available" when one is not published (or has
no rows for the date, with the build's reason when the build kept it), so the pack works with
whatever the warehouse holds and grows as marts are added.
"""

from __future__ import annotations

import numbers
from typing import Callable

from midoffice.report import queries as Q
from midoffice.report.charts import (MEASURE, STATUS, STATUS_OF, Bar, Column, Line, Series, hbar_chart, stacked_hbar_chart,
                                     status_color, time_chart, verdict)
from midoffice.report.formats import fmt_count, fmt_pct, fmt_plain, fmt_ratio, fmt_usd, plural
from midoffice.report.queries import Pack
from midoffice.report.risk_sections import section_risk_beyond_var
from midoffice.report.trends import section_trends
from midoffice.report.worklist import section_changes, section_worklist
from midoffice.report.view import (Badge, Cell, Chip, Chips, Figure, Grid, Heading, NotAvailable, Para, Row, Section,
                                   Source, Table, Tile, Value, data_table)


def _na(sid: str, title: str, reason: str) -> Section:
    return Section(sid, title, [NotAvailable(reason)])


def _read(p: Pack, mart: str, columns: tuple[str, ...] | list[str], query: Callable[[Pack], list]) -> tuple[list, str | None]:
    """The section's rows of `mart`, or why there are none (not published, a column lacking, no rows)."""
    why = p.missing(mart, *columns)
    if why:
        return [], why
    rows = query(p)
    return rows, None if rows else p.why_empty(mart)


def _target_legend(what: str = "target") -> list[tuple[str, str]]:
    return [(f"within {what}", STATUS["OK"]), (f"outside {what}", STATUS["BREACH"])]


# --- KPI tiles ---------------------------------------------------------------------------------

# (kpi_daily column, label, format, target (metric, scope) in kpi_targets, the status when the
# value is above zero: BREACH (red) for a control that failed, WARNING (amber) for something to
# look at: quarantined records were set aside and the feed still passed its gate)
TILES: list[tuple[str, str, Callable, tuple[str, str] | None, str | None]] = [
    ("firm_gross_exposure_usd", "Firm gross exposure (USD)", fmt_usd, None, None),
    ("firm_net_exposure_usd", "Firm net exposure (USD)", fmt_usd, None, None),
    ("firm_var_99_usd", "Firm VaR 99 % (USD)", fmt_usd, None, None),
    ("limits_breach", "Limits in breach", fmt_count, None, "BREACH"),
    ("limits_warning", "Limits in warning", fmt_count, None, None),
    ("recon_match_rate", "Recon match rate", fmt_pct, ("RECON_MATCH_RATE_MIN", "ALL"), None),
    ("open_breaks", "Open recon breaks", fmt_count, None, None),
    ("breaks_over_5bd", "Breaks older than 5 days", fmt_count, None, "BREACH"),
    ("settlement_efficiency", "Settlement efficiency", fmt_pct, ("SETTLEMENT_EFFICIENCY_MIN", "ALL"), None),
    ("active_clients", "Active clients", fmt_count, ("ACTIVE_CLIENTS_MIN", "ALL"), None),
    ("revenue_mtd_usd", "Revenue month to date (USD)", fmt_usd, None, None),
    ("cost_to_income_mtd", "Cost-to-income MTD", fmt_pct, ("COST_TO_INCOME_MAX", "ALL"), None),
    ("feeds_passed", "Feeds passing their gate", fmt_count, None, None),
    ("quarantined_rows", "Records quarantined", fmt_count, None, "WARNING"),
    ("var_backtest_zone", "VaR backtest zone (FIRM)", fmt_plain, None, None),
    ("firm_pnl_usd", "Firm P&L today (USD)", fmt_usd, None, None),
    ("pnl_breaks", "Desk P&L breaks", fmt_count, None, "BREACH"),
    ("ipv_coverage", "IPV coverage (gross MV)", fmt_pct, None, None),
    ("ipv_breaches", "IPV breaches", fmt_count, None, "BREACH"),
    ("position_breaks", "Client position breaks", fmt_count, None, "BREACH"),
]


def _target_value(tgt: tuple | None, fmt: Callable) -> tuple[Value | None, str | None]:
    """The tile's target line ('target ≥ 95.0 % · met') and its status, from kpi_targets."""
    if not tgt:
        return None, None
    _actual, value, met, direction, tid = tgt
    sign = "≤" if direction == "MAX" else "≥"
    word = "met" if met else ("missed" if met is False else "unknown")
    status = None if met is None else "OK" if met else "BREACH"
    return Value(f"target {sign} {fmt(value)} · {word}", "kpi_targets", "target_value", tid, value), status


def kpi_tiles(p: Pack, tgts: dict) -> list[Tile]:
    """The tiles show the date's row of kpi_daily and nothing else: the KPIs are defined once, there."""
    why = p.missing("kpi_daily", "business_date")
    row = None if why else Q.kpi_row(p)
    if row is None and not why:
        why = p.why_empty("kpi_daily")
    before = None if why else Q.kpi_previous_row(p)
    tiles = []
    for column, label, fmt, target, above_zero in TILES:
        if why or column not in row:
            tiles.append(Tile(column, label, available=False, caption=why or p.missing("kpi_daily", column)))
            continue
        value = row[column]
        text, status = fmt(value), None
        target_value, target_status = _target_value(tgts.get(target) if target else None, fmt)
        if above_zero and value is not None:
            status = above_zero if value > 0 else "OK"
        elif column == "var_backtest_zone" and value is not None:
            # short enough for a tile: the zone's name (INSUFFICIENT_HISTORY) is in the caption
            text = (f"no zone · {row.get('var_backtest_observations')}/250 obs."
                    if value == "INSUFFICIENT_HISTORY" else f"{value} · {row.get('var_backtest_exceptions')} exceptions")
            status = STATUS_OF.get(value)
        elif column == "feeds_passed" and row.get("feeds_total") is not None and value is not None:
            text += f" / {row['feeds_total']}"
            status = "OK" if value == row["feeds_total"] else "BREACH"
        else:
            status = target_status
        caption = f"source: kpi_daily.{column}" + day_on_day(value, before, column, fmt)
        if column == "var_backtest_zone" and value == "INSUFFICIENT_HISTORY":
            caption += " = INSUFFICIENT_HISTORY (a Basel zone needs 250 observations)"
        tiles.append(Tile(column, label, text, "kpi_daily", column, value, status, target_value, caption=caption))
    return tiles


def day_on_day(value, before: dict | None, column: str, fmt: Callable) -> str:
    """' · +1.20 m on 2026-01-07': the change since the previous business date's kpi_daily row (a
    rate's change in percentage points), or nothing when either is not a number."""
    old = (before or {}).get(column)
    if not all(isinstance(x, numbers.Number) and not isinstance(x, bool) for x in (value, old)):
        return ""
    delta = float(value) - float(old)
    shown = fmt(abs(delta)).replace(" %", " pt")
    return f" · {'+' if delta >= 0 else '−'}{shown} on {before['business_date']}"


# --- sections ----------------------------------------------------------------------------------

# INFO (the worklist's summary) is a measure, not a verdict: no status colour
SEVERITY_STATUS = {"CRITICAL": "BREACH", "WARNING": "WARNING"}


def section_alerts(p: Pack, tgts: dict) -> Section:
    why = p.missing("alerts", "severity", "alert_type", "subject_id", "message")
    if why:
        return _na("alerts", "Alerts", why)
    rows = Q.alert_rows(p)
    if not rows:
        body = (Para(["No alert raised for this date."]) if p.has_rows("dq_feed_health", "business_date")
                else NotAvailable(p.why_empty("alerts")))
        return Section("alerts", "Alerts", [body, Source(["alerts"])])
    counts: dict[tuple[str, str], int] = {}
    for sev, typ, _, _ in rows:
        counts[(sev, typ)] = counts.get((sev, typ), 0) + 1
    badges = [Badge(Value(f"{n} {t}", "alerts", "alert_type", t, n, SEVERITY_STATUS.get(s)))
              for (s, t), n in counts.items()]
    table = data_table("alerts", [("severity", "severity", fmt_plain), ("alert_type", "type", fmt_plain),
                                  ("subject_id", "subject", fmt_plain), ("message", "message", fmt_plain)],
                       rows, status=lambda r: SEVERITY_STATUS.get(r[0]), limit=15)
    return Section("alerts", f"Alerts ({len(rows)})", [Para(badges), table,
                                                       Source(["alerts.severity", "alerts.alert_type", "alerts.message"])])


def section_targets(p: Pack, tgts: dict) -> Section:
    rows, why = _read(p, "kpi_targets", ("target_id", "metric", "scope_id", "actual", "target_value", "met"),
                      Q.target_rows)
    if why:
        return _na("targets", "Targets", why)
    met = sum(1 for r in rows if r[5])
    missed = sum(1 for r in rows if r[5] is False)

    def value_fmt(metric: str) -> Callable:
        return fmt_count if metric == "ACTIVE_CLIENTS_MIN" else fmt_ratio if metric == "CLIENT_HHI_MAX" else fmt_pct

    shown = [(t, m, s, value_fmt(m)(a), value_fmt(m)(v), "met" if ok else "missed" if ok is False else "unknown")
             for t, m, s, a, v, ok in rows]
    table = data_table("kpi_targets", [("target_id", "target", fmt_plain), ("metric", "metric", fmt_plain),
                                       ("scope_id", "scope", fmt_plain), ("actual", "actual", fmt_plain),
                                       ("target_value", "target", fmt_plain), ("met", "met", fmt_plain)], shown,
                       status=lambda r: "BREACH" if r[5] == "missed" else None)
    lead = [Value(str(met), "kpi_targets", "met", value=met), f" of {plural(len(rows), 'target')} met, ",
            Value(f"{missed} missed", "kpi_targets", "met", "missed", missed, "BREACH"),
            f", {len(rows) - met - missed} not measurable on the date."]
    return Section("targets", "Targets", [table, Source(["kpi_targets.actual", "kpi_targets.target_value",
                                                         "kpi_targets.met"])], lead)


def section_exposure(p: Pack, tgts: dict) -> Section:
    series = [Series("gross_usd", "gross Σ|MV|", MEASURE["primary"]), Series("net_usd", "net Σ MV", MEASURE["secondary"])]
    figs = []
    if not p.missing("risk_concentration", "dimension", "member", "gross_usd", "net_usd", "hhi", "effective_n"):
        for dim, title in (("asset_class", "By asset class"), ("book", "By book")):
            rows = Q.concentration_rows(p, dim)
            if not rows:
                figs.append(Figure([NotAvailable(p.why_empty("risk_concentration"))], title=title))
                continue
            bars = [Bar(m or "UNKNOWN", (g, n)) for m, g, n, _, _ in rows]
            hhi, eff = rows[0][3], rows[0][4]
            note = Para(["Concentration: HHI ", Value(fmt_ratio(hhi), "risk_concentration", "hhi", value=hhi),
                         ", effective number ",
                         Value("n/a" if eff is None else f"{eff:.1f}", "risk_concentration", "effective_n", value=eff),
                         "."], note=True)
            figs.append(Figure([hbar_chart(bars, series, mart="risk_concentration", dimension=dim), note],
                               Source(["risk_concentration.gross_usd", "risk_concentration.net_usd"],
                                      f"dimension = {dim}"), title))
    elif not p.missing("risk_exposure", "holder_type", "holder_id", "asset_class", "market_value_usd"):
        ser = [Series("market_value_usd", s.name, s.color) for s in series]
        for key, title in (("asset_class", "By asset class"), ("holder_id", "By book")):
            bars = [Bar(m, (g, n)) for m, g, n in Q.book_exposure_rows(p, key)]
            figs.append(Figure([hbar_chart(bars, ser, mart="risk_exposure")],
                               Source(["risk_exposure.market_value_usd"], f"BOOK holdings by {key}"), title))
    else:
        return _na("exposure", "Exposure", p.missing("risk_concentration", "dimension") or "risk_exposure lacks columns")
    return Section("exposure", "Exposure (the firm's BOOK holdings)", [Grid(figs)])


METRIC_SHORT = {"GROSS_EXPOSURE": "gross", "NET_EXPOSURE": "net", "CONCENTRATION_SHARE": "share"}


def _limit_label(scope_type: str, metric: str) -> str:
    """'CLIENT · gross exposure': the scope and the measure; the scope's id goes on a second line."""
    return f"{scope_type} · {METRIC_SHORT.get(metric, metric.replace('_', ' ').lower())}"


def section_limits(p: Pack, tgts: dict, shown_max: int = 25) -> Section:
    title = "Limit utilisation"
    rows, why = _read(p, "risk_limit_utilisation", Q.LIMIT_COLUMNS, Q.limit_rows)
    if why:
        return _na("limits", title, why)
    counts = {s: sum(1 for r in rows if r[7] == s) for s in ("BREACH", "WARNING", "OK")}
    bars = [Bar(_limit_label(st, met), (u,), colors=(status_color(status),), member=lid, sublabel=sid or "",
                note=status + (f" {plural(cb, 'day')}" if cb else ""))
            for lid, st, sid, met, _, _, u, status, _, cb in rows[:shown_max]]
    warn = min((r[8] for r in rows if r[8] is not None), default=0.8)
    chart = hbar_chart(bars, [Series("utilisation", "utilisation", STATUS["OK"])], mart="risk_limit_utilisation",
                       fmt=fmt_pct, refs=[(1.0, STATUS["BREACH"], "limit 100 %"),
                                          (warn, STATUS["WARNING"], f"warning {warn * 100:.0f} %")],
                       legend=[(s, STATUS[s]) for s in ("BREACH", "WARNING", "OK")])
    lead = [Badge(Value(f"{counts['BREACH']} in breach", "risk_limit_utilisation", "status", "BREACH",
                        counts["BREACH"], "BREACH")), " ",
            Badge(Value(f"{counts['WARNING']} in warning", "risk_limit_utilisation", "status", "WARNING",
                        counts["WARNING"], "WARNING")), " ",
            Badge(Value(f"{counts['OK']} OK", "risk_limit_utilisation", "status", "OK", counts["OK"], "OK"))]
    if len(rows) > shown_max:
        lead.append(f" · showing breaches first, then the {shown_max} most used")
    blocks = [Figure([chart], Source(["risk_limit_utilisation.utilisation", "risk_limit_utilisation.status"],
                                     "bars: utilisation = exposure / limit; breaches first"))]
    breaches = [r for r in rows if r[7] == "BREACH"]
    if breaches:
        blocks += [Heading("Breaches"), data_table(
            "risk_limit_utilisation",
            [("limit_id", "limit", fmt_plain), ("scope_type", "scope", fmt_plain), ("scope_id", "member", fmt_plain),
             ("metric", "metric", fmt_plain), ("exposure", "exposure", lambda v: fmt_usd(v) if v and abs(v) > 1 else fmt_pct(v)),
             ("limit_value", "limit", lambda v: fmt_usd(v) if v and v > 1 else fmt_pct(v)),
             ("utilisation", "utilisation", fmt_pct), ("consecutive_breach_days", "days in breach", fmt_count)],
            [(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[9]) for r in breaches], status=lambda r: "BREACH")]
    blocks += _limit_changes(p)
    return Section("limits", title, blocks, lead)


def _limit_changes(p: Pack) -> list:
    """Today's limit changes (DOMAIN §10.3), or one line saying there are none or why not."""
    why = p.missing("limit_changes", *Q.LIMIT_CHANGE_COLUMNS)
    if why:
        return [Heading("Limit changes today"), NotAvailable(why)]
    rows = Q.limit_change_rows(p)
    if not rows:
        return [Heading("Limit changes today"), Para(["No limit was set, changed or removed by today's limits delivery."])]

    def amount(v):
        return fmt_usd(v) if v is not None and v > 1 else fmt_pct(v)

    return [Heading("Limit changes today"), data_table(
        "limit_changes",
        [("limit_id", "limit", fmt_plain), ("change_type", "change", fmt_plain), ("scope_type", "scope", fmt_plain),
         ("scope_id", "member", fmt_plain), ("metric", "metric", fmt_plain), ("old_limit_value", "old limit", amount),
         ("new_limit_value", "new limit", amount), ("change_pct", "change", fmt_pct),
         ("old_warning_pct", "old warning", fmt_pct), ("new_warning_pct", "new warning", fmt_pct),
         ("cured_by_limit_change", "breach cured by the change", lambda v: "yes" if v else "no")],
        rows, status=lambda r: "WARNING" if r[10] else None)]


def section_var(p: Pack, tgts: dict, history: int = 60) -> Section:
    title = "Value-at-risk and backtest (FIRM)"
    var, why = _read(p, "risk_var", ("portfolio", "var_99", "var_95", "es_975"), lambda p: Q.var_rows(p, history))
    if why:
        return _na("var", title, why)
    bt_why = p.missing("risk_var_backtest", "hypothetical_pnl_usd", "exception", "var_99", "exceptions_250", "zone")
    bt = {} if bt_why else Q.backtest_rows(p, var[0][0])
    dates = sorted({r[0] for r in var} | set(bt))
    lines = [Line("var_99", "VaR 99 % (loss shown negative)", MEASURE["primary"],
                  {d: -v for d, v, _, _ in var if v is not None}, "risk_var"),
             Line("var_95", "VaR 95 %", MEASURE["secondary"], {d: -v for d, _, v, _ in var if v is not None}, "risk_var",
                  dashed=True)]
    cols = Column("hypothetical_pnl_usd", "backtest P&L", "risk_var_backtest", {
        d: (pnl, STATUS["BREACH"] if exc else MEASURE["neutral"],
            f"{d}: P&L {fmt_usd(pnl)} vs VaR 99 of the previous day {fmt_usd(v)}" + (" — EXCEPTION" if exc else ""))
        for d, (pnl, exc, v, _, _) in bt.items()},
        legend=(("backtest P&L", MEASURE["neutral"]), ("exception", STATUS["BREACH"]))) if bt else None
    chart = time_chart(dates, lines, cols)
    last = [(d, v99, v95, es, *(bt.get(d, (None,) * 5)[:2]), *(bt.get(d, (None,) * 5)[3:]))
            for d, v99, v95, es in var[-10:]][::-1]
    table = data_table("risk_var", [("as_of_date", "date", fmt_plain), ("var_99", "VaR 99", fmt_usd),
                                    ("var_95", "VaR 95", fmt_usd), ("es_975", "ES 97.5", fmt_usd),
                                    ("hypothetical_pnl_usd", "backtest P&L", fmt_usd),
                                    ("exception", "exception", lambda v: "" if v is None else "YES" if v else "no"),
                                    ("exceptions_250", "exceptions (250d)", fmt_count), ("zone", "zone", fmt_plain)],
                       last, status=lambda r: "BREACH" if r[5] else None)
    lead = []
    if p.d in bt:
        _, _, _, n, zone = bt[p.d]
        lead = ["Backtest zone on the date: ", Badge(Value(zone, "risk_var_backtest", "zone", p.d, zone,
                                                           STATUS_OF_ZONE.get(zone))),
                f" ({plural(n or 0, 'exception')} in the last 250 days)"]
    return Section("var", title, [
        Figure([chart], Source(["risk_var.var_99", "risk_var.var_95", "risk_var_backtest.hypothetical_pnl_usd",
                                "risk_var_backtest.exception"],
                               "a day's P&L revalues the previous day's holdings and is tested against that day's VaR 99")),
        *([] if bt else [NotAvailable(bt_why or "no backtest rows yet")]),
        Heading("Last days"), table,
        Source(["risk_var (var_99, var_95, es_975)",
                "risk_var_backtest (hypothetical_pnl_usd, exception, exceptions_250, zone)"])], lead)


STATUS_OF_ZONE = {"GREEN": "OK", "YELLOW": "WARNING", "RED": "BREACH"}
# Break types are categories, not verdicts (every one is a break): tones outside the STATUS colours.
BREAK_STATUSES = [("BO_ONLY", MEASURE["violet"]), ("FO_ONLY", MEASURE["orange"]), ("VERSION_BREAK", MEASURE["cyan"]),
                  ("QTY_BREAK", MEASURE["pink"]), ("AMOUNT_BREAK", MEASURE["brown"])]
AGE_BUCKETS = ["0-1", "2-5", "6-30", ">30"]


def section_recon(p: Pack, tgts: dict) -> Section:
    title = "Front-to-back reconciliation"
    books, why = _read(p, "ops_recon_summary", ("book", "status", "age_bucket", "is_break", "trades", "notional_usd",
                                                "match_rate", "book_trades"), Q.recon_book_rows)
    if why:
        return _na("recon", title, why)
    by_age: dict[str, dict] = {b: {} for b in AGE_BUCKETS}
    notional = {b: 0.0 for b in AGE_BUCKETS}
    for bucket, status, n, usd in Q.break_rows(p):
        by_age.setdefault(bucket, {})[status] = n
        notional[bucket] = notional.get(bucket, 0.0) + (usd or 0.0)
    ages = stacked_hbar_chart([(f"{b} days", by_age[b]) for b in by_age], BREAK_STATUSES,
                              mart="ops_recon_summary", column="trades")
    at_stake: list = ["Notional at stake: "]
    for k, (b, v) in enumerate(notional.items()):
        at_stake += [" · "] * (k > 0) + [f"{b} d: ", Value(fmt_usd(v), "ops_recon_summary", "notional_usd", b, v)]
    age_fig = Figure([ages, Para(at_stake, note=True)],
                     Source(["ops_recon_summary.trades", "ops_recon_summary.notional_usd"],
                            "break statuses, by age bucket"), "Open breaks by age (business days)")
    target = tgts.get(("RECON_MATCH_RATE_MIN", "ALL"))
    bars = [Bar(b, (mr,), note=f"{plural(nb or 0, 'break')} of {fmt_count(bt)}",
                ticks=(((tgts[("RECON_MATCH_RATE_MIN", b)][1], MEASURE["target"], "book target"),)
                       if ("RECON_MATCH_RATE_MIN", b) in tgts else ()),
                colors=(verdict(None if not target or mr is None else mr >= target[1]),))
            for b, mr, bt, nb in books]
    refs = [(target[1], STATUS["BREACH"], f"target {fmt_pct(target[1])}")] if target else []
    rate_fig = Figure([hbar_chart(bars, [Series("match_rate", "match rate", STATUS["NOT_APPLICABLE"])],
                                  mart="ops_recon_summary", fmt=fmt_pct, refs=refs, legend=_target_legend())],
                      Source(["ops_recon_summary.match_rate", *(["kpi_targets.target_value"] if target else [])],
                             "matched / trades in the 20-day window, per book"), "Match rate by book")
    return Section("recon", title, [Grid([age_fig, rate_fig])])


def section_settlement(p: Pack, tgts: dict) -> Section:
    title = "Settlement efficiency"
    by_date, why = _read(p, "ops_settlement_efficiency", ("intended_settle_date", "custodian", "due", "settled_on_time",
                         "settled_late", "failed", "due_amount_usd", "settled_on_time_amount_usd"), Q.settlement_by_date)
    if why:
        return _na("settlement", title, why)
    target = tgts.get(("SETTLEMENT_EFFICIENCY_MIN", "ALL"))
    refs = [(target[1], STATUS["BREACH"], f"target {fmt_pct(target[1])}")] if target else []
    trend = time_chart(
        [r[0] for r in by_date],
        [Line("settled_on_time", "by count", MEASURE["primary"], {r[0]: r[1] for r in by_date}, "ops_settlement_efficiency"),
         Line("settled_on_time_amount_usd", "by USD value", MEASURE["secondary"], {r[0]: r[2] for r in by_date},
              "ops_settlement_efficiency", dashed=True)], fmt=fmt_pct, refs=refs, height=220)
    trend_fig = Figure([trend], Source(["ops_settlement_efficiency.settled_on_time", "ops_settlement_efficiency.due"],
                                       "Σ on time / Σ due per intended settlement date, as known on the date"),
                       "Efficiency by intended settlement date")
    bars = [Bar(c, (e,), note=f"{fmt_count(f)} failed, {fmt_count(late)} late of {fmt_count(due)}",
                colors=(verdict(None if not target or e is None else e >= target[1]),))
            for c, e, due, f, late in Q.settlement_by_custodian(p)]
    cust_fig = Figure([hbar_chart(bars, [Series("settled_on_time", "on time / due", STATUS["NOT_APPLICABLE"])],
                                  mart="ops_settlement_efficiency", fmt=fmt_pct, refs=refs, legend=_target_legend())],
                      Source(["ops_settlement_efficiency.settled_on_time", "ops_settlement_efficiency.due",
                              "ops_settlement_efficiency.failed"], "the 20 intended dates up to the date"),
                      "By custodian")
    return Section("settlement", title, [Grid([trend_fig, cust_fig])])


def section_clients(p: Pack, tgts: dict) -> Section:
    figs = []
    why = p.missing("client_stats", "segment", "clients_active", "aum_usd")
    if why:
        figs.append(Figure([NotAvailable(why)], title="Client mix"))
    else:
        seg = Q.segment_rows(p)
        total = sum(r[1] or 0 for r in seg) or None
        bars = []
        for s, active, aum in seg:
            share = (active or 0) / total if total else None
            mine = [m for m in ("SEGMENT_SHARE_MIN", "SEGMENT_SHARE_MAX") if (m, s) in tgts]
            ticks = tuple((tgts[(m, s)][1], MEASURE["target"], f"{m} {fmt_pct(tgts[(m, s)][1])}") for m in mine)
            ok = None if not mine else all(tgts[(m, s)][2] is not False for m in mine)
            bars.append(Bar(s or "UNKNOWN", (share,), ticks=ticks, colors=(verdict(ok),),
                            note=f"{plural(active or 0, 'client')} · AUM {fmt_usd(aum)}"))
        figs.append(Figure(
            [hbar_chart(bars, [Series("clients_active", "share of active clients", STATUS["NOT_APPLICABLE"])],
                        mart="client_stats", fmt=fmt_pct, legend=_target_legend("targets"))],
            Source(["client_stats.clients_active", "client_stats.aum_usd",
                    *(["kpi_targets.target_value"] if any(k[0].startswith("SEGMENT_SHARE") for k in tgts) else [])],
                   "black ticks: the segment's share targets (min, max)"), "Client mix by segment"))
    why = p.missing("client_portfolio", "risk_profile", "hhi", "hhi_max", "risk_profile_breach", "effective_n")
    if why:
        figs.append(Figure([NotAvailable(why)], title="Portfolio diversity"))
    else:
        bars = [Bar(rp or "UNKNOWN", (med,), ticks=(((hmax, MEASURE["target"], f"CLIENT_HHI_MAX {fmt_ratio(hmax)}"),)
                                                 if hmax is not None else ()),
                    colors=(verdict(None if hmax is None or med is None else med <= hmax),),
                    note=f"{fmt_count(nb)} of {plural(n, 'client')} over")
                for rp, med, hmax, n, nb, _ in Q.risk_profile_rows(p)]
        figs.append(Figure(
            [hbar_chart(bars, [Series("hhi", "median client HHI", STATUS["NOT_APPLICABLE"])], mart="client_portfolio",
                        fmt=fmt_ratio, legend=_target_legend("the profile's maximum"))],
            Source(["client_portfolio.hhi", "client_portfolio.hhi_max", "client_portfolio.risk_profile_breach"],
                   "median HHI over holdings by risk profile; black tick: the profile's maximum"),
            "Portfolio concentration against targets"))
    return Section("clients", "Clients: mix and diversity against targets", [Grid(figs)])


def section_cost_income(p: Pack, tgts: dict) -> Section:
    title = "Cost-to-income by desk (month to date)"
    rows, why = _read(p, "cost_income", ("period", "cost_center", "revenue_usd", "expense_usd", "cost_to_income"),
                      Q.cost_income_rows)
    if why:
        return _na("cost", title, why)
    target = tgts.get(("COST_TO_INCOME_MAX", "ALL"))

    def within(center: str, cti: float) -> bool | None:
        """Within the desk's own target, or for FIRM the firm's (scope ALL); None: no target."""
        own = tgts.get(("COST_TO_INCOME_MAX", "ALL" if center == "FIRM" else center))
        return None if not own else cti <= own[1]

    bars = [Bar(c, (cti,), note=f"exp {fmt_usd(e)} / rev {fmt_usd(r)}",
                ticks=(((tgts[("COST_TO_INCOME_MAX", c)][1], MEASURE["target"], "desk target"),)
                       if ("COST_TO_INCOME_MAX", c) in tgts else ()),
                colors=(verdict(within(c, cti)),))
            for c, r, e, cti in rows if cti is not None]
    refs = [(target[1], STATUS["BREACH"], f"target {fmt_pct(target[1], 0)}")] if target else []
    chart = hbar_chart(bars, [Series("cost_to_income", "cost-to-income MTD", STATUS["NOT_APPLICABLE"])],
                       mart="cost_income", fmt=lambda v: fmt_pct(v, 0), refs=refs, width=700,
                       legend=_target_legend() + [("no target", STATUS["NOT_APPLICABLE"])])
    blocks: list = [Figure([chart], Source(["cost_income.cost_to_income", "cost_income.expense_usd",
                                            "cost_income.revenue_usd", *(["kpi_targets.target_value"] if tgts else [])],
                                           "period MTD; black tick: the desk's target, dashed line: the firm's"))]
    support = [r for r in rows if r[3] is None]
    if support:
        blocks += [Heading("Support functions (no revenue)"),
                   data_table("cost_income", [("cost_center", "support function", fmt_plain),
                                              ("revenue_usd", "revenue", fmt_usd), ("expense_usd", "expense", fmt_usd)],
                              support), Source(["cost_income.expense_usd"])]
    return Section("cost", title, blocks)


def _pnl_status(row: tuple) -> str | None:
    """A desk's row: BREACH when its report breaks, WARNING when it sent none."""
    brk, missing = row[9], row[10]
    return "BREACH" if brk else "WARNING" if missing else None


def section_product_control(p: Pack, tgts: dict) -> Section:
    """The day's P&L by desk and its explain against the desks' own reports (DOMAIN §8.2), the
    independent price verification (§8.3) and the client position breaks (§8.4)."""
    title = "Product control: P&L, prices, positions"
    rows, why = _read(p, "pnl_book", Q.PNL_BOOK_COLUMNS, Q.pnl_book_rows)
    if why:
        return _na("pnl", title, why)
    desks = [r for r in rows if r[0] != "FIRM"]
    firm = next((r for r in rows if r[0] == "FIRM"), None)
    bars = [Bar(r[0], (r[6], r[7]), colors=(status_color("BREACH") if r[9] else STATUS["OK"], STATUS["NOT_APPLICABLE"]),
                note=("break: " if r[9] else "unexplained ") + fmt_usd(r[8]) if r[8] is not None else "no report")
            for r in desks]
    chart = hbar_chart(bars, [Series("total_pnl_usd", "P&L (product control)", STATUS["OK"]),
                              Series("reported_pnl_usd", "desk's own report", STATUS["NOT_APPLICABLE"])],
                       mart="pnl_book", fmt=fmt_usd, width=700)
    explain = data_table("pnl_book", [("book", "desk", fmt_plain), ("price_effect_usd", "price", fmt_usd),
                                      ("fx_effect_usd", "FX", fmt_usd), ("carry_usd", "carry", fmt_usd),
                                      ("commission_usd", "commission", fmt_usd), ("fees_usd", "fees", fmt_usd),
                                      ("total_pnl_usd", "total", fmt_usd), ("reported_pnl_usd", "desk reported", fmt_usd),
                                      ("unexplained_usd", "unexplained", fmt_usd)],
                         [r[:9] for r in rows], status=lambda r: _pnl_status(next(x for x in rows if x[0] == r[0])))
    breaks = [r for r in desks if r[9]]
    lead: list = []
    if firm:
        lead = ["The firm made ", Value(fmt_usd(firm[6]), "pnl_book", "total_pnl_usd", "FIRM", firm[6]), " today; ",
                Value(plural(len(breaks), "desk"), "pnl_book", "pnl_break", None, len(breaks), "BREACH" if breaks else "OK"),
                " reported a P&L outside tolerance."]
    blocks: list = [Figure([chart], Source(["pnl_book.total_pnl_usd", "pnl_book.reported_pnl_usd", "pnl_book.pnl_break"],
                                           "red: the desk's report breaks from ours (beyond max(PNL_TOLERANCE_USD, "
                                           "PNL_TOLERANCE_PCT × |reported|))"), "Desk P&L against the desk's own"),
                    Heading("P&L explain by desk (USD)"), explain,
                    Source(["pnl_book.price_effect_usd", "pnl_book.fx_effect_usd", "pnl_book.carry_usd",
                            "pnl_book.commission_usd", "pnl_book.fees_usd", "pnl_book.unexplained_usd"],
                           "total = price + FX + carry + commission + fees; unexplained = desk reported − total")]
    if not p.missing("ipv_results", *Q.IPV_COLUMNS, "stale", "gross_mv_usd"):
        n, priced, breached, stale, gross, covered, adjustment = Q.ipv_summary(p)
        blocks.append(Heading("Independent price verification"))
        if n:
            coverage = covered / gross if gross else None
            blocks.append(Para([Value(fmt_pct(coverage), "ipv_results", "gross_mv_usd", None, coverage),
                                f" of the books' gross market value has an independent price ({priced} of "
                                f"{plural(n, 'instrument')}); ",
                                Value(plural(breached, "breach", "breaches"), "ipv_results", "status", "BREACH", breached,
                                      "BREACH" if breached else "OK"), ", ",
                                Value(plural(stale, "stale close"), "ipv_results", "stale", None, stale,
                                      "WARNING" if stale else "OK"), "; valuation adjustment ",
                                Value(fmt_usd(adjustment), "ipv_results", "adjustment_usd", None, adjustment), "."]))
            exceptions = Q.ipv_exception_rows(p)
            if exceptions:
                blocks += [data_table("ipv_results", [("instrument_id", "instrument", fmt_plain),
                                                      ("asset_class", "asset class", fmt_plain),
                                                      ("fo_price", "our close", fmt_plain), ("ipv_price", "independent", fmt_plain),
                                                      ("diff_pct", "difference", lambda v: fmt_pct(v, 2)),
                                                      ("tolerance", "tolerance", lambda v: fmt_pct(v, 2)),
                                                      ("status", "status", fmt_plain), ("stale_days", "days unchanged", fmt_count),
                                                      ("adjustment_usd", "adjustment", fmt_usd)],
                                      exceptions, status=lambda r: "BREACH" if r[6] == "BREACH" else "WARNING", limit=15),
                           Source(["ipv_results.diff_pct", "ipv_results.tolerance", "ipv_results.stale_days",
                                   "ipv_results.adjustment_usd"], "breaches (IPV_TOLERANCE_PCT) and stale closes (STALE_PRICE_DAYS)")]
        else:
            blocks.append(NotAvailable(p.why_empty("ipv_results")))
    if not p.missing("position_recon", *Q.POSITION_BREAK_COLUMNS, "status"):
        counts = dict(Q.position_recon_summary(p))
        brk = Q.position_break_rows(p)
        blocks.append(Heading("Client positions against what settled"))
        if counts:
            blocks.append(Para([Value(plural(counts.get("MATCHED", 0), "position"), "position_recon", "status", "MATCHED",
                                      counts.get("MATCHED", 0)), " moved exactly by what settled, ",
                                Value(f"{counts.get('NO_PRIOR', 0)} new", "position_recon", "status", "NO_PRIOR",
                                      counts.get("NO_PRIOR", 0)), ", ",
                                Value(plural(len(brk), "break"), "position_recon", "status", "BREAK", len(brk),
                                      "BREACH" if brk else "OK"), "."]))
            if brk:
                blocks += [data_table("position_recon", [("client_key", "client", fmt_plain),
                                                         ("instrument_id", "instrument", fmt_plain),
                                                         ("custodian", "custodian", fmt_plain),
                                                         ("previous_quantity", "previous", fmt_count),
                                                         ("settled_change", "settled", fmt_count),
                                                         ("expected_quantity", "expected", fmt_count),
                                                         ("actual_quantity", "custodian reports", fmt_count),
                                                         ("difference", "difference", fmt_count)],
                                      brk, status=lambda r: "BREACH", limit=15),
                           Source(["position_recon.expected_quantity", "position_recon.actual_quantity",
                                   "position_recon.difference"], "expected = previous custody + settled quantity changes")]
        else:
            blocks.append(NotAvailable(p.why_empty("position_recon")))
    return Section("pnl", title, blocks, lead)


def section_data_quality(p: Pack, tgts: dict) -> Section:
    title = "Data-quality health"
    cols = Q.FEED_HEALTH_COLUMNS
    rows, why = _read(p, "dq_feed_health", cols, Q.feed_health_rows)
    if why:
        return _na("dq", title, why)
    chips = [Chip(f, g, fresh or "", Value(f"{fmt_count(lo)} loaded", "dq_feed_health", "loaded_rows", f, lo),
                  Value(f"{fmt_count(qr)} quarantined", "dq_feed_health", "quarantined_rows", f, qr))
             for f, g, _, _, lo, qr, _, fresh, _ in rows]
    body: list = [Figure([Chips(chips)], Source(["dq_feed_health.gate", "dq_feed_health.freshness",
                                                 "dq_feed_health.loaded_rows", "dq_feed_health.quarantined_rows"]))]
    if any(r[5] for r in rows):  # the share chart only says something when records were quarantined
        bars = [Bar(f, (share or 0.0,), colors=(status_color(g),), note=f"{g} · {fmt_count(qr)} of {fmt_count(rr)}")
                for f, g, _, rr, _, qr, share, _, _ in rows]
        chart = hbar_chart(bars, [Series("quarantined_share", "quarantined share", STATUS["OK"])],
                           mart="dq_feed_health", fmt=lambda v: fmt_pct(v, 2),
                           refs=[(p.quarantine_threshold, STATUS["BREACH"],
                                  f"gate threshold {fmt_pct(p.quarantine_threshold, 1)}")],
                           legend=[("PASS", STATUS["OK"]), ("FAIL", STATUS["BREACH"])])
        body.append(Figure([chart], Source(["dq_feed_health.quarantined_share", "dq_feed_health.gate"]),
                           "Quarantined share against the gate threshold"))
    body += [data_table("dq_feed_health", [(c, c.replace("_rows", "").replace("_", " "),
                                            fmt_count if c.endswith("_rows") else
                                            (lambda v: fmt_pct(v, 2)) if c == "quarantined_share" else fmt_plain)
                                           for c in cols], rows, status=lambda r: None if r[1] == "PASS" else "BREACH"),
             Source([f"dq_feed_health.{c}" for c in cols[1:6]])]
    if not p.missing("dq_quarantine", "feed", "rule"):
        rules = Q.quarantine_rule_rows(p)
        body.append(Heading("Quarantined records by rule"))
        body += ([data_table("dq_quarantine", [("feed", "feed", fmt_plain), ("rule", "rule", fmt_plain),
                                               ("line", "records", fmt_count)], rules, limit=15),
                  Source(["dq_quarantine"], "count of records")] if rules else [Para(["No record quarantined."])])
    if p.skipped:
        body += [Heading("Marts not rebuilt for this date"),
                 data_table("build_log", [("mart", "mart", fmt_plain), ("reason", "reason", fmt_plain)],
                            sorted(p.skipped.items())), Source(["build_log.status", "build_log.reason"])]
    if not p.missing("pipeline_runs", "stage", "status", "message"):
        failed = Q.failed_stage_rows(p)
        if failed:
            body += [Heading("Pipeline stages that failed"), data_table(
                "pipeline_runs", [("stage", "stage", fmt_plain), ("status", "status", fmt_plain),
                                  ("message", "message", fmt_plain)], failed, status=lambda r: "BREACH"),
                Source(["pipeline_runs"])]
    passed = sum(1 for r in rows if r[1] == "PASS")
    quarantined = sum(r[5] or 0 for r in rows)
    lead = [f"{passed} of {plural(len(rows), 'feed')} passed their gate; ",
            Value(plural(quarantined, "record"), "dq_feed_health", "quarantined_rows", None, quarantined,
                  "BREACH" if quarantined else None), " quarantined."]
    return Section("dq", title, body, lead)


def section_extracts(extracts: list[dict], absent: list[str]) -> Section:
    """Each mart's CSV (when it fits a spreadsheet) and the query that reads its rows of the date
    from the lake at the pack's version."""
    rows = [Row([Cell(e["mart"], "mart"), Cell(f"{e['rows']:,}", "*", str(e["rows"]), mart=e["mart"]),
                 Cell("CSV", "csv", href=f"extracts/{e['csv']}") if e.get("csv") else Cell("in the lake only", "csv"),
                 Cell(e["lake_sql"], "lake_sql")])
            for e in extracts]
    version = next((e["version"] for e in extracts if e.get("version")), None)
    blocks: list = [Table(None, [("mart", "mart"), ("rows", "rows for the date"), ("csv", "CSV"),
                                 ("lake_sql", "in the lake (Parquet)")], rows)]
    if version:
        blocks.append(Para([f"The lake's rows as this pack read them: open version {version} with "
                            f"`midoffice versions --attach {version}` (DuckDB) or `midoffice query --as-of-version "
                            f"{version}`. A CSV is written when the date's rows fit a spreadsheet."], note=True))
    if absent:
        blocks.append(Para([f"Not in the published warehouse (no extract): {', '.join(absent)}."], note=True))
    return Section("extracts", "Extracts", blocks)


# (id, title in the navigation, builder): the pack's sections in page order.
SECTIONS: list[tuple[str, str, Callable[[Pack, dict], Section]]] = [
    ("alerts", "Alerts", section_alerts), ("changes", "What changed", section_changes),
    ("worklist", "Worklist", section_worklist), ("trends", "Trends", section_trends),
    ("exposure", "Exposure", section_exposure),
    ("limits", "Limits", section_limits), ("var", "VaR", section_var),
    ("risk2", "Risk beyond VaR", section_risk_beyond_var), ("recon", "Reconciliation", section_recon),
    ("settlement", "Settlement", section_settlement), ("clients", "Clients", section_clients),
    ("pnl", "Product control", section_product_control),
    ("cost", "Cost-to-income", section_cost_income), ("targets", "Targets", section_targets),
    ("dq", "Data quality", section_data_quality),
]
