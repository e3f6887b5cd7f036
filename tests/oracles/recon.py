"""The trade reconciliation and settlement efficiency (ops_trade_recon, ops_recon_summary,
ops_settlement_efficiency) replayed in plain Python over the delivered files.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

from midoffice import calendar


BREAKS = {"BO_ONLY", "FO_ONLY", "VERSION_BREAK", "QTY_BREAK", "AMOUNT_BREAK"}


# --- the oracle: plain Python over the delivered files -----------------------------------------

def read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def firm_holidays(landing: Path, as_of: str) -> frozenset:
    """FIRM holidays as the landing delivers them up to the date (midoffice.calendar counts)."""
    return calendar.landing_holidays(landing, date.fromisoformat(as_of))


def currency_holidays(landing: Path, as_of: str, currency: str) -> frozenset:
    """The currency's own holidays as delivered (FIRM's when it has none)."""
    found = _delivered_calendars(str(landing), as_of)
    return found.get(currency, found.get(calendar.FIRM, calendar.NO_HOLIDAYS))


@lru_cache(maxsize=256)
def _delivered_calendars(landing: str, as_of: str) -> dict[str, frozenset]:
    """The calendars as delivered up to the date (read once per landing and date: the oracles ask
    for them for every trade)."""
    path = calendar.latest_calendars_file(Path(landing), date.fromisoformat(as_of))
    return calendar.read_calendars(path) if path else {}


def business_days_between(start: str, end: str, holidays: frozenset = calendar.NO_HOLIDAYS) -> int:
    """Business days after start up to end: 0 when equal."""
    return calendar.business_days_between(date.fromisoformat(start), date.fromisoformat(end), holidays)


def business_days_before(day: str, n: int, holidays: frozenset = calendar.NO_HOLIDAYS) -> str:
    return calendar.add_business_days(date.fromisoformat(day), -n, holidays).isoformat()


def due_date(intended: str, holidays: frozenset) -> str:
    """A holiday of the settlement currency is not a due date: the next business day is."""
    day = date.fromisoformat(intended)
    return (day if calendar.is_business_day(day, holidays) else calendar.next_business_day(day, holidays)).isoformat()


def break_age(first_seen: str, as_of: str, holidays: frozenset) -> int:
    """Business days of the settlement currency's calendar in (first_seen, as_of], counted day by
    day: weekdays that are not its holidays (DOMAIN §7.1)."""
    start, end = date.fromisoformat(first_seen), date.fromisoformat(as_of)
    return sum(1 for n in range(1, (end - start).days + 1)
               if (day := start + timedelta(days=n)).weekday() < 5 and day not in holidays)


def age_bucket(age: int | None) -> str | None:
    if age is None:
        return None
    return "0-1" if age <= 1 else "2-5" if age <= 5 else "6-30" if age <= 30 else ">30"


def usd_rates(landing: Path, as_of: str) -> dict[str, float]:
    """Latest usd_per_unit per currency with rate_date on or before as_of (later delivery wins)."""
    best: dict[str, tuple] = {}
    for d in sorted(p.name for p in landing.iterdir() if p.is_dir() and p.name <= as_of):
        for row in read_csv(landing / d / "fx_rates.csv"):
            if row["rate_date"] <= as_of:
                key = (row["rate_date"], d)
                if row["currency"] not in best or key >= best[row["currency"]][0]:
                    best[row["currency"]] = (key, float(row["usd_per_unit"]))
    return {c: v for c, (_, v) in best.items()}


def recon_status(front: dict | None, back: dict | None, as_of: str, holidays: frozenset) -> str:
    front_live = front is not None and front["event_type"] != "CANCEL"
    back_live = back is not None and back["status"] != "CANCELLED"
    if back_live and not front_live:
        return "BO_ONLY"
    if front_live and not back_live:
        return "AWAITING_BO" if business_days_between(front["trade_date"], as_of, holidays) <= 1 else "FO_ONLY"
    if front_live:
        amount = float(front["quantity"]) * float(front["price"])
        if int(back["trade_version"]) != int(front["version"]):
            return "VERSION_BREAK"
        if float(back["quantity"]) != float(front["quantity"]):
            return "QTY_BREAK"
        if abs(amount - float(back["settlement_amount"])) > max(0.01, 1e-6 * abs(amount)):
            return "AMOUNT_BREAK"
    return "MATCHED"


def recon_history(landing: Path, dates: list[str]) -> dict[str, dict[str, dict]]:
    """{as_of: {trade_id: row}} for consecutive business dates, replayed from the first one."""
    front: dict[str, tuple] = {}        # trade_id -> ((version, delivered on), row)
    settlements: dict[str, dict] = {}   # settlement_id -> latest delivered row
    history: dict[str, dict[str, dict]] = {}
    yesterday: dict[str, dict] = {}
    for d in dates:
        for row in read_csv(landing / d / "trades.csv"):
            key = (int(row["version"]), d)
            if row["trade_id"] not in front or key > front[row["trade_id"]][0]:
                front[row["trade_id"]] = (key, row)
        for row in read_csv(landing / d / "settlements.csv"):
            settlements[row["settlement_id"]] = dict(row, delivered_on=d)
        of_trade: dict[str, list[dict]] = defaultdict(list)
        for s in settlements.values():
            of_trade[s["trade_id"]].append(s)
        holidays = firm_holidays(landing, d)
        window_start = business_days_before(d, 19, holidays)
        in_window = {tid for tid, (_, f) in front.items()
                     if window_start <= f["trade_date"] <= d
                     and not (f["event_type"] == "CANCEL" and tid not in of_trade)}
        in_window |= {s["trade_id"] for s in settlements.values()
                      if s["trade_id"] not in front and window_start <= s["intended_settle_date"] <= d}
        rates = usd_rates(landing, d)
        today = {}
        for tid in in_window:
            f = front[tid][1] if tid in front else None
            # the live instruction, else the latest cancelled one
            b = max(of_trade[tid], key=lambda s: (s["status"] != "CANCELLED", s["delivered_on"], s["settlement_id"])) \
                if tid in of_trade else None
            status = recon_status(f, b, d, holidays)
            first_seen = age = None
            if status in BREAKS:
                before = yesterday.get(tid)
                first_seen = before["first_seen_date"] if before and before["status"] in BREAKS else d
                settlement_currency = b["currency"] if b else f["currency"]
                age = break_age(first_seen, d, currency_holidays(landing, d, settlement_currency))
            amount = float(f["quantity"]) * float(f["price"]) if f else float(b["settlement_amount"])
            today[tid] = {
                "status": status, "book": f["book"] if f else None,
                "front_version": int(f["version"]) if f else None,
                "settlement_id": b["settlement_id"] if b else None,
                "back_version": int(b["trade_version"]) if b else None,
                "quantity_diff": float(f["quantity"]) - float(b["quantity"]) if f and b else None,
                "amount_diff": float(f["quantity"]) * float(f["price"]) - float(b["settlement_amount"]) if f and b else None,
                "notional_usd": amount * rates[f["currency"] if f else b["currency"]],
                "first_seen_date": first_seen, "age_bd": age, "age_bucket": age_bucket(age),
            }
        history[d] = today
        yesterday = today
    return history


def summary_oracle(rows: dict[str, dict]) -> dict[tuple, dict]:
    """(book, status, age_bucket) -> trades, notional_usd, match_rate, from one date's recon rows."""
    cells: dict[tuple, dict] = defaultdict(lambda: {"trades": 0, "notional_usd": 0.0})
    per_book: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows.values():
        book = r["book"] or "NO_FO_TRADE"
        cell = cells[(book, r["status"], r["age_bucket"] or "n/a")]
        cell["trades"] += 1
        cell["notional_usd"] += r["notional_usd"]
        per_book[book][0] += r["status"] != "AWAITING_BO"  # DOMAIN §12: not in the denominator
        per_book[book][1] += r["status"] == "MATCHED"
    return {k: dict(v, match_rate=per_book[k[0]][1] / per_book[k[0]][0] if per_book[k[0]][0] else None)
            for k, v in cells.items()}


