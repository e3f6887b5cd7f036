"""Product control's marts (pnl_daily, pnl_book, ipv_results, position_recon; DOMAIN §8) and the
trading P&L and cost allocation of cost_income (§12), in plain Python from the delivered files.

A delivery with injected faults is read as the pipeline must read it: without the records the
ground truth (`_faults.json`) says are defective (they are quarantined), so that the figures
agree on a faulty sample too.
"""

from __future__ import annotations

import csv
import json
from bisect import bisect_right
from collections import defaultdict
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

import pyarrow.parquet as pq

from oracles.clients import client_key

SUPPORT_FUNCTIONS = ("OPERATIONS", "TECHNOLOGY", "COMPLIANCE", "SALES")
EXPENSES = ("STAFF", "TECHNOLOGY", "MARKET_DATA", "PREMISES", "MARKETING", "OTHER_EXPENSE")
STALE_WINDOW = 60  # business dates looked at (stale_days counts at most 59)


def _latest_on(series: tuple[list[str], list[float]] | None, day: str) -> float | None:
    """The value of the latest date on or before `day` of a (sorted dates, values) series."""
    if not series:
        return None
    at = bisect_right(series[0], day)
    return series[1][at - 1] if at else None


@lru_cache(maxsize=8)
def delivered_once(landing: Path | str) -> "Delivered":
    """One Delivered per landing folder: its caches (every close as known on each date) are then
    shared by the oracles that read the same sample (the landings the tests read are not changed
    once generated)."""
    return Delivered(Path(landing))


class Delivered:
    """The landing files of a sample as the warehouse keeps them: defective records left out."""

    def __init__(self, landing: Path):
        self.landing = Path(landing)
        self.dates = sorted(p.name for p in self.landing.iterdir() if p.is_dir() and (p / "_manifest.json").is_file())
        self.bad: dict[tuple[str, str], set[int]] = defaultdict(set)
        faults = self.landing / "_faults.json"
        for f in json.loads(faults.read_text()) if faults.exists() else []:
            if f["line"] is not None:
                self.bad[(f["business_date"], f["feed"])].add(int(f["line"]))

    @lru_cache(maxsize=None)
    def rows(self, day: str, feed: str) -> tuple[dict, ...]:
        """A CSV feed's records of a delivery (line = 2 for the first record), defective ones out."""
        bad = self.bad.get((day, feed), set())
        with (self.landing / day / f"{feed}.csv").open(newline="", encoding="utf-8") as fh:
            return tuple({k: (v if v != "" else None) for k, v in row.items()}
                         for i, row in enumerate(csv.DictReader(fh)) if i + 2 not in bad)

    def upto(self, as_of: str) -> list[str]:
        return [d for d in self.dates if d <= as_of]

    # ---- market data as known on a date --------------------------------------------------------
    @lru_cache(maxsize=None)
    def _delivered_closes(self, day: str) -> tuple[tuple[str, str, float], ...]:
        """(instrument, price_date, close) of one delivery of prices, defective records out."""
        bad = self.bad.get((day, "prices"), set())
        return tuple((r["instrument_id"], str(r["price_date"]), float(r["close_price"]))
                     for i, r in enumerate(pq.read_table(self.landing / day / "prices.parquet").to_pylist())
                     if i + 1 not in bad)

    @lru_cache(maxsize=None)
    def closes(self, known_on: str) -> dict[str, list[tuple[str, float]]]:
        """instrument -> [(price_date, close)] sorted; a later delivery of a date wins."""
        by_key: dict[tuple[str, str], float] = {}
        for d in self.upto(known_on):
            for inst, price_date, close in self._delivered_closes(d):
                by_key[(inst, price_date)] = close
        out: dict[str, list] = defaultdict(list)
        for (inst, pd), v in sorted(by_key.items()):
            out[inst].append((pd, v))
        return out

    def close_on(self, instrument: str, day: str, known_on: str) -> float | None:
        return _latest_on(self._close_dates(known_on).get(instrument), day)

    @lru_cache(maxsize=None)
    def _close_dates(self, known_on: str) -> dict[str, tuple[list[str], list[float]]]:
        return {inst: ([d for d, _ in xs], [v for _, v in xs]) for inst, xs in self.closes(known_on).items()}

    @lru_cache(maxsize=None)
    def rates(self, known_on: str) -> dict[str, list[tuple[str, float]]]:
        by_key: dict[tuple[str, str], float] = {}
        for d in self.upto(known_on):
            for r in self.rows(d, "fx_rates"):
                by_key[(r["currency"], r["rate_date"])] = float(r["usd_per_unit"])
        out: dict[str, list] = defaultdict(list)
        for (ccy, rd), v in sorted(by_key.items()):
            out[ccy].append((rd, v))
        return out

    def rate_on(self, currency: str, day: str, known_on: str) -> float | None:
        return _latest_on(self._rate_dates(known_on).get(currency), day)

    @lru_cache(maxsize=None)
    def _rate_dates(self, known_on: str) -> dict[str, tuple[list[str], list[float]]]:
        return {ccy: ([d for d, _ in xs], [v for _, v in xs]) for ccy, xs in self.rates(known_on).items()}

    # ---- reference data --------------------------------------------------------------------------
    def instruments(self, as_of: str) -> dict[str, dict]:
        return {r["instrument_id"]: r for r in self.rows(max(self.upto(as_of)), "instruments")}

    def param(self, name: str, scope: str, as_of: str) -> str:
        rows = {(r["parameter"], r["scope_id"]): r for r in self.rows(max(self.upto(as_of)), "control_parameters")}
        r = rows.get((name, scope)) or rows[(name, "ALL")]
        return r["value"] if r["value"] is not None else r["text_value"]

    @lru_cache(maxsize=None)
    def firm_holidays(self, as_of: str) -> frozenset:
        return frozenset(r["holiday_date"] for r in self.rows(max(self.upto(as_of)), "calendars")
                         if r["calendar_id"] == "FIRM")

    def previous_business_day(self, day: str, known_on: str | None = None) -> str:
        holidays = self.firm_holidays(max(known_on or day, self.dates[0]))
        d = date.fromisoformat(day) - timedelta(days=1)
        while d.weekday() >= 5 or d.isoformat() in holidays:
            d -= timedelta(days=1)
        return d.isoformat()

    def custody(self, day: str, holder_type: str) -> dict[tuple, float] | None:
        """(holder, instrument, custodian) -> quantity on a delivered date; None when not delivered."""
        if day not in self.dates:
            return None
        out: dict[tuple, float] = defaultdict(float)
        for r in self.rows(day, "positions"):
            if r["holder_type"] == holder_type:
                out[(r["holder_id"], r["instrument_id"], r["custodian"])] += float(r["quantity"])
        return out

    def current_trades(self, as_of: str) -> dict[str, dict]:
        current: dict[str, tuple] = {}
        for d in self.upto(as_of):
            for t in self.rows(d, "trades"):
                rank = (int(t["version"]), d)
                if t["trade_id"] not in current or rank > current[t["trade_id"]][0]:
                    current[t["trade_id"]] = (rank, t)
        return {k: v[1] for k, v in current.items()}


