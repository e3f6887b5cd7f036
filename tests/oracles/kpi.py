"""kpi_daily and kpi_targets in plain Python from the delivered files (the reconciliation and
settlement figures through the recon oracle).
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np

from midoffice import calendar

from oracles.clients import targets_in_force
from oracles.recon import BREAKS, efficiency_oracle, read_csv, usd_rates
from oracles.risk2 import NEW_METRICS, independent_measure


GL_EXPENSES = {"STAFF", "TECHNOLOGY", "MARKET_DATA", "PREMISES", "MARKETING", "OTHER_EXPENSE"}


# --- market data and holdings from the files ------------------------------------------------------

class Files:
    """The landing files of one sample, read once."""

    def __init__(self, landing: Path):
        import pyarrow.parquet as pq

        self.landing = landing
        self.dates = sorted(p.name for p in landing.iterdir() if p.is_dir())
        self.closes: dict[tuple[str, str], float] = {}   # (price_date, instrument) -> close; later delivery wins
        self.rates: dict[tuple[str, str], float] = {}    # (rate_date, currency) -> usd_per_unit
        for d in self.dates:
            for row in pq.read_table(landing / d / "prices.parquet").to_pylist():
                self.closes[(str(row["price_date"]), row["instrument_id"])] = row["close_price"]
            for row in read_csv(landing / d / "fx_rates.csv"):
                self.rates[(row["rate_date"], row["currency"])] = float(row["usd_per_unit"])

    @lru_cache(maxsize=None)
    def instruments(self, as_of: str) -> dict[str, dict]:
        return {r["instrument_id"]: r for r in read_csv(self.landing / as_of / "instruments.csv")}

    @lru_cache(maxsize=None)
    def clients(self, as_of: str) -> dict[str, dict]:
        with (self.landing / as_of / "clients.jsonl").open(encoding="utf-8") as fh:
            return {c["client_id"]: c for c in map(json.loads, fh)}

    @lru_cache(maxsize=None)
    def usd(self, as_of: str) -> dict[str, float]:
        return usd_rates(self.landing, as_of)

    @lru_cache(maxsize=None)
    def rate_on(self, day: str, currency: str) -> float:
        """usd_per_unit of the latest rate date on or before the day."""
        return max((rd, v) for (rd, c), v in self.rates.items() if c == currency and rd <= day)[1]

    @lru_cache(maxsize=None)
    def holdings(self, as_of: str) -> dict[tuple[str, str, str], float]:
        """(holder_type, holder_id, instrument) -> market value in USD (quantity summed over custodians)."""
        qty: dict[tuple, float] = defaultdict(float)
        for row in read_csv(self.landing / as_of / "positions.csv"):
            qty[(row["holder_type"], row["holder_id"], row["instrument_id"])] += float(row["quantity"])
        inst, fx = self.instruments(as_of), self.usd(as_of)
        latest = {}
        for (pd, i), v in self.closes.items():
            if pd <= as_of and (i not in latest or pd > latest[i][0]):
                latest[i] = (pd, v)
        return {k: q * latest[k[2]][1] * fx[inst[k[2]]["currency"]] for k, q in qty.items()}


def book_holdings(files: Files, as_of: str) -> dict[tuple[str, str], float]:
    return {(h, i): mv for (t, h, i), mv in files.holdings(as_of).items() if t == "BOOK"}


@lru_cache(maxsize=None)
def scenario_returns(files: Files, as_of: str, scenarios: int = 250) -> tuple[list[str], np.ndarray]:
    """Instruments, and their USD returns on the N business dates up to as_of (N × instruments)."""
    holidays = calendar.landing_holidays(files.landing, date.fromisoformat(as_of))
    days = [calendar.add_business_days(date.fromisoformat(as_of), -k, holidays).isoformat()
            for k in range(scenarios, -1, -1)]
    currency = {i: r["currency"] for i, r in files.instruments(as_of).items()}
    names = sorted(currency)
    usd = np.array([[files.closes[(day, i)] * files.rates[(day, currency[i])] for i in names] for day in days])
    return names, usd[1:] / usd[:-1] - 1


def var_99(files: Files, as_of: str, by_instrument: dict[str, float], scenarios: int = 250) -> float:
    """Historical simulation (DOMAIN §4.1): minus the k-th worst P&L of today's holdings, k = ceil(1 % × N)."""
    names, returns = scenario_returns(files, as_of, scenarios)
    pnl = returns @ np.array([by_instrument.get(i, 0.0) for i in names])
    k = math.ceil((1 - 0.99) * scenarios)
    return -float(np.sort(pnl)[k - 1])


@lru_cache(maxsize=None)
def _feeds(landing):
    from oracles.risk import Feeds

    return Feeds(landing)


