"""Cost and revenue marts (DOMAIN §4.2): cost_income, client_profitability, campaign_performance
(and their ledgers revenue_daily, cost_income_daily).

Each figure is recomputed in plain Python (tests/oracles/cost_income.py) from the landing files:
a trade counts at its current version as of the date (highest delivered so far), a CANCEL
current version counts nothing; commissions convert with the fx of the trade date, GL amounts
with the fx of the posting date; amounts belong to the month of their own date. Runs: the shared
`sample_run` (8 January dates) and the month-end run of test_clients (5 dates across 31 January;
made once per session).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from oracles.clients import (
    SUPPORT_FUNCTIONS, all_scope_parameter, current_trades, fx_as_known, rate_on, read_csv,
)
from oracles.product_control import Delivered, trading_pnl
from oracles.cost_income import (
    delivered, live_trades, month_start, expected_cost_income, expected_profitability, expected_campaigns,
    was_active,
)
from test_clients import close, month_end_run, published, rows


# --------------------------------------------------------------------------------------------
# checks shared by both runs
# --------------------------------------------------------------------------------------------
def assert_cost_income(con, landing: Path, as_of: str) -> None:
    expected = expected_cost_income(landing, as_of)
    got = {(r["period"], r["cost_center"]): r for r in rows(con, "SELECT * FROM cost_income WHERE as_of_date = ?", [as_of])}
    assert set(got) == set(expected), (as_of, set(got) ^ set(expected))
    for key, e in expected.items():
        g = got[key]
        assert str(g["period_start"]) == e["period_start"]
        for col, v in e.items():
            if col != "period_start":
                assert close(g[col], v, abs_=1e-4), (as_of, key, col, g[col], v)


def assert_profitability(con, landing: Path, as_of: str) -> None:
    expected = expected_profitability(landing, as_of)
    got = {r["client_key"]: r for r in rows(con, "SELECT * FROM client_profitability WHERE as_of_date = ?", [as_of])}
    assert set(expected) <= set(got)
    for key, g in got.items():
        e = expected.get(key, {"revenue_usd": 0.0, "activity_cost_usd": 0.0, "trades": 0, "contribution_usd": 0.0,
                               "segment": g["segment"], "relationship_manager_id": g["relationship_manager_id"]})
        # (a client missing from the oracle is one whose only trade was cancelled)
        assert str(g["month"]) == month_start(as_of)
        assert g["segment"] == e["segment"] and g["trades"] == e["trades"], (as_of, key)
        assert g["relationship_manager_id"] == e["relationship_manager_id"], (as_of, key)
        for col in ("revenue_usd", "activity_cost_usd", "contribution_usd"):
            assert close(g[col], e[col], abs_=1e-4), (as_of, key, col, g[col], e[col])
        better = sum(1 for o in got.values() if o["segment"] == g["segment"] and o["contribution_usd"] > g["contribution_usd"])
        assert g["rank_in_segment"] == 1 + better


def assert_campaigns(con, landing: Path, as_of: str) -> None:
    expected = expected_campaigns(landing, as_of)
    got = {(r["campaign_id"], str(r["month"])): r
           for r in rows(con, "SELECT * FROM campaign_performance WHERE as_of_date = ?", [as_of])}
    assert set(got) == set(expected), as_of
    for key, e in expected.items():
        for col, v in e.items():
            assert close(got[key][col], v, abs_=1e-4), (as_of, key, col, got[key][col], v)


# --------------------------------------------------------------------------------------------
# the shared sample run
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample(sample_run):
    with published(sample_run["home"]) as con:
        yield sample_run, con


def test_cost_income_against_the_files(sample):
    run, con = sample
    for day in (run["dates"][0], run["dates"][3], run["dates"][-1]):
        assert_cost_income(con, run["landing"], day)


def test_firm_revenue_ties_to_commissions_fee_revenue_and_trading_pnl(sample):
    """FIRM revenue = commission of the month's live trades + REVENUE_FEES, each at its date's fx,
    + the books' trading P&L of the month (DOMAIN §12; oracles/product_control.py)."""
    run, con = sample
    files = Delivered(run["landing"])
    for day in run["dates"]:
        fx = fx_as_known(run["landing"], day)
        start = month_start(day)
        commissions = sum(float(t["commission"]) * rate_on(fx, t["currency"], t["trade_date"])
                          for t in live_trades(run["landing"], day, start))
        fees = sum(float(g["amount"]) * rate_on(fx, g["currency"], g["posting_date"])
                   for g in delivered(run["landing"], "gl_entries.csv", day)
                   if g["category"] == "REVENUE_FEES" and g["posting_date"] >= start)
        trading = sum(trading_pnl(files, day, start).values())
        firm = con.execute("SELECT revenue_usd, commission_usd FROM cost_income "
                           "WHERE as_of_date = ? AND period = 'MTD' AND cost_center = 'FIRM'", [day]).fetchone()
        assert close(firm[0], commissions + fees + trading, abs_=1e-2) and close(firm[1], commissions, abs_=1e-4), day
        # the books' rows add up to the FIRM row, and so do the clients' ledger rows
        books = con.execute("SELECT sum(revenue_usd) FROM cost_income WHERE as_of_date = ? AND period = 'MTD' "
                            "AND cost_center <> 'FIRM'", [day]).fetchone()[0]
        clients = con.execute("SELECT sum(revenue_change_usd) FROM revenue_daily WHERE dimension = 'CLIENT' "
                              "AND business_date <= ? AND trade_date >= ?", [day, start]).fetchone()[0]
        assert close(books, firm[0], abs_=1e-2) and close(clients, commissions, abs_=1e-4)