def by_book(custody: dict[tuple, float] | None) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = defaultdict(float)
    for (holder, inst, _), q in (custody or {}).items():
        out[(holder, inst)] += q
    return out


# --------------------------------------------------------------------------------------------
# §8.1-8.2
# --------------------------------------------------------------------------------------------
def expected_pnl_daily(f: Delivered, as_of: str) -> dict[tuple[str, str], dict]:
    """(book, instrument) -> the explain of DOMAIN §8.1."""
    p = f.previous_business_day(as_of)
    q_p = by_book(f.custody(p, "BOOK")) if p in f.dates else {}
    q_d = by_book(f.custody(as_of, "BOOK"))
    inst = f.instruments(as_of)
    days = (date.fromisoformat(as_of) - date.fromisoformat(p)).days
    out = {}
    for key in set(q_p) | set(q_d):
        book, i = key
        ccy = inst[i]["currency"]
        qp, qd = q_p.get(key, 0.0), q_d.get(key, 0.0)
        pd_, pp = f.close_on(i, as_of, as_of), f.close_on(i, p, as_of)
        fd, fp = f.rate_on(ccy, as_of, as_of), f.rate_on(ccy, p, as_of)
        coupon = inst[i]["coupon_rate"]
        held = qp != 0
        row = {
            "sod_mv_usd": qp * pp * fp if held else 0.0,
            "price_effect_usd": qp * (pd_ - pp) * fp if held else 0.0,
            "fx_effect_usd": qp * pd_ * (fd - fp) if held else 0.0,
            "market_pnl_usd": qp * (pd_ * fd - pp * fp) if held else 0.0,
            "carry_usd": qp * 100 * float(coupon) * days / 365 * fd
            if held and inst[i]["asset_class"] == "BOND" and coupon is not None else 0.0,
            "position_change_usd": (qd - qp) * pd_ * fd,
            "eod_mv_usd": qd * pd_ * fd,
        }
        out[key] = row
    return out


def commissions(f: Delivered, as_of: str, start: str, end: str) -> tuple[dict[str, float], dict[str, int]]:
    """book -> commission (USD, fx of the trade date) and count of the live trades dated start..end."""
    usd: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for t in f.current_trades(as_of).values():
        if t["event_type"] != "CANCEL" and start <= t["trade_date"] <= end:
            usd[t["book"]] += float(t["commission"]) * f.rate_on(t["currency"], t["trade_date"], as_of)
            count[t["book"]] += 1
    return usd, count


