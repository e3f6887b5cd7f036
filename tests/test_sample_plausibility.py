"""The sample firm is plausible (issue 24 item 6; calibration in midoffice/sample/product_control.py).

A month of generated feeds, measured from the files alone (numpy and plain Python, no pipeline):
the 99 % one-day VaR is 0.5-3 % of gross exposure; the firm's daily market P&L is within ±VaR
on most days (at most a few exceptions); the firm's cost-to-income over the month is between
50 % and 90 % (revenue = commissions + fees + trading P&L, DOMAIN §12); no client holds 20 % or
more of client assets; the desks' reports match the feeds' P&L within tolerance; independent
prices stay within tolerance; client custody moves exactly by what settles.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import generate_landing
from oracles.cost_income import expected_cost_income
from oracles.product_control import Delivered, expected_ipv, expected_pnl_book, expected_position_recon

START, DAYS, TRADES = "2026-03-02", 21, 600


def _csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def measure(landing: Path) -> dict:
    """The month's figures a risk manager would look at first, from the delivered files."""
    dates = sorted(p.name for p in landing.iterdir() if p.is_dir())
    instruments = {r["instrument_id"]: r for r in _csv(landing / dates[-1] / "instruments.csv")}
    names = sorted(instruments)
    col = {n: k for k, n in enumerate(names)}
    closes, rates = {}, {}
    for d in dates:
        t = pq.read_table(landing / d / "prices.parquet").to_pydict()
        for pd_, i, px in zip(t["price_date"], t["instrument_id"], t["close_price"]):
            closes[(str(pd_), i)] = px
        for r in _csv(landing / d / "fx_rates.csv"):
            rates[(r["rate_date"], r["currency"])] = float(r["usd_per_unit"])
    axis = sorted({pd_ for pd_, _ in closes})
    unit = np.array([[closes[(day, n)] * rates[(day, instruments[n]["currency"])] for n in names] for day in axis])
    returns = unit[1:] / unit[:-1] - 1
    at = {day: k for k, day in enumerate(axis)}

    def book_quantities(d: str) -> np.ndarray:
        q = np.zeros(len(names))
        for r in _csv(landing / d / "positions.csv"):
            if r["holder_type"] == "BOOK":
                q[col[r["instrument_id"]]] += float(r["quantity"])
        return q

    gross, var, pnl = {}, {}, {}
    previous = None
    for d in dates:
        q = book_quantities(d)
        mv = q * unit[at[d]]
        gross[d] = float(np.abs(mv).sum())
        scenarios = returns[at[d] - 250:at[d]] @ mv
        var[d] = -float(np.sort(scenarios)[math.ceil(0.01 * 250) - 1])
        if previous is not None:
            pnl[d] = float(previous[1] @ (unit[at[d]] - unit[at[previous[0]]]))
        previous = (d, q)
    exceptions = sum(-pnl[d] > var[p] for p, d in zip(dates, dates[1:]))
    clients: dict[str, float] = defaultdict(float)
    for r in _csv(landing / dates[-1] / "positions.csv"):
        if r["holder_type"] == "CLIENT":
            clients[r["holder_id"]] += abs(float(r["quantity"]) * unit[at[dates[-1]], col[r["instrument_id"]]])
    firm = expected_cost_income(landing, dates[-1])[("MTD", "FIRM")]
    return {"dates": dates, "gross": gross, "var": var, "pnl": pnl, "exceptions": exceptions,
            "var_share": [var[d] / gross[d] for d in dates], "cost_to_income": firm["cost_to_income"],
            "revenue": firm["revenue_usd"], "trading": firm["trading_pnl_usd"], "expense": firm["expense_usd"],
            "largest_client_share": max(clients.values()) / sum(clients.values())}


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    landing = generate_landing(tmp_path_factory.mktemp("month") / "landing", START, DAYS, TRADES, seed=42)
    return landing, measure(landing)


def test_var_is_a_plausible_share_of_gross_exposure(month):
    _, m = month
    assert all(0.005 <= s <= 0.03 for s in m["var_share"]), m["var_share"]


def test_daily_market_pnl_mostly_within_var(month):
    _, m = month
    assert m["exceptions"] <= 3, m["exceptions"]  # 99 % VaR: about 0.2 expected in 20 days
    assert any(v != 0 for v in m["pnl"].values())


def test_cost_to_income_over_the_month(month):
    _, m = month
    assert m["cost_to_income"] is not None and 0.5 <= m["cost_to_income"] <= 0.9, m


def test_no_client_holds_a_fifth_of_client_assets(month):
    _, m = month
    assert m["largest_client_share"] < 0.20, m["largest_client_share"]


def test_desks_ipv_and_custody_agree_on_clean_data(month):
    """Without --faults: no P&L break, no IPV breach or stale price, no position break."""
    landing, m = month
    files = Delivered(landing)
    for day in m["dates"][-3:]:
        assert not any(r["pnl_break"] for r in expected_pnl_book(files, day).values()), day
        ipv = expected_ipv(files, day).values()
        assert all(r["status"] != "BREACH" and not r["stale"] for r in ipv), day
        assert all(r["status"] != "BREAK" for r in expected_position_recon(files, day).values()), day
