"""The cost and revenue marts (cost_income, client_profitability, campaign_performance) in plain
Python from the delivered files.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

from oracles.clients import (
    SUPPORT_FUNCTIONS, all_scope_parameter, client_key, current_trades, fx_as_known, landing_dates, rate_on, read_clients, read_csv,
)


EXPENSES = ("STAFF", "TECHNOLOGY", "MARKET_DATA", "PREMISES", "MARKETING", "OTHER_EXPENSE", "CLIENT_ACTIVITY")


CATEGORY_COLUMN = {"COMMISSION": "commission_usd", "REVENUE_FEES": "fee_revenue_usd", "STAFF": "staff_usd",
                   "TECHNOLOGY": "technology_usd", "MARKET_DATA": "market_data_usd", "PREMISES": "premises_usd",
                   "MARKETING": "marketing_usd", "OTHER_EXPENSE": "other_expense_usd",
                   "CLIENT_ACTIVITY": "client_activity_usd"}


def delivered(landing: Path, feed_file: str, as_of: str) -> list[dict]:
    return [r for day in landing_dates(landing) if day <= as_of for r in read_csv(landing / day / feed_file)]


def live_trades(landing: Path, as_of: str, start: str) -> list[dict]:
    """Current versions (as of the date), not cancelled, dated from start to the date."""
    return [t for t in current_trades(landing, as_of).values()
            if t["event_type"] != "CANCEL" and start <= t["trade_date"] <= as_of]


def month_start(as_of: str) -> str:
    return as_of[:8] + "01"


# --------------------------------------------------------------------------------------------
# expected marts
# --------------------------------------------------------------------------------------------
def expected_cost_income(landing: Path, as_of: str) -> dict[tuple[str, str], dict]:
    """(period, cost center) -> the row of cost_income, with DOMAIN §12: a book's revenue adds its
    trading P&L (tests/oracles/product_control.py), the support functions' expense is allocated to
    the books by their ALLOCATION_KEY, FIRM's expense is what was charged."""
    from oracles.product_control import delivered_once, allocated_expense, trading_pnl

    files = delivered_once(landing)
    fx = fx_as_known(landing, as_of)
    books = [b["book"] for b in read_csv(landing / max(d for d in landing_dates(landing) if d <= as_of) / "books.csv")]
    out = {}
    for period, start in (("MTD", month_start(as_of)), ("YTD", as_of[:5] + "01-01")):
        amounts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for t in live_trades(landing, as_of, start):
            amounts[t["book"]]["COMMISSION"] += float(t["commission"]) * rate_on(fx, t["currency"], t["trade_date"])
        for g in delivered(landing, "gl_entries.csv", as_of):
            if start <= g["posting_date"]:
                amounts[g["cost_center"]][g["category"]] += float(g["amount"]) * rate_on(fx, g["currency"], g["posting_date"])
        for a in delivered(landing, "client_activity.csv", as_of):
            if start <= a["activity_date"]:
                amounts["SALES"]["CLIENT_ACTIVITY"] += float(a["cost_usd"])
        for book, pnl in trading_pnl(files, as_of, start).items():
            amounts[book]["TRADING"] += pnl
        centers = set(books) | set(SUPPORT_FUNCTIONS) | set(amounts)
        firm: dict[str, float] = defaultdict(float)
        for cc in centers:
            for cat, v in amounts[cc].items():
                firm[cat] += v
        revenue = {cc: amounts[cc]["COMMISSION"] + amounts[cc]["REVENUE_FEES"] + amounts[cc]["TRADING"] for cc in centers}
        direct = {cc: sum(amounts[cc][c] for c in EXPENSES) for cc in centers}
        allocated = allocated_expense(files, as_of, start, books, direct, revenue)
        for cc, by_cat in [(c, amounts[c]) for c in centers] + [("FIRM", firm)]:
            rev = by_cat["COMMISSION"] + by_cat["REVENUE_FEES"] + by_cat["TRADING"]
            own = sum(by_cat[c] for c in EXPENSES)
            extra = allocated.get(cc, 0.0) if cc != "FIRM" else 0.0
            row = {CATEGORY_COLUMN[c]: by_cat[c] for c in CATEGORY_COLUMN}
            row.update(period_start=start, revenue_usd=rev, trading_pnl_usd=by_cat["TRADING"], direct_expense_usd=own,
                       allocated_expense_usd=extra, expense_usd=own + extra,
                       cost_to_income=(own + extra) / rev if rev > 0 else None)
            out[(period, cc)] = row
    return out