def efficiency_oracle(landing: Path, as_of: str) -> dict[tuple, dict]:
    """(intended date, custodian, currency) -> efficiency figures known on as_of, from the files."""
    latest: dict[str, dict] = {}
    for d in sorted(p.name for p in landing.iterdir() if p.is_dir() and p.name <= as_of):
        for row in read_csv(landing / d / "settlements.csv"):
            latest[row["settlement_id"]] = row
    window_start = business_days_before(as_of, 19, firm_holidays(landing, as_of))
    rates = usd_rates(landing, as_of)
    groups: dict[tuple, dict] = defaultdict(lambda: Counter())
    fail_ages: dict[tuple, list[int]] = defaultdict(list)
    for s in latest.values():
        if s["status"] == "CANCELLED" or not window_start <= s["intended_settle_date"] <= as_of:
            continue
        key = (s["intended_settle_date"], s["custodian"], s["currency"])
        g = groups[key]
        amount = float(s["settlement_amount"])
        holidays = currency_holidays(landing, as_of, s["currency"])
        due = due_date(s["intended_settle_date"], holidays)
        on_time = s["status"] == "SETTLED" and s["actual_settle_date"] <= due
        g["due"] += 1
        g["due_amount"] += amount
        g["settled_on_time"] += on_time
        g["settled_on_time_amount"] += amount if on_time else 0.0
        g["settled_late"] += s["status"] == "SETTLED" and not on_time
        g["failed"] += s["status"] == "FAILED"
        g["partial"] += s["status"] == "PARTIAL"
        g["pending"] += s["status"] == "PENDING"
        if s["status"] == "FAILED":
            fail_ages[key].append(business_days_between(due, as_of, holidays))
    out = {}
    for key, g in groups.items():
        rate = rates[key[2]]
        out[key] = dict(g, efficiency_count=g["settled_on_time"] / g["due"],
                        efficiency_value=g["settled_on_time_amount"] / g["due_amount"],
                        due_amount_usd=g["due_amount"] * rate,
                        settled_on_time_amount_usd=g["settled_on_time_amount"] * rate,
                        avg_fail_age_bd=(sum(fail_ages[key]) / len(fail_ages[key])) if fail_ages[key] else None)
    return out
