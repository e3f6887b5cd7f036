"""Risk beyond VaR (DOMAIN §11) in plain Python from the delivered files, written apart from the
SQL: sensitivities (bonds by QuantLib), the FX net open position, stress P&L, stressed VaR and
liquidity. Reads the landing through tests/oracles/risk.py's Feeds (csv and the Parquet prices).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import date
from functools import cache

import numpy as np

from oracles.risk import Feeds, quantile, shortfall

NEW_METRICS = ("DV01", "FX_NOP", "STRESS_LOSS", "LIQUIDITY_DAYS_SHARE")
DEFAULT_PARTICIPATION = 0.2


def _d(text: str) -> date:
    return date.fromisoformat(text)


@cache
def book_quantities(feeds: Feeds, as_of: str) -> dict[tuple[str, str], float]:
    """(book, instrument) → quantity summed over custodians."""
    with (feeds.landing / as_of / "positions.csv").open(newline="", encoding="utf-8") as fh:
        out: dict[tuple[str, str], float] = defaultdict(float)
        for r in csv.DictReader(fh):
            if r["holder_type"] == "BOOK":
                out[(r["holder_id"], r["instrument_id"])] += float(r["quantity"])
    return dict(out)


def close_and_rate(feeds: Feeds, as_of: str, inst: str) -> tuple[float | None, float | None]:
    m = feeds.market(as_of)
    ccy = m.currency.get(inst)
    return m._last(m.closes.get(inst), as_of), m._last(m.rates.get(ccy), as_of)


@cache
def book_holdings(feeds: Feeds, as_of: str) -> dict[tuple[str, str], dict]:
    """(book, instrument) → quantity, price, fx, mv, asset class, currency (holdings with a value)."""
    attrs = feeds.attributes(as_of)
    out = {}
    for (book, inst), q in book_quantities(feeds, as_of).items():
        px, fx = close_and_rate(feeds, as_of, inst)
        if px is None or fx is None:
            continue
        out[(book, inst)] = {"quantity": q, "price": px, "fx": fx, "mv": q * px * fx,
                             "asset_class": attrs[inst]["asset_class"], "currency": attrs[inst]["currency"]}
    return out


def parameter(feeds: Feeds, as_of: str, name: str, text: bool = False):
    for r in feeds.latest("control_parameters.csv", as_of):
        if r["parameter"] == name and r["scope_id"] == "ALL":
            return r["text_value"] if text else float(r["value"])
    return None


# --- bonds, by QuantLib --------------------------------------------------------------------------

def quantlib_bond(terms: dict, clean_price: float, settle: date) -> dict[str, float] | None:
    """ytm, modified duration and DV01 per unit (100 face) of a bond's instruments.csv terms."""
    import QuantLib as ql

    if not terms.get("coupon_rate") or _d(terms["maturity_date"]) <= settle:
        return None
    s = ql.Date(settle.day, settle.month, settle.year)
    ql.Settings.instance().evaluationDate = s
    freq = {1: ql.Annual, 2: ql.Semiannual, 4: ql.Quarterly}[int(terms["coupon_frequency"])]
    issue, maturity = _d(terms["issue_date"]), _d(terms["maturity_date"])
    schedule = ql.Schedule(ql.Date(issue.day, issue.month, issue.year),
                           ql.Date(maturity.day, maturity.month, maturity.year), ql.Period(freq), ql.NullCalendar(),
                           ql.Unadjusted, ql.Unadjusted, ql.DateGeneration.Backward, False)
    dc = ql.ActualActual(ql.ActualActual.ISMA)
    bond = ql.FixedRateBond(0, 100.0, schedule, [float(terms["coupon_rate"])], dc, ql.Unadjusted)
    ytm = ql.BondFunctions.bondYield(bond, ql.BondPrice(clean_price, ql.BondPrice.Clean), dc, ql.Compounded, freq, s,
                                     1e-15, 10000, 0.05)
    accrued = ql.BondFunctions.accruedAmount(bond, s)

    def dirty(y: float) -> float:
        return ql.BondFunctions.cleanPrice(bond, y, dc, ql.Compounded, freq, s) + accrued

    return {"ytm": ytm, "dv01_per_unit": (dirty(ytm - 1e-4) - dirty(ytm + 1e-4)) / 2,
            "modified_duration": ql.BondFunctions.duration(bond, ql.InterestRate(ytm, dc, ql.Compounded, freq),
                                                           ql.Duration.Modified, s)}


