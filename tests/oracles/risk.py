"""The risk marts (risk_var, risk_concentration, risk_limit_utilisation, risk_var_backtest,
risk_exposure) in plain Python and numpy from the delivered files, and the VaR tail convention
written independently of the SQL.
"""

from __future__ import annotations

import bisect
import csv
import math
from collections import defaultdict
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path

import numpy as np

from midoffice import calendar


BASEL_WINDOW = 250


# --- the tail convention, written independently of the SQL ---------------------------------------

def tail_size(q: str | Decimal, n: int) -> int:
    """k = ceil(q × N) in exact decimal arithmetic (q given as a decimal string)."""
    return max(1, math.ceil(Decimal(q) * n))


def quantile(pnl: list[float], q: str) -> float:
    return sorted(pnl)[tail_size(q, len(pnl)) - 1]


def shortfall(pnl: list[float], q: str) -> float:
    k = tail_size(q, len(pnl))
    return float(np.mean(sorted(pnl)[:k]))


# --- an independent model of the feeds and the risk figures -----------------------------------------

def _csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@cache
def _prices_file(path: Path) -> list[tuple[str, str, float]]:
    import pyarrow.parquet as pq

    t = pq.read_table(path).to_pydict()
    return [(str(d), i, p) for d, i, p in zip(t["price_date"], t["instrument_id"], t["close_price"])]


@cache
def _fx_file(path: Path) -> list[tuple[str, str, float]]:
    return [(r["rate_date"], r["currency"], float(r["usd_per_unit"])) for r in _csv(path)]


class Feeds:
    """What the senders delivered, as of a business date: the landing files and nothing else."""

    def __init__(self, landing: Path):
        self.landing = landing
        self.deliveries = sorted(p.name for p in landing.iterdir() if p.is_dir())

    def upto(self, as_of: str) -> list[str]:
        return [d for d in self.deliveries if d <= as_of]

    def latest(self, feed_file: str, as_of: str) -> list[dict]:
        return _csv(self.landing / self.upto(as_of)[-1] / feed_file)

    @cache
    def market(self, as_of: str) -> "Market":
        closes: dict[tuple[str, str], float] = {}
        rates: dict[tuple[str, str], float] = {}
        for d in self.upto(as_of):  # a later delivery of the same (date, key) wins
            for pd_, inst, px in _prices_file(self.landing / d / "prices.parquet"):
                if pd_ <= as_of:
                    closes[(inst, pd_)] = px
            for rd, ccy, rate in _fx_file(self.landing / d / "fx_rates.csv"):
                if rd <= as_of:
                    rates[(ccy, rd)] = rate
        currency = {r["instrument_id"]: r["currency"] for r in self.latest("instruments.csv", as_of)}
        return Market(closes, rates, currency, calendar.landing_holidays(self.landing, date.fromisoformat(as_of)))

    @cache
    def attributes(self, as_of: str) -> dict[str, dict]:
        return {r["instrument_id"]: r for r in self.latest("instruments.csv", as_of)}

    @cache
    def holdings(self, as_of: str) -> dict[tuple[str, str, str], float]:
        """(holder_type, holder_id, instrument) → market value in USD, summed over custodians."""
        qty: dict[tuple[str, str, str], float] = defaultdict(float)
        for r in _csv(self.landing / as_of / "positions.csv"):
            qty[(r["holder_type"], r["holder_id"], r["instrument_id"])] += float(r["quantity"])
        m = self.market(as_of)
        return {k: q * m.unit_value(k[2], as_of) for k, q in qty.items()}


class Market:
    def __init__(self, closes, rates, currency, holidays: frozenset = frozenset()):
        self.currency = currency
        self.closes = self._series(closes)
        self.rates = self._series(rates)
        # the FIRM business dates with closes (delivered holidays: midoffice.calendar)
        self.calendar = sorted({d for (_, d) in closes if calendar.is_business_day(date.fromisoformat(d), holidays)})

    @staticmethod
    def _series(points: dict[tuple[str, str], float]) -> dict[str, tuple[list[str], list[float]]]:
        by_key: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for (key, d), v in sorted(points.items()):
            by_key[key].append((d, v))
        return {k: ([d for d, _ in pts], [v for _, v in pts]) for k, pts in by_key.items()}

    @staticmethod
    def _last(series: tuple[list[str], list[float]] | None, day: str) -> float | None:
        """The last value on or before the day (carried forward), None before the first."""
        if series is None:
            return None
        i = bisect.bisect_right(series[0], day)
        return series[1][i - 1] if i else None

    def unit_value(self, inst: str, day: str) -> float | None:
        """USD value of one unit: the last close and the last rate on or before the day."""
        px = self._last(self.closes.get(inst), day)
        fx = self._last(self.rates.get(self.currency.get(inst)), day)
        return None if px is None or fx is None else px * fx


