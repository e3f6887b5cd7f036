"""The pack's section on risk beyond VaR (DOMAIN §11): stressed VaR beside VaR, sensitivities by
book, the FX open position, the worst stress scenarios of each portfolio, and the liquidity
profile. Each part reads its mart and says "not available" on its own when the mart is missing or
has no rows for the date, so the rest of the section still shows.
"""

from __future__ import annotations

from midoffice.report.charts import MEASURE, Bar, Series, hbar_chart, stacked_hbar_chart
from midoffice.report.formats import fmt_pct, fmt_plain, fmt_usd
from midoffice.report.queries import DECIMAL_SUM, Pack
from midoffice.report.view import Figure, Grid, Heading, NotAvailable, Para, Section, Source, Value, data_table

BUCKETS = ["<=1", "1-5", "5-20", ">20", "UNKNOWN"]


def _bucket_label(bucket: str) -> str:
    return bucket if bucket == "UNKNOWN" else f"{bucket} days"

BUCKET_COLOURS = [MEASURE["primary"], MEASURE["secondary"], MEASURE["orange"], MEASURE["violet"], MEASURE["neutral"]]


def _rows(p: Pack, mart: str, columns: tuple[str, ...], sql: str) -> tuple[list[tuple], str | None]:
    why = p.missing(mart, *columns)
    if why:
        return [], why
    rows = p.rows(sql, [p.d])
    return rows, None if rows else p.why_empty(mart)


def svar_part(p: Pack) -> list:
    rows, why = _rows(p, "risk_var", ("portfolio", "var_99", "svar_99", "es_975", "ses_975"),
                      "SELECT portfolio, var_99, svar_99, es_975, ses_975, svar_first_scenario_date "
                      "FROM risk_var WHERE as_of_date = ? ORDER BY portfolio = 'FIRM' DESC, portfolio")
    if why:
        return [Figure([NotAvailable(why)], title="Stressed VaR beside VaR")]
    bars = [Bar(r[0], (r[1], r[2])) for r in rows]
    chart = hbar_chart(bars, [Series("var_99", "VaR 99 %", MEASURE["primary"]),
                              Series("svar_99", "stressed VaR 99 %", MEASURE["orange"])], mart="risk_var")
    start = next((r[5] for r in rows if r[5] is not None), None)
    table = data_table("risk_var", [("portfolio", "portfolio", fmt_plain), ("var_99", "VaR 99", fmt_usd),
                                    ("svar_99", "stressed VaR 99", fmt_usd), ("es_975", "ES 97.5", fmt_usd),
                                    ("ses_975", "stressed ES 97.5", fmt_usd)], [r[:5] for r in rows])
    return [Figure([chart, table], Source(["risk_var.var_99", "risk_var.svar_99", "risk_var.es_975", "risk_var.ses_975"],
                                          f"stressed window: 250 business dates from {start}"),
                   "Stressed VaR beside VaR")]


def sensitivities_part(p: Pack) -> list:
    sql = ("SELECT book, " + ", ".join(DECIMAL_SUM.format(c) + f" AS {c}" for c in
                                         ("delta_1pct_usd", "dv01_usd", "fx_delta_1pct_usd")) +
           " FROM risk_sensitivities WHERE as_of_date = ? GROUP BY book ORDER BY book")
    rows, why = _rows(p, "risk_sensitivities", ("book", "delta_1pct_usd", "dv01_usd", "fx_delta_1pct_usd"), sql)
    if why:
        return [Figure([NotAvailable(why)], title="Sensitivities by book")]
    total = tuple(sum(r[k] or 0.0 for r in rows) for k in (1, 2, 3))
    table = data_table("risk_sensitivities", [("book", "book", fmt_plain), ("delta_1pct_usd", "delta 1 %", fmt_usd),
                                              ("dv01_usd", "DV01", fmt_usd),
                                              ("fx_delta_1pct_usd", "FX delta 1 %", fmt_usd)],
                       rows + [("FIRM", *total)])
    return [Figure([table], Source(["risk_sensitivities (delta_1pct_usd, dv01_usd, fx_delta_1pct_usd)"],
                                   "USD for a 1 % price rise, a 1 bp fall in yields, a 1 % rise of every currency"),
                   "Sensitivities by book")]