@cache
def independent_sensitivities(feeds: Feeds, as_of: str) -> dict[tuple[str, str], dict]:
    attrs = feeds.attributes(as_of)
    out = {}
    for (book, inst), h in book_holdings(feeds, as_of).items():
        bond = quantlib_bond(attrs[inst], h["price"], _d(as_of)) if h["asset_class"] == "BOND" else None
        out[(book, inst)] = {
            "delta_1pct_usd": 0.01 * h["mv"] if h["asset_class"] in ("EQUITY", "FUND", "COMMODITY") else None,
            "fx_delta_1pct_usd": 0.01 * h["mv"] if h["currency"] != "USD" else None,
            "ytm": bond and bond["ytm"], "modified_duration": bond and bond["modified_duration"],
            "dv01_usd": bond and bond["dv01_per_unit"] * h["quantity"] * h["fx"],
        }
    return out


# --- FX net open position ----------------------------------------------------------------------------

def independent_fx_nop(feeds: Feeds, as_of: str) -> tuple[dict[str, dict], float]:
    per: dict[str, dict] = defaultdict(lambda: {"long_usd": 0.0, "short_usd": 0.0, "net_usd": 0.0})
    for h in book_holdings(feeds, as_of).values():
        if h["currency"] == "USD":
            continue
        row = per[h["currency"]]
        row["long_usd" if h["mv"] > 0 else "short_usd"] += h["mv"]
        row["net_usd"] += h["mv"]
    longs = sum(r["net_usd"] for r in per.values() if r["net_usd"] > 0)
    shorts = sum(r["net_usd"] for r in per.values() if r["net_usd"] < 0)
    return dict(per), max(longs, abs(shorts))


# --- stress tests ------------------------------------------------------------------------------------

def independent_stress(feeds: Feeds, as_of: str) -> dict[tuple[str, str], float]:
    """(portfolio, scenario) → P&L: HISTORICAL MV × (V_end / V_start − 1); SHOCK linear."""
    m = feeds.market(as_of)
    sens = independent_sensitivities(feeds, as_of)
    scenarios: dict[str, list[dict]] = defaultdict(list)
    for r in feeds.latest("stress_scenarios.csv", as_of):
        scenarios[r["scenario_id"]].append(r)
    out: dict[tuple[str, str], float] = defaultdict(float)
    for sid, rows in scenarios.items():
        shocks = {(r["shock_type"], r["shock_scope"]): float(r["shock_value"]) for r in rows if r["kind"] == "SHOCK"}

        def shock(kind: str, scope: str, shocks: dict = shocks) -> float:
            return shocks.get((kind, scope), shocks.get((kind, "ALL"), 0.0))

        for (book, inst), h in book_holdings(feeds, as_of).items():
            if rows[0]["kind"] == "HISTORICAL":
                v0, v1 = m.unit_value(inst, rows[0]["start_date"]), m.unit_value(inst, rows[0]["end_date"])
                pnl = h["mv"] * (v1 / v0 - 1) if v0 and v1 else 0.0
            else:
                dv01 = sens[(book, inst)]["dv01_usd"]
                rate_bond = h["asset_class"] == "BOND" and dv01 is not None
                pnl = 0.0 if rate_bond else h["mv"] * shock("PRICE_PCT", h["asset_class"])
                if h["currency"] != "USD":
                    pnl += h["mv"] * shock("FX_PCT", h["currency"])
                if rate_bond:
                    pnl -= dv01 * shock("YIELD_BP", h["currency"])
            out[(book, sid)] += pnl
            out[("FIRM", sid)] += pnl
    return dict(out)


# --- stressed VaR ------------------------------------------------------------------------------------

def svar_dates(feeds: Feeds, as_of: str, n: int) -> list[str]:
    """The base date and the n scenario dates from SVAR_WINDOW_START (unset: the first price date)."""
    m = feeds.market(as_of)
    start = parameter(feeds, as_of, "SVAR_WINDOW_START", text=True) or m.calendar[0]
    before = [d for d in m.calendar if d < start]
    after = [d for d in m.calendar if start <= d <= as_of]
    return (before[-1:] + after)[: n + 1]


