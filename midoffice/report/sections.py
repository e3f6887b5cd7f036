"""Each section of the pack: the queries' rows turned into charts, tables and traced figures.

A section reads the marts it needs and says "not available" when one is not published (or has
no rows for the date, with the build's reason when the build kept it), so the pack works with
whatever the warehouse holds and grows as marts are added.
"""

from __future__ import annotations

from typing import Callable

from midoffice.report import queries as Q
from midoffice.report.charts import (MEASURE, STATUS, STATUS_OF, Bar, Column, Line, Series, hbar_chart, stacked_hbar_chart,
                                     status_color, time_chart, verdict)
from midoffice.report.formats import fmt_count, fmt_pct, fmt_plain, fmt_ratio, fmt_usd, plural
from midoffice.report.queries import Pack
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

# (kpi_daily column, label, format, target (metric, scope) in kpi_targets, red when value > 0)
TILES: list[tuple[str, str, Callable, tuple[str, str] | None, bool]] = [
    ("firm_gross_exposure_usd", "Firm gross exposure (USD)", fmt_usd, None, False),
    ("firm_net_exposure_usd", "Firm net exposure (USD)", fmt_usd, None, False),
    ("firm_var_99_usd", "Firm VaR 99 % (USD)", fmt_usd, None, False),
    ("limits_breach", "Limits in breach", fmt_count, None, True),
    ("limits_warning", "Limits in warning", fmt_count, None, False),
    ("recon_match_rate", "Recon match rate", fmt_pct, ("RECON_MATCH_RATE_MIN", "ALL"), False),
    ("open_breaks", "Open recon breaks", fmt_count, None, False),
    ("breaks_over_5bd", "Breaks older than 5 days", fmt_count, None, True),
    ("settlement_efficiency", "Settlement efficiency", fmt_pct, ("SETTLEMENT_EFFICIENCY_MIN", "ALL"), False),
    ("active_clients", "Active clients", fmt_count, ("ACTIVE_CLIENTS_MIN", "ALL"), False),
    ("revenue_mtd_usd", "Revenue month to date (USD)", fmt_usd, None, False),
    ("cost_to_income_mtd", "Cost-to-income MTD", fmt_pct, ("COST_TO_INCOME_MAX", "ALL"), False),
    ("feeds_passed", "Feeds passing their gate", fmt_count, None, False),
    ("quarantined_rows", "Records quarantined", fmt_count, None, True),
    ("var_backtest_zone", "VaR backtest zone (FIRM)", fmt_plain, None, False),
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
    tiles = []
    for column, label, fmt, target, bad_above_zero in TILES:
        if why or column not in row:
            tiles.append(Tile(column, label, available=False, caption=why or p.missing("kpi_daily", column)))
            continue
        value = row[column]
        text, status = fmt(value), None
        target_value, target_status = _target_value(tgts.get(target) if target else None, fmt)
        if bad_above_zero and value is not None:
            status = "BREACH" if value > 0 else "OK"
        elif column == "var_backtest_zone" and value is not None:
            text = f"{value} · {row.get('var_backtest_exceptions')} exceptions"
            status = STATUS_OF.get(value)
        elif column == "feeds_passed" and row.get("feeds_total") is not None and value is not None:
            text += f" / {row['feeds_total']}"
            status = "OK" if value == row["feeds_total"] else "BREACH"
        else:
            status = target_status
        tiles.append(Tile(column, label, text, "kpi_daily", column, value, status, target_value,
                          caption=f"source: kpi_daily.{column}"))
    return tiles


# --- sections ----------------------------------------------------------------------------------

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
    badges = [Badge(Value(f"{n} {t}", "alerts", "alert_type", t, n, "BREACH" if s == "CRITICAL" else "WARNING"))
              for (s, t), n in counts.items()]
    table = data_table("alerts", [("severity", "severity", fmt_plain), ("alert_type", "type", fmt_plain),
                                  ("subject_id", "subject", fmt_plain), ("message", "message", fmt_plain)],
                       rows, status=lambda r: "BREACH" if r[0] == "CRITICAL" else "WARNING", limit=15)
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
    return Section("limits", title, blocks, lead)


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
    rows = [Row([Cell(e["mart"], "mart"), Cell(f"{e['rows']:,}", "*", str(e["rows"]), mart=e["mart"]),
                 Cell("CSV", "csv", href=f"extracts/{e['csv']}"), Cell("Parquet", "parquet", href=f"extracts/{e['parquet']}")])
            for e in extracts]
    blocks: list = [Table(None, [("mart", "mart"), ("rows", "rows for the date"), ("csv", "CSV"),
                                       ("parquet", "Parquet")], rows)]
    if absent:
        blocks.append(Para([f"Not in the published warehouse (no extract): {', '.join(absent)}."], note=True))
    return Section("extracts", "Extracts", blocks)


# (id, title in the navigation, builder): the pack's sections in page order.
SECTIONS: list[tuple[str, str, Callable[[Pack, dict], Section]]] = [
    ("alerts", "Alerts", section_alerts), ("exposure", "Exposure", section_exposure),
    ("limits", "Limits", section_limits), ("var", "VaR", section_var), ("recon", "Reconciliation", section_recon),
    ("settlement", "Settlement", section_settlement), ("clients", "Clients", section_clients),
    ("cost", "Cost-to-income", section_cost_income), ("targets", "Targets", section_targets),
    ("dq", "Data quality", section_data_quality),
]