def expected_profitability(landing: Path, as_of: str) -> dict[str, dict]:
    """client_key -> figures, for the clients with a live trade or a touch in the month."""
    fx = fx_as_known(landing, as_of)
    start = month_start(as_of)
    profile = {c["client_id"]: c for c in read_clients(landing, as_of)}
    out: dict[str, dict] = {}

    def client(cid: str) -> dict:
        return out.setdefault(client_key(cid), {"segment": profile[cid]["segment"],
                                                 "relationship_manager_id": profile[cid]["relationship_manager_id"],
                                                 "revenue_usd": 0.0, "activity_cost_usd": 0.0, "trades": 0})
    for t in live_trades(landing, as_of, start):
        c = client(t["client_id"])
        c["revenue_usd"] += float(t["commission"]) * rate_on(fx, t["currency"], t["trade_date"])
        c["trades"] += 1
    for a in delivered(landing, "client_activity.csv", as_of):
        if start <= a["activity_date"]:
            client(a["client_id"])["activity_cost_usd"] += float(a["cost_usd"])
    for c in out.values():
        c["contribution_usd"] = c["revenue_usd"] - c["activity_cost_usd"]
    return out


def was_active(trades: list[dict], first_deal: str, lookback_days: int) -> bool:
    """A live trade dated in the look-back days before the client's first deal (DOMAIN §12)."""
    since = (date.fromisoformat(first_deal) - timedelta(days=lookback_days)).isoformat()
    return any(since <= t["trade_date"] < first_deal for t in trades)


def expected_campaigns(landing: Path, as_of: str) -> dict[tuple[str, str], dict]:
    """(campaign, month) -> figures, for the months still open on the date (up to 30 days after).
    A converted client's revenue is new (revenue_usd) unless it had a live trade in the
    CAMPAIGN_LOOKBACK_DAYS before its first deal of the campaign-month (revenue_existing_usd)."""
    on = date.fromisoformat(as_of)
    first_month = (on - timedelta(days=30)).replace(day=1).isoformat()
    lookback_days = int(all_scope_parameter(landing, as_of, "CAMPAIGN_LOOKBACK_DAYS"))
    fx = fx_as_known(landing, as_of)
    trades_by_client: dict[str, list[dict]] = defaultdict(list)
    for t in current_trades(landing, as_of).values():
        if t["event_type"] != "CANCEL":
            trades_by_client[t["client_id"]].append(t)
    groups: dict[tuple[str, str], dict] = {}
    deals: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for a in delivered(landing, "client_activity.csv", as_of):
        if a["campaign_id"] is None or a["activity_date"] < first_month:
            continue
        key = (a["campaign_id"], month_start(a["activity_date"]))
        g = groups.setdefault(key, {"touches": 0, "cost_usd": 0.0, "leads": 0, "deals": 0, "revenue_usd": 0.0,
                                    "revenue_existing_usd": 0.0})
        g["touches"] += 1
        g["cost_usd"] += float(a["cost_usd"])
        g["leads"] += a["outcome"] == "LEAD"
        g["deals"] += a["outcome"] == "DEAL"
        if a["outcome"] == "DEAL":
            deals[key + (a["client_id"],)].append(a["activity_date"])
    for (campaign, month, client_id), days in deals.items():
        window_start = min(days)
        window_end = (date.fromisoformat(max(days)) + timedelta(days=30)).isoformat()
        trades = trades_by_client[client_id]
        column = "revenue_existing_usd" if was_active(trades, window_start, lookback_days) else "revenue_usd"
        groups[(campaign, month)][column] += sum(
            float(t["commission"]) * rate_on(fx, t["currency"], t["trade_date"])
            for t in trades if window_start <= t["trade_date"] <= window_end)
    for (campaign, month), g in groups.items():
        g["converted_clients"] = len({c for (cp, m, c) in deals if (cp, m) == (campaign, month)})
        g["conversion_rate"] = g["deals"] / g["touches"]
        g["cost_per_deal"] = g["cost_usd"] / g["deals"] if g["deals"] else None
    return groups