@cache
def independent_svar(feeds: Feeds, as_of: str, n: int) -> dict[str, dict]:
    m = feeds.market(as_of)
    cal = svar_dates(feeds, as_of, n)
    scen = cal[1:]
    pnl: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(scen)))
    for (book, inst), h in book_holdings(feeds, as_of).items():
        v = np.array([m.unit_value(inst, d) or np.nan for d in cal])
        r = np.nan_to_num(v[1:] / v[:-1] - 1)
        pnl[book] = pnl[book] + h["mv"] * r
        pnl["FIRM"] = pnl["FIRM"] + h["mv"] * r
    return {p: {"svar_99": -quantile(list(vec), "0.01"), "ses_975": -shortfall(list(vec), "0.025"),
                "svar_n_scenarios": len(scen), "svar_first_scenario_date": scen[0],
                "svar_last_scenario_date": scen[-1], "pnl": dict(zip(scen, vec))}
            for p, vec in pnl.items()}


# --- liquidity ---------------------------------------------------------------------------------------

BUCKETS = ("<=1", "1-5", "5-20", ">20", "UNKNOWN")


def bucket_of(days: float | None) -> str:
    if days is None:
        return "UNKNOWN"
    return "<=1" if days <= 1 else "1-5" if days <= 5 else "5-20" if days <= 20 else ">20"


@cache
def independent_liquidity(feeds: Feeds, as_of: str) -> tuple[dict[tuple[str, str], dict], dict[tuple[str, str], dict]]:
    """Per holding (days, bucket) and per (portfolio, bucket) gross and share, and share beyond 5 days."""
    attrs = feeds.attributes(as_of)
    participation = parameter(feeds, as_of, "LIQUIDITY_PARTICIPATION") or DEFAULT_PARTICIPATION
    holdings = {}
    gross: dict[tuple[str, str], float] = defaultdict(float)
    for (book, inst), h in book_holdings(feeds, as_of).items():
        adv = attrs[inst].get("adv_quantity")
        days = abs(h["quantity"]) / (participation * float(adv)) if adv else None
        holdings[(book, inst)] = {"days_to_liquidate": days, "bucket": bucket_of(days)}
        for p in (book, "FIRM"):
            gross[(p, bucket_of(days))] += abs(h["mv"])
    profile = {}
    for p in {p for p, _ in gross}:
        total = sum(gross.get((p, b), 0.0) for b in BUCKETS)
        beyond = gross.get((p, "5-20"), 0.0) + gross.get((p, ">20"), 0.0)
        for b in BUCKETS:
            profile[(p, b)] = {"gross_usd": gross.get((p, b), 0.0), "share": gross.get((p, b), 0.0) / total,
                               "share_beyond_5_days": beyond / total}
    return holdings, profile


# --- the §11 limit measures ---------------------------------------------------------------------------

def independent_measure(feeds: Feeds, as_of: str, scope_type: str, scope_id: str, metric: str) -> float | None:
    """What a DV01, FX_NOP, STRESS_LOSS or LIQUIDITY_DAYS_SHARE limit measures (None: not applicable)."""
    portfolio = "FIRM" if scope_type == "FIRM" else scope_id
    if scope_type not in ("FIRM", "BOOK") or (metric == "FX_NOP" and scope_type != "FIRM"):
        return None
    if metric == "DV01":
        return sum(s["dv01_usd"] or 0.0 for (book, _), s in independent_sensitivities(feeds, as_of).items()
                   if portfolio in ("FIRM", book))
    if metric == "FX_NOP":
        return independent_fx_nop(feeds, as_of)[1]
    if metric == "STRESS_LOSS":
        pnl = [v for (p, _), v in independent_stress(feeds, as_of).items() if p == portfolio]
        return max(0.0, -min(pnl)) if pnl else 0.0
    _, profile = independent_liquidity(feeds, as_of)
    row = profile.get((portfolio, "<=1"))
    return row["share_beyond_5_days"] if row else 0.0