def gl_by_center(f: Delivered, as_of: str, start: str, end: str) -> dict[str, dict[str, float]]:
    """cost center -> category -> USD (fx of the posting date) of entries posted start..end, as known on as_of."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for d in f.upto(as_of):
        for g in f.rows(d, "gl_entries"):
            if start <= g["posting_date"] <= end:
                out[g["cost_center"]][g["category"]] += float(g["amount"]) * f.rate_on(g["currency"], g["posting_date"], as_of)
    return out


def trading_pnl(f: Delivered, as_of: str, start: str) -> dict[str, float]:
    """book -> market P&L + carry over the delivered dates start..as_of (pnl_daily's dates)."""
    out: dict[str, float] = defaultdict(float)
    for d in f.upto(as_of):
        if d >= start:
            for (book, _), r in expected_pnl_daily(f, d).items():
                out[book] += r["market_pnl_usd"] + r["carry_usd"]
    return out


def expected_pnl_book(f: Delivered, as_of: str) -> dict[str, dict]:
    """book -> the row of pnl_book (DOMAIN §8.2), FIRM included."""
    daily = expected_pnl_daily(f, as_of)
    books = {r["book"] for r in f.rows(max(f.upto(as_of)), "books")} | {b for b, _ in daily}
    comm, _ = commissions(f, as_of, as_of, as_of)
    fees = gl_by_center(f, as_of, as_of, as_of)
    reported = {r["book"]: float(r["reported_pnl_usd"]) for r in f.rows(as_of, "desk_pnl")}
    tol_usd = float(f.param("PNL_TOLERANCE_USD", "ALL", as_of))
    tol_pct = float(f.param("PNL_TOLERANCE_PCT", "ALL", as_of))
    month, year = as_of[:8] + "01", as_of[:5] + "01-01"
    trading_m, trading_y = trading_pnl(f, as_of, month), trading_pnl(f, as_of, year)
    comm_m, _ = commissions(f, as_of, month, as_of)
    comm_y, _ = commissions(f, as_of, year, as_of)
    fees_m, fees_y = gl_by_center(f, as_of, month, as_of), gl_by_center(f, as_of, year, as_of)
    out = {}
    for book in books:
        rows = [(i, r) for (b, i), r in daily.items() if b == book]
        e = {c: sum(r[c] for _, r in rows) for c in ("price_effect_usd", "fx_effect_usd", "carry_usd", "market_pnl_usd")}
        e["commission_usd"] = comm.get(book, 0.0)
        e["fees_usd"] = fees[book]["REVENUE_FEES"] if book in fees else 0.0
        e["total_pnl_usd"] = e["market_pnl_usd"] + e["carry_usd"] + e["commission_usd"] + e["fees_usd"]
        rep = reported.get(book)
        e["reported_pnl_usd"] = rep
        e["report_missing"] = rep is None
        e["unexplained_usd"] = None if rep is None else rep - e["total_pnl_usd"]
        e["pnl_break"] = None if rep is None else abs(rep - e["total_pnl_usd"]) > max(tol_usd, tol_pct * abs(rep))
        e["total_pnl_mtd_usd"] = (trading_m.get(book, 0.0) + comm_m.get(book, 0.0)
                                  + (fees_m[book]["REVENUE_FEES"] if book in fees_m else 0.0))
        e["total_pnl_ytd_usd"] = (trading_y.get(book, 0.0) + comm_y.get(book, 0.0)
                                  + (fees_y[book]["REVENUE_FEES"] if book in fees_y else 0.0))
        top = sorted((r for r in rows if r[1]["market_pnl_usd"] != 0), key=lambda x: (-abs(x[1]["market_pnl_usd"]), x[0]))[:5]
        e["top_instruments"] = [i for i, _ in top]
        out[book] = e
    return out


# --------------------------------------------------------------------------------------------
# §8.3
# --------------------------------------------------------------------------------------------
def stale_days(f: Delivered, instrument: str, as_of: str) -> int:
    days = [as_of]
    while len(days) < STALE_WINDOW:
        days.append(f.previous_business_day(days[-1], as_of))
    closes = [f.close_on(instrument, d, as_of) for d in days]
    n = 0
    while n < STALE_WINDOW - 1 and closes[n] is not None and closes[n] == closes[n + 1]:
        n += 1
    return n


def expected_ipv(f: Delivered, as_of: str) -> dict[str, dict]:
    """instrument -> the row of ipv_results (DOMAIN §8.3)."""
    held: dict[str, list[float]] = defaultdict(list)
    for (_, i, _), q in f.custody(as_of, "BOOK").items():
        held[i].append(q)
    inst = f.instruments(as_of)
    ipv = {}
    for r in f.rows(as_of, "ipv_prices"):
        if r["price_date"] <= as_of and (r["instrument_id"] not in ipv or r["price_date"] > ipv[r["instrument_id"]]["price_date"]):
            ipv[r["instrument_id"]] = r
    stale_limit = float(f.param("STALE_PRICE_DAYS", "ALL", as_of))
    out = {}
    for i, qs in held.items():
        ac, ccy = inst[i]["asset_class"], inst[i]["currency"]
        fo, fx = f.close_on(i, as_of, as_of), f.rate_on(ccy, as_of, as_of)
        tol = float(f.param("IPV_TOLERANCE_PCT", ac, as_of))
        price = float(ipv[i]["price"]) if i in ipv else None
        diff = None if price is None else fo / price - 1
        status = "NO_IPV_PRICE" if diff is None else "BREACH" if abs(diff) > tol else "WITHIN"
        s = stale_days(f, i, as_of)
        out[i] = {"fo_price": fo, "ipv_price": price, "diff_pct": diff, "tolerance": tol, "status": status,
                  "stale_days": s, "stale": s >= stale_limit,
                  "gross_mv_usd": sum(abs(q * fo * fx) for q in qs),
                  "adjustment_usd": sum(qs) * (price - fo) * fx if status == "BREACH" else 0.0}
    return out


# --------------------------------------------------------------------------------------------
# §8.4
# --------------------------------------------------------------------------------------------
def latest_settled(f: Delivered, known_on: str, ids: set[str]) -> dict[str, dict]:
    out = {}
    for d in f.upto(known_on):
        for s in f.rows(d, "settlements"):
            if s["settlement_id"] in ids:
                out[s["settlement_id"]] = s
    return out


def expected_position_recon(f: Delivered, as_of: str) -> dict[tuple[str, str, str], dict]:
    """(client_key, instrument, custodian) -> the row of position_recon (DOMAIN §8.4)."""
    p = f.previous_business_day(as_of)
    before = f.custody(p, "CLIENT")
    today = f.custody(as_of, "CLIENT")
    moved = {s["settlement_id"] for d in f.dates if p < d <= as_of for s in f.rows(d, "settlements")}
    now, then = latest_settled(f, as_of, moved), latest_settled(f, p, moved)
    trades = f.current_trades(as_of)
    change: dict[tuple, float] = defaultdict(float)
    count: dict[tuple, int] = defaultdict(int)
    for sid, s in now.items():
        t = trades.get(s["trade_id"])
        if t is None:
            continue
        delta = float(s["settled_quantity"]) - (float(then[sid]["settled_quantity"]) if sid in then else 0.0)
        key = (t["client_id"], t["instrument_id"], s["custodian"])
        change[key] += delta if t["side"] == "BUY" else -delta
        count[key] += delta != 0
    tolerance = float(f.param("POSITION_TOLERANCE", "ALL", as_of))
    out = {}
    for key in set(before or {}) | set(today) | set(change):
        qp = (before or {}).get(key)
        qd = today.get(key)
        expected = (qp or 0.0) + change.get(key, 0.0)
        diff = (qd or 0.0) - expected
        if not before or (qp is None and count.get(key, 0) == 0 and qd is not None):
            status = "NO_PRIOR"
        else:
            status = "MATCHED" if abs(diff) <= tolerance else "BREAK"
        out[(client_key(key[0]), key[1], key[2])] = {
            "client_id": key[0], "previous_quantity": qp or 0.0, "settled_change": change.get(key, 0.0),
            "expected_quantity": expected, "actual_quantity": qd or 0.0, "difference": diff, "status": status}
    return out


# --------------------------------------------------------------------------------------------
# §12 cost_income: trading P&L in revenue, support costs allocated
# --------------------------------------------------------------------------------------------
def allocated_expense(f: Delivered, as_of: str, start: str, books: list[str],
                      direct: dict[str, float], revenue: dict[str, float]) -> dict[str, float]:
    """book -> the support functions' expense allocated to it by their ALLOCATION_KEY."""
    _, trades = commissions(f, as_of, start, as_of)
    bases = {"TRADES": {b: float(trades.get(b, 0)) for b in books},
             "REVENUE": {b: max(revenue.get(b, 0.0), 0.0) for b in books}}
    out = {b: 0.0 for b in books}
    for sf in SUPPORT_FUNCTIONS:
        base = bases[f.param("ALLOCATION_KEY", sf, as_of)]
        total = sum(base.values())
        for b in books:
            if total > 0:
                out[b] += direct.get(sf, 0.0) * base[b] / total
    return out