def test_cost_to_income_differs_by_desk(sample):
    run, con = sample
    got = con.execute("SELECT cost_center, cost_to_income, revenue_usd FROM cost_income WHERE as_of_date = ? "
                      "AND period = 'MTD'", [run["dates"][-1]]).fetchall()
    ratios = {c: r for c, r, _ in got}
    revenue = {c: v for c, _, v in got}
    books = {b["book"] for b in read_csv(run["landing"] / run["dates"][-1] / "books.csv")}
    # a ratio where the desk earned something, none where it lost (DOMAIN §12)
    assert all((ratios[b] is None) == (revenue[b] <= 0) for b in books)
    desk_ratios = [ratios[b] for b in books if ratios[b] is not None]
    assert len({round(r, 3) for r in desk_ratios}) == len(desk_ratios) >= 2
    assert all(ratios[f] is None for f in SUPPORT_FUNCTIONS)  # no revenue: no ratio


def test_client_profitability_against_the_files(sample):
    run, con = sample
    for day in (run["dates"][0], run["dates"][-1]):
        assert_profitability(con, run["landing"], day)


def test_campaign_performance_against_the_files(sample):
    run, con = sample
    for day in (run["dates"][2], run["dates"][-1]):
        assert_campaigns(con, run["landing"], day)
    converted = con.execute("SELECT count(*) FILTER (WHERE deals > 0 AND revenue_usd > 0), count(*) "
                            "FROM campaign_performance WHERE as_of_date = ?", [run["dates"][-1]]).fetchone()
    assert converted[0] >= 2  # campaigns convert, and converted clients trade


def test_a_deal_by_an_already_active_client_is_a_deal_but_not_new_revenue(sample):
    """DOMAIN §12: a client who traded in the CAMPAIGN_LOOKBACK_DAYS before its deal still makes a
    deal, but its revenue goes to revenue_existing_usd; a client without such a trade (the first
    date's deals: nothing was delivered before) brings new revenue."""
    run, con = sample
    day = run["dates"][-1]
    lookback = int(all_scope_parameter(run["landing"], day, "CAMPAIGN_LOOKBACK_DAYS"))
    trades: dict[str, list[dict]] = {}
    for t in current_trades(run["landing"], day).values():
        if t["event_type"] != "CANCEL":
            trades.setdefault(t["client_id"], []).append(t)
    first_deal: dict[tuple[str, str, str], str] = {}
    for a in delivered(run["landing"], "client_activity.csv", day):
        if a["outcome"] == "DEAL" and a["campaign_id"] is not None:
            key = (a["campaign_id"], month_start(a["activity_date"]), a["client_id"])
            first_deal[key] = min(first_deal.get(key, a["activity_date"]), a["activity_date"])
    active = {k for k, d in first_deal.items() if was_active(trades.get(k[2], []), d, lookback)}
    assert active and len(active) < len(first_deal)  # the sample has both kinds
    got = {(r["campaign_id"], str(r["month"])): r
           for r in rows(con, "SELECT * FROM campaign_performance WHERE as_of_date = ?", [day])}
    for campaign, month, client_id in active:
        row = got[(campaign, month)]
        assert row["deals"] >= 1 and row["converted_clients"] >= 1
        assert any(t["trade_date"] < first_deal[(campaign, month, client_id)] for t in trades[client_id]), client_id
    # every converted client's window revenue lands in exactly one of the two columns
    in_window = con.execute(
        "SELECT sum(revenue_usd + revenue_existing_usd) FROM campaign_performance WHERE as_of_date = ?", [day]).fetchone()[0]
    existing = sum(r["revenue_existing_usd"] for r in got.values())
    assert existing > 0 and in_window > existing


# --------------------------------------------------------------------------------------------
# across a month end
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def month_end(tmp_path_factory, airflow_home):
    return month_end_run(tmp_path_factory)


def test_month_to_date_restarts_and_year_to_date_carries_on(month_end):
    m = month_end
    with published(m["home"]) as con:
        for day in m["dates"]:
            assert_cost_income(con, m["landing"], day)
            assert_profitability(con, m["landing"], day)
        firm = {(str(d), p): v for d, p, v in con.execute(
            "SELECT as_of_date, period, revenue_usd FROM cost_income WHERE cost_center = 'FIRM'").fetchall()}
    assert firm[("2026-01-30", "MTD")] == pytest.approx(firm[("2026-01-30", "YTD")])
    assert firm[("2026-02-02", "MTD")] < firm[("2026-02-02", "YTD")]
    # late January items delivered in February count in the year, not in February
    late = [g for g in read_csv(m["landing"] / "2026-02-02" / "gl_entries.csv") if g["posting_date"] < "2026-02-01"]
    late += [t for t in read_csv(m["landing"] / "2026-02-02" / "trades.csv") if t["trade_date"] < "2026-02-01"]
    assert late


def test_campaign_months_stay_open_for_thirty_days(month_end):
    m = month_end
    with published(m["home"]) as con:
        for day in m["dates"]:
            assert_campaigns(con, m["landing"], day)
        months = {str(mo) for (mo,) in con.execute(
            "SELECT DISTINCT month FROM campaign_performance WHERE as_of_date = '2026-02-03'").fetchall()}
    assert months == {"2026-01-01", "2026-02-01"}