def limit_statuses(files: Files, as_of: str) -> dict[str, str]:
    """limit_id -> OK / WARNING / BREACH / NOT_APPLICABLE, per DOMAIN §4.1."""
    inst = files.instruments(as_of)
    books = book_holdings(files, as_of)
    attribute = {"BOOK": lambda b, i: b, "ISSUER": lambda b, i: inst[i]["issuer_id"],
                 "COUNTRY": lambda b, i: inst[i]["issuer_country"], "ASSET_CLASS": lambda b, i: inst[i]["asset_class"],
                 "FIRM": lambda b, i: "ALL"}
    total_gross = sum(abs(v) for v in books.values())
    statuses = {}
    for lim in read_csv(files.landing / as_of / "limits.csv"):
        scope, member, metric = lim["scope_type"], lim["scope_id"], lim["metric"]
        if scope == "CLIENT":
            values = [mv for (t, h, i), mv in files.holdings(as_of).items() if t == "CLIENT" and h == member]
        else:
            values = [mv for (b, i), mv in books.items() if attribute[scope](b, i) == member]
        if metric == "GROSS_EXPOSURE":
            utilisation = sum(abs(v) for v in values) / float(lim["limit_value"])
        elif metric == "NET_EXPOSURE":
            utilisation = abs(sum(values)) / float(lim["limit_value"])
        elif metric == "VAR_99" and scope in ("FIRM", "BOOK"):
            per_inst: dict[str, float] = defaultdict(float)
            for (b, i), mv in books.items():
                if scope == "FIRM" or b == member:
                    per_inst[i] += mv
            utilisation = var_99(files, as_of, per_inst) / float(lim["limit_value"])
        elif metric == "CONCENTRATION_SHARE" and scope in ("BOOK", "ISSUER", "COUNTRY", "ASSET_CLASS"):
            utilisation = sum(abs(v) for v in values) / total_gross / float(lim["limit_value"])
        elif metric in NEW_METRICS and (measured := independent_measure(_feeds(files.landing), as_of, scope, member,
                                                                          metric)) is not None:
            utilisation = abs(measured) / float(lim["limit_value"])  # DOMAIN §11's measures (oracles/risk2.py)
        else:
            statuses[lim["limit_id"]] = "NOT_APPLICABLE"
            continue
        warning = float(lim["warning_pct"]) if lim["warning_pct"] else 0.8
        statuses[lim["limit_id"]] = "BREACH" if utilisation > 1 else "WARNING" if utilisation >= warning else "OK"
    return statuses


# --- revenue and cost --------------------------------------------------------------------------

@lru_cache(maxsize=None)
def month_to_date(files: Files, as_of: str) -> dict[str, dict[str, float]]:
    """cost_center -> revenue_usd, expense_usd month to date as known on as_of; FIRM = all together."""
    start = as_of[:8] + "01"
    current: dict[str, tuple] = {}
    for d in files.dates:
        if d > as_of:
            break
        for row in read_csv(files.landing / d / "trades.csv"):
            key = (int(row["version"]), d)
            if row["trade_id"] not in current or key > current[row["trade_id"]][0]:
                current[row["trade_id"]] = (key, row)
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"revenue_usd": 0.0, "expense_usd": 0.0})
    for _, t in current.values():
        if t["event_type"] != "CANCEL" and start <= t["trade_date"] <= as_of:
            out[t["book"]]["revenue_usd"] += float(t["commission"]) * files.rate_on(t["trade_date"], t["currency"])
    for d in files.dates:
        if d > as_of:
            break
        for e in read_csv(files.landing / d / "gl_entries.csv"):
            if start <= e["posting_date"] <= as_of:
                usd = float(e["amount"]) * files.rate_on(e["posting_date"], e["currency"])
                kind = "revenue_usd" if e["category"] == "REVENUE_FEES" else "expense_usd"
                assert e["category"] == "REVENUE_FEES" or e["category"] in GL_EXPENSES
                out[e["cost_center"]][kind] += usd
        for a in read_csv(files.landing / d / "client_activity.csv"):
            if start <= a["activity_date"] <= as_of:
                out["SALES"]["expense_usd"] += float(a["cost_usd"])
    # DOMAIN §12: the books' trading P&L is revenue; the support functions' expense is allocated
    # to the books (their ALLOCATION_KEY); FIRM's expense is what was charged
    from oracles.product_control import delivered_once, allocated_expense, trading_pnl

    delivered = delivered_once(files.landing)
    for book, pnl in trading_pnl(delivered, as_of, start).items():
        out[book]["revenue_usd"] += pnl
    books = [b["book"] for b in read_csv(files.landing / as_of / "books.csv")]
    direct = {cc: v["expense_usd"] for cc, v in out.items()}
    allocated = allocated_expense(delivered, as_of, start, books, direct,
                                  {cc: v["revenue_usd"] for cc, v in out.items()})
    firm = {"revenue_usd": sum(v["revenue_usd"] for v in out.values()),
            "expense_usd": sum(direct.values())}
    for book, extra in allocated.items():
        out[book]["expense_usd"] += extra
    return dict(out, FIRM=firm)