def book_pnl_vectors(feeds: Feeds, as_of: str, n: int) -> tuple[list[str], dict[str, np.ndarray]]:
    """Scenario dates and P&L per book and FIRM: Σ MV × r_s, r the USD return of one unit."""
    m = feeds.market(as_of)
    cal = m.calendar[-(n + 1):]
    scen = cal[1:]
    pnl: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(scen)))
    for (ht, book, inst), mv in feeds.holdings(as_of).items():
        if ht != "BOOK" or mv is None:
            continue
        v = np.array([m.unit_value(inst, d) or np.nan for d in cal])
        r = np.nan_to_num(v[1:] / v[:-1] - 1)
        pnl[book] = pnl[book] + mv * r
        pnl["FIRM"] = pnl["FIRM"] + mv * r
    return scen, dict(pnl)


@cache
def independent_var(feeds: Feeds, as_of: str, n: int) -> dict[str, dict]:
    scen, pnl = book_pnl_vectors(feeds, as_of, n)
    out = {}
    for p, vec in pnl.items():
        values = list(vec)
        out[p] = {
            "n_scenarios": len(values), "first_scenario_date": scen[0],
            "var_95": -quantile(values, "0.05"), "var_99": -quantile(values, "0.01"),
            "es_95": -shortfall(values, "0.05"), "es_975": -shortfall(values, "0.025"),
            "es_99": -shortfall(values, "0.01"),
            "worst_scenario_date": scen[int(np.argmin(vec))], "pnl": dict(zip(scen, values)),
        }
    return out


DIMENSIONS = {"book": None, "issuer": "issuer_id", "country": "issuer_country",
              "asset_class": "asset_class", "sector": "sector"}


@cache
def independent_concentration(feeds: Feeds, as_of: str, pseudonym) -> dict[tuple[str, str], dict]:
    attrs = feeds.attributes(as_of)
    sums: dict[tuple[str, str], list] = defaultdict(lambda: [0, 0.0, 0.0])
    for (ht, hid, inst), mv in feeds.holdings(as_of).items():
        if ht == "BOOK":
            keys = [(dim, hid if col is None else attrs[inst][col]) for dim, col in DIMENSIONS.items()]
        else:
            keys = [("client", pseudonym(hid))]
        for key in keys:
            s = sums[key]
            s[0] += 1
            s[1] += abs(mv)
            s[2] += mv
    totals: dict[str, float] = defaultdict(float)
    for (dim, _), s in sums.items():
        totals[dim] += s[1]
    out = {key: {"n_positions": s[0], "gross_usd": s[1], "net_usd": s[2], "share": s[1] / totals[key[0]]}
           for key, s in sums.items()}
    hhi: dict[str, float] = defaultdict(float)
    for (dim, _), row in out.items():
        hhi[dim] += row["share"] ** 2
    for (dim, _), row in out.items():
        row["hhi"], row["effective_n"] = hhi[dim], 1 / hhi[dim]
    return out


def independent_limits(feeds: Feeds, dates: list[str], n: int, pseudonym) -> dict[tuple[str, str], dict]:
    """Every limit on every date, with the breach run counted by walking the dates in order."""
    from oracles.risk2 import NEW_METRICS, independent_measure

    out: dict[tuple[str, str], dict] = {}
    run: dict[str, int] = defaultdict(int)
    for d in dates:
        conc = independent_concentration(feeds, d, pseudonym)
        var = independent_var(feeds, d, n)
        book_mv = [mv for (ht, _, _), mv in feeds.holdings(d).items() if ht == "BOOK"]
        today = set()
        for lim in feeds.latest("limits.csv", d):
            st, sid, metric = lim["scope_type"], lim["scope_id"], lim["metric"]
            member = pseudonym(sid) if st == "CLIENT" else sid
            c = conc.get((st.lower(), member), {"gross_usd": 0.0, "net_usd": 0.0, "share": 0.0})
            if st == "FIRM":
                c = {"gross_usd": sum(abs(x) for x in book_mv), "net_usd": sum(book_mv), "share": None}
            if metric in NEW_METRICS:  # DOMAIN §11's measures: tests/oracles/risk2.py
                exposure = independent_measure(feeds, d, st, sid, metric)
            else:
                exposure = {
                    "GROSS_EXPOSURE": c["gross_usd"], "NET_EXPOSURE": c["net_usd"], "CONCENTRATION_SHARE": c["share"],
                    "VAR_99": var.get("FIRM" if st == "FIRM" else sid, {"var_99": 0.0})["var_99"]
                    if st in ("FIRM", "BOOK") else None,
                }[metric]
            limit_value = float(lim["limit_value"])
            warn = float(lim["warning_pct"]) if lim["warning_pct"] else 0.8
            util = None if exposure is None else abs(exposure) / limit_value if metric in ("NET_EXPOSURE", "DV01") \
                else exposure / limit_value
            status = ("NOT_APPLICABLE" if util is None else "BREACH" if util > 1
                      else "WARNING" if util >= warn else "OK")
            run[lim["limit_id"]] = run[lim["limit_id"]] + 1 if status == "BREACH" else 0
            today.add(lim["limit_id"])
            out[(d, lim["limit_id"])] = {"scope_id": member, "exposure": exposure, "limit_value": limit_value,
                                         "warning_pct": warn, "utilisation": util, "status": status,
                                         "consecutive_breach_days": run[lim["limit_id"]]}
        for gone in set(run) - today:  # a limit missing from the feed breaks its run
            run[gone] = 0
    return out