def fx_part(p: Pack) -> list:
    rows, why = _rows(p, "fx_net_open_position", ("currency", "long_usd", "short_usd", "net_usd", "net_open_position_usd"),
                      "SELECT currency, long_usd, short_usd, net_usd, net_open_position_usd FROM fx_net_open_position "
                      "WHERE as_of_date = ? ORDER BY abs(net_usd) DESC, currency")
    if why:
        return [Figure([NotAvailable(why)], title="FX net open position")]
    nop = rows[0][4]
    chart = hbar_chart([Bar(r[0], (r[1], r[2], r[3])) for r in rows],
                       [Series("long_usd", "long", MEASURE["primary"]), Series("short_usd", "short", MEASURE["secondary"]),
                        Series("net_usd", "net", MEASURE["orange"])], mart="fx_net_open_position")
    note = Para(["Net open position (shorthand): ",
                 Value(fmt_usd(nop), "fx_net_open_position", "net_open_position_usd", p.d, nop), "."])
    return [Figure([note, chart], Source(["fx_net_open_position (long_usd, short_usd, net_usd, net_open_position_usd)"],
                                         "BOOK holdings quoted in each currency other than USD"),
                   "FX net open position")]


def stress_part(p: Pack, worst: int = 3) -> list:
    rows, why = _rows(p, "risk_stress", ("portfolio", "scenario_id", "name", "pnl_usd", "loss_rank"),
                      f"SELECT portfolio, loss_rank, scenario_id, name, kind, pnl_usd FROM risk_stress "
                      f"WHERE as_of_date = ? AND loss_rank <= {int(worst)} "
                      "ORDER BY portfolio = 'FIRM' DESC, portfolio, loss_rank")
    if why:
        return [Heading("Worst stress scenarios"), NotAvailable(why)]
    table = data_table("risk_stress", [("portfolio", "portfolio", fmt_plain), ("loss_rank", "rank", fmt_plain),
                                       ("scenario_id", "scenario", fmt_plain), ("name", "what", fmt_plain),
                                       ("kind", "kind", fmt_plain), ("pnl_usd", "P&L", fmt_usd)], rows,
                       status=lambda r: "BREACH" if r[1] == 1 and r[5] < 0 else None)
    return [Heading(f"Worst {worst} stress scenarios per portfolio"), table,
            Source(["risk_stress (pnl_usd, loss_rank)"],
                   "HISTORICAL: the window's USD moves; SHOCK: a linear approximation (bonds by DV01)")]


def liquidity_part(p: Pack) -> list:
    rows, why = _rows(p, "risk_liquidity_profile", ("portfolio", "bucket", "gross_usd", "share"),
                      "SELECT portfolio, bucket, gross_usd, share, share_beyond_5_days FROM risk_liquidity_profile "
                      "WHERE as_of_date = ? ORDER BY portfolio = 'FIRM' DESC, portfolio, bucket_order")
    if why:
        return [Figure([NotAvailable(why)], title="Liquidity profile")]
    by: dict[str, dict[str, float]] = {}
    beyond: dict[str, float] = {}
    for portfolio, bucket, gross, _, b5 in rows:
        by.setdefault(portfolio, {})[_bucket_label(bucket)] = gross
        beyond[portfolio] = b5
    chart = stacked_hbar_chart(list(by.items()), list(zip(map(_bucket_label, BUCKETS), BUCKET_COLOURS)),
                               mart="risk_liquidity_profile", column="gross_usd", fmt=fmt_usd)
    firm = beyond.get("FIRM")
    note = Para(["Share of the firm's gross MV needing more than 5 days: ",
                 Value(fmt_pct(firm), "risk_liquidity_profile", "share_beyond_5_days", "FIRM", firm), "."])
    return [Figure([note, chart], Source(["risk_liquidity_profile (gross_usd, share, share_beyond_5_days)"],
                                         "days = |quantity| / (LIQUIDITY_PARTICIPATION × adv_quantity)"),
                   "Liquidity profile")]


def section_risk_beyond_var(p: Pack, tgts: dict) -> Section:
    figures = svar_part(p) + sensitivities_part(p) + fx_part(p) + liquidity_part(p)
    return Section("risk2", "Risk beyond VaR (sensitivities, FX, stress, stressed VaR, liquidity)",
                   [Grid(figures), *stress_part(p)])