def cost_to_income(cell: dict[str, float] | None) -> float | None:
    """Null when there is no revenue or a loss (DOMAIN §12)."""
    return cell["expense_usd"] / cell["revenue_usd"] if cell and cell["revenue_usd"] > 0 else None


# --- the expected page --------------------------------------------------------------------------

def manifest_feeds_complete(landing: Path, as_of: str) -> int:
    """Feeds whose file matches the manifest (present, checksum, record count): a clean sample passes all."""
    import hashlib

    manifest = json.loads((landing / as_of / "_manifest.json").read_text())
    ok = 0
    for entry in manifest["feeds"].values():
        path = landing / as_of / entry["file"]
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]:
            ok += 1
    return ok


def expected_kpis(sample: dict, as_of: str) -> dict:
    if as_of not in sample["kpis"]:
        sample["kpis"][as_of] = _expected_kpis(sample, as_of)
    return sample["kpis"][as_of]


def _expected_kpis(sample: dict, as_of: str) -> dict:
    files, recon = sample["files"], sample["recon"][as_of]
    books = book_holdings(files, as_of)
    firm_by_instrument: dict[str, float] = defaultdict(float)
    for (_, i), mv in books.items():
        firm_by_instrument[i] += mv
    limits = limit_statuses(files, as_of)
    efficiency = efficiency_oracle(files.landing, as_of)
    mtd = month_to_date(files, as_of)
    return {
        "firm_gross_exposure_usd": sum(abs(v) for v in books.values()),
        "firm_net_exposure_usd": sum(books.values()),
        "firm_var_99_usd": var_99(files, as_of, firm_by_instrument),
        "limits_warning": sum(s == "WARNING" for s in limits.values()),
        "limits_breach": sum(s == "BREACH" for s in limits.values()),
        "recon_trades": len(recon),
        "recon_matched": sum(r["status"] == "MATCHED" for r in recon.values()),
        # DOMAIN §12: trades awaiting the back office are not the desk's failure
        "recon_match_rate": sum(r["status"] == "MATCHED" for r in recon.values())
        / sum(r["status"] != "AWAITING_BO" for r in recon.values()),
        "open_breaks": sum(r["status"] in BREAKS for r in recon.values()),
        "breaks_over_5bd": sum((r["age_bd"] or 0) > 5 for r in recon.values()),
        "settlements_due": sum(g["due"] for g in efficiency.values()),
        "settlement_efficiency": sum(g["settled_on_time"] for g in efficiency.values())
        / sum(g["due"] for g in efficiency.values()),
        "settlement_efficiency_value": sum(g["settled_on_time_amount_usd"] for g in efficiency.values())
        / sum(g["due_amount_usd"] for g in efficiency.values()),
        "active_clients": sum(c["status"] == "ACTIVE" for c in files.clients(as_of).values()),
        "revenue_mtd_usd": mtd["FIRM"]["revenue_usd"],
        "cost_to_income_mtd": cost_to_income(mtd["FIRM"]),
        "feeds_passed": manifest_feeds_complete(files.landing, as_of),
        "feeds_total": len(json.loads((files.landing / as_of / "_manifest.json").read_text())["feeds"]),
        "quarantined_rows": quarantined_expected(files.landing, as_of),
        **firm_backtest(sample, as_of),
        **ipv_kpis(files.landing, as_of),
        **product_control_kpis(files.landing, as_of),
    }


def product_control_kpis(landing: Path, as_of: str) -> dict:
    """The firm's P&L, P&L breaks and position breaks (DOMAIN §8.2, §8.4) from their oracles."""
    from oracles.product_control import delivered_once, expected_pnl_book, expected_position_recon

    delivered = delivered_once(landing)
    books = expected_pnl_book(delivered, as_of)
    return {"firm_pnl_usd": sum(b["total_pnl_usd"] for b in books.values()),
            "firm_pnl_mtd_usd": sum(b["total_pnl_mtd_usd"] for b in books.values()),
            "pnl_breaks": sum(bool(b["pnl_break"]) for b in books.values()),
            "pnl_reports_missing": sum(b["report_missing"] for b in books.values()),
            "position_breaks": sum(r["status"] == "BREAK" for r in expected_position_recon(delivered, as_of).values())}