def independent_backtest(feeds: Feeds, dates: list[str], n: int) -> dict[tuple[str, str], dict]:
    """Hypothetical P&L of yesterday's book holdings at today's prices, against yesterday's var_99."""
    out: dict[tuple[str, str], dict] = {}
    history: dict[str, list[bool | None]] = defaultdict(list)
    evaluated: list[str] = []
    for d in dates:
        m = feeds.market(d)
        prev = m.calendar[m.calendar.index(d) - 1]
        if prev not in dates:  # the warehouse holds no holdings for it
            continue
        var_prev = independent_var(feeds, prev, n)
        pnl: dict[str, float] = defaultdict(float)
        for (ht, book, inst), mv in feeds.holdings(prev).items():
            if ht != "BOOK":
                continue
            v0, v1 = m.unit_value(inst, prev), m.unit_value(inst, d)
            r = v1 / v0 - 1 if v0 and v1 else 0.0
            pnl[book] += mv * r
            pnl["FIRM"] += mv * r
        evaluated.append(d)
        for p, value in pnl.items():
            var = var_prev.get(p, {}).get("var_99")
            exc = None if var is None else -value > var
            history[p].append((d, exc))
            window = set(evaluated[-BASEL_WINDOW:])
            excs = [e for dd, e in history[p] if dd in window and e is not None]
            k = sum(excs)
            out[(d, p)] = {"previous_date": prev, "hypothetical_pnl_usd": value, "var_99": var, "exception": exc,
                           "observations": len(excs), "exceptions_250": k,
                           "zone": "INSUFFICIENT_HISTORY" if len(excs) < 250 else
                           "RED" if k >= 10 else "YELLOW" if k >= 5 else "GREEN"}
    return out


# --- an independent computation of risk_exposure from the files -------------------------------

def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def independent_exposure(landing: Path, as_of: str, pseudonym) -> dict[tuple[str, str], float]:
    """Σ quantity × latest close × latest fx per holder, from the delivered files only.

    Clients are keyed by `pseudonym(client_id)`: the published marts never carry client ids.
    """
    import pyarrow.parquet as pq

    dates = sorted(p.name for p in landing.iterdir() if p.is_dir() and p.name <= as_of)
    closes: dict[str, tuple] = {}
    rates: dict[str, tuple] = {}
    for d in dates:  # later deliveries win for the same price date
        table = pq.read_table(landing / d / "prices.parquet").to_pylist()
        for row in table:
            pd_ = str(row["price_date"])
            if pd_ <= as_of:
                key = (pd_, d)
                if row["instrument_id"] not in closes or key >= closes[row["instrument_id"]][0]:
                    closes[row["instrument_id"]] = (key, row["close_price"])
        for row in _read_csv(landing / d / "fx_rates.csv"):
            if row["rate_date"] <= as_of:
                key = (row["rate_date"], d)
                if row["currency"] not in rates or key >= rates[row["currency"]][0]:
                    rates[row["currency"]] = (key, float(row["usd_per_unit"]))
    currency = {r["instrument_id"]: r["currency"] for r in _read_csv(landing / as_of / "instruments.csv")}
    totals: dict[tuple[str, str], float] = defaultdict(float)
    for row in _read_csv(landing / as_of / "positions.csv"):
        inst = row["instrument_id"]
        mv = float(row["quantity"]) * closes[inst][1] * rates[currency[inst]][1]
        holder = pseudonym(row["holder_id"]) if row["holder_type"] == "CLIENT" else row["holder_id"]
        totals[(row["holder_type"], holder)] += mv
    return dict(totals)