def ipv_kpis(landing: Path, as_of: str) -> dict:
    """The IPV KPIs (DOMAIN §8.3) from the independent price oracle."""
    from oracles.product_control import delivered_once, expected_ipv

    rows = expected_ipv(delivered_once(landing), as_of).values()
    gross = sum(r["gross_mv_usd"] for r in rows)
    return {"ipv_coverage": sum(r["gross_mv_usd"] for r in rows if r["ipv_price"] is not None) / gross,
            "ipv_breaches": sum(r["status"] == "BREACH" for r in rows),
            "stale_prices": sum(r["stale"] for r in rows),
            "ipv_adjustment_usd": float(sum(r["adjustment_usd"] for r in rows))}


def quarantined_expected(landing, as_of: str) -> int:
    """A delivery without injected faults (no _faults.json) quarantines nothing: every record the
    generator writes satisfies the contract (tests/test_generate.py)."""
    if (landing / "_faults.json").exists():
        raise NotImplementedError("the KPI oracle knows the quarantine of clean deliveries only")
    return 0


def firm_backtest(sample: dict, as_of: str) -> dict:
    """The FIRM backtest's zone and exceptions, from the risk oracle's independent backtest."""
    from oracles.risk import Feeds, independent_backtest

    if "backtest" not in sample:
        sample["backtest"] = independent_backtest(Feeds(sample["files"].landing), sample["dates"], 250)
    row = sample["backtest"].get((as_of, "FIRM"))
    return {"var_backtest_zone": row and row["zone"], "var_backtest_exceptions": row and row["exceptions_250"],
            "var_backtest_observations": row and row["observations"]}


def expected_targets(sample: dict, as_of: str, kpi: dict) -> dict[str, dict]:
    files = sample["files"]
    clients = files.clients(as_of)
    active = [c for c in clients.values() if c["status"] == "ACTIVE"]
    instruments = files.instruments(as_of)
    per_client: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (t, h, i), mv in files.holdings(as_of).items():
        if t == "CLIENT":
            per_client[h][i] += abs(mv)
    hhi_by_profile: dict[str, list[float]] = defaultdict(list)
    for cid, values in per_client.items():
        total = sum(values.values())
        if total > 0:  # a fund counts as diversified: its share² times the UCITS 5/10/40 bound, 0.07
            weight = {i: (4 * 0.10 ** 2 + 12 * 0.05 ** 2) if instruments[i]["asset_class"] == "FUND" else 1.0
                      for i in values}
            hhi_by_profile[clients[cid]["risk_profile"]].append(
                sum((v / total) ** 2 * weight[i] for i, v in values.items()))
    mtd = month_to_date(files, as_of)
    match_rate_by_book: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in sample["recon"][as_of].values():
        book = match_rate_by_book[r["book"] or "NO_FO_TRADE"]
        book[0] += r["status"] == "MATCHED"
        book[1] += r["status"] != "AWAITING_BO"
    out = {}
    for t in targets_in_force(read_csv(files.landing / as_of / "targets.csv"), as_of).values():
        metric, scope = t["metric"], t["scope_id"]
        if metric == "CLIENT_HHI_MAX":
            actual = statistics.median(hhi_by_profile[scope]) if hhi_by_profile.get(scope) else None
        elif metric in ("SEGMENT_SHARE_MIN", "SEGMENT_SHARE_MAX"):
            actual = sum(c["segment"] == scope for c in active) / len(active)
        elif metric == "COST_TO_INCOME_MAX":
            actual = cost_to_income(mtd.get("FIRM" if scope == "ALL" else scope))
        elif metric == "SETTLEMENT_EFFICIENCY_MIN":
            actual = kpi["settlement_efficiency"] if scope == "ALL" else None
        elif metric == "RECON_MATCH_RATE_MIN":
            actual = kpi["recon_match_rate"] if scope == "ALL" else (
                match_rate_by_book[scope][0] / match_rate_by_book[scope][1] if scope in match_rate_by_book else None)
        else:
            actual = kpi["active_clients"] if scope == "ALL" else None
        target = float(t["target_value"])
        met = None if actual is None else (actual <= target if metric.endswith("_MAX") else actual >= target)
        way = t["final"] - t["baseline"]
        out[t["target_id"]] = {"metric": metric, "scope_id": scope, "actual": actual, "target_value": target, "met": met,
                               "effective_date": t["effective_date"], "final_target_value": t["final"],
                               "next_milestone_value": t["next_value"], "next_milestone_date": t["next_date"],
                               "progress": (actual - t["baseline"]) / way if way and actual is not None else None}
    return out


def near(a: float, b: float) -> bool:
    """Too close to a threshold for a float comparison to decide (never in practice)."""
    return a is not None and abs(a - b) <= 1e-9 * max(1.0, abs(b))
