"""Risk beyond VaR (DOMAIN §11) on generated data: every mart equals an independent computation in
plain Python over the delivered files (tests/oracles/risk2.py; bonds by QuantLib), never the
project's SQL: risk_sensitivities, fx_net_open_position, risk_stress, the stressed VaR of risk_var
(over exactly the 250 dates from SVAR_WINDOW_START), risk_liquidity and its profile; and what the
sample generator delivers for them (the stressed pre-history, the scenarios, the window).
The marts are read from the shared sample run (six dates; nothing is run again here); the limits on
the new measures are checked with the others in tests/test_risk.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from oracles.risk import Feeds
from oracles.risk2 import (
    BUCKETS, independent_fx_nop, independent_liquidity, independent_sensitivities, independent_stress,
    independent_svar, parameter, svar_dates,
)
from test_risk import mart, pseudonym_for

pytest.importorskip("QuantLib")

SCENARIOS = 250


def check_sensitivities(db: Path, feeds: Feeds, dates: list[str]) -> int:
    got = mart(db, "risk_sensitivities", ("as_of_date", "book", "instrument_id"))
    bonds = 0
    for d in dates:
        expected = independent_sensitivities(feeds, d)
        assert {(b, i) for (dd, b, i) in got if dd == d} >= set(expected), d
        for (book, inst), e in expected.items():
            row = got[(d, book, inst)]
            for col, value in e.items():
                if value is None:
                    assert row[col] is None, (d, book, inst, col)
                else:
                    assert row[col] == pytest.approx(value, rel=1e-8, abs=1e-9), (d, book, inst, col)
            bonds += e["ytm"] is not None
    return bonds


def check_fx_nop(db: Path, feeds: Feeds, dates: list[str]) -> None:
    got = mart(db, "fx_net_open_position", ("as_of_date", "currency"))
    for d in dates:
        per, nop = independent_fx_nop(feeds, d)
        assert {c for (dd, c) in got if dd == d} == set(per), d
        for ccy, e in per.items():
            row = got[(d, ccy)]
            for col in ("long_usd", "short_usd", "net_usd"):
                assert row[col] == pytest.approx(e[col], rel=1e-9, abs=1e-3), (d, ccy, col)
            assert row["net_open_position_usd"] == pytest.approx(nop, rel=1e-9), d


def check_stress(db: Path, feeds: Feeds, dates: list[str]) -> dict:
    got = mart(db, "risk_stress", ("as_of_date", "portfolio", "scenario_id"))
    for d in dates:
        expected = independent_stress(feeds, d)
        assert {(p, s) for (dd, p, s) in got if dd == d} == set(expected), d
        for (p, s), value in expected.items():
            assert got[(d, p, s)]["pnl_usd"] == pytest.approx(value, rel=1e-8, abs=1e-2), (d, p, s)
        # the worst scenario of each portfolio ranks first
        for p in {p for p, _ in expected}:
            worst = min((v, s) for (pp, s), v in expected.items() if pp == p)[1]
            assert got[(d, p, worst)]["loss_rank"] == 1, (d, p)
    return got


def check_svar(db: Path, feeds: Feeds, dates: list[str], n: int = SCENARIOS) -> None:
    got = mart(db, "risk_var", ("as_of_date", "portfolio"))
    scen = mart(db, "risk_var_scenarios", ("as_of_date", "portfolio", "scenario_set", "scenario_date"))
    for d in dates:
        window = svar_dates(feeds, d, n)[1:]
        assert len(window) == n, d  # the first delivery carries enough history
        start = parameter(feeds, d, "SVAR_WINDOW_START", text=True)
        assert start is not None and window[0] >= start and (window[0] == start or start not in window)
        expected = independent_svar(feeds, d, n)
        for p, e in expected.items():
            row = got[(d, p)]
            assert row["svar_n_scenarios"] == n
            assert (row["svar_first_scenario_date"], row["svar_last_scenario_date"]) == (window[0], window[-1])
            for col in ("svar_99", "ses_975"):
                assert row[col] == pytest.approx(e[col], rel=1e-9, abs=1e-3), (d, p, col)
            # exactly those 250 dates, with the same P&L
            dates_of_set = sorted(s for (dd, pp, ss, s) in scen if dd == d and pp == p and ss == "SVAR")
            assert dates_of_set == window, (d, p)
            for s, value in e["pnl"].items():
                assert scen[(d, p, "SVAR", s)]["pnl_usd"] == pytest.approx(value, rel=1e-9, abs=1e-3)
        # a stressed window is worse than the recent one
        assert got[(d, "FIRM")]["svar_99"] > got[(d, "FIRM")]["var_99"]


def check_liquidity(db: Path, feeds: Feeds, dates: list[str]) -> None:
    got = mart(db, "risk_liquidity", ("as_of_date", "book", "instrument_id"))
    profile = mart(db, "risk_liquidity_profile", ("as_of_date", "portfolio", "bucket"))
    for d in dates:
        holdings, expected_profile = independent_liquidity(feeds, d)
        for (book, inst), e in holdings.items():
            row = got[(d, book, inst)]
            assert row["bucket"] == e["bucket"], (d, book, inst)
            if e["days_to_liquidate"] is not None:
                assert row["days_to_liquidate"] == pytest.approx(e["days_to_liquidate"], rel=1e-12)
        assert {(p, b) for (dd, p, b) in profile if dd == d} == set(expected_profile), d
        for key, e in expected_profile.items():
            row = profile[(d, *key)]
            for col in ("gross_usd", "share", "share_beyond_5_days"):
                assert row[col] == pytest.approx(e[col], rel=1e-9, abs=1e-6), (d, key, col)
        assert sum(profile[(d, "FIRM", b)]["share"] for b in BUCKETS) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def sample(sample_run):
    assert all(o.ok for o in sample_run["outcomes"]), "the sample run must pass every gate"
    return {**sample_run, "db": sample_run["home"] / "warehouse" / "marts.duckdb",
            "feeds": Feeds(sample_run["landing"]),
            "pseudonym": pseudonym_for(sample_run["landing"], sample_run["home"])}


@pytest.mark.slow
def test_sensitivities_equal_quantlib_and_their_definitions(sample):
    assert check_sensitivities(sample["db"], sample["feeds"], sample["dates"]) > 50  # real bonds checked


@pytest.mark.slow
def test_fx_net_open_position_equals_an_independent_computation(sample):
    check_fx_nop(sample["db"], sample["feeds"], sample["dates"])


@pytest.mark.slow
def test_stress_pnl_equals_an_independent_computation(sample):
    got = check_stress(sample["db"], sample["feeds"], sample["dates"])
    kinds = {r["kind"] for r in got.values()}
    assert kinds == {"HISTORICAL", "SHOCK"}
    # the sample's crisis windows and shocks are losses for the firm
    firm = {s: r["pnl_usd"] for (d, p, s), r in got.items() if d == sample["dates"][-1] and p == "FIRM"}
    assert firm["HIST_2008"] < 0 and firm["EQUITIES_DOWN_20"] < 0 and firm["RATES_UP_200"] < 0


@pytest.mark.slow
def test_stressed_var_uses_exactly_the_250_dates_from_svar_window_start(sample):
    check_svar(sample["db"], sample["feeds"], sample["dates"])


@pytest.mark.slow
def test_liquidity_equals_an_independent_computation(sample):
    check_liquidity(sample["db"], sample["feeds"], sample["dates"])


def test_the_generator_delivers_a_stressed_history_without_moving_part_one(tmp_path):
    """The pre-history is older rows only: every Part 1 price and rate of a seed is unchanged
    (same rows as the history of a landing generated without it), the scenarios' windows lie in
    it, and SVAR_WINDOW_START leaves 250 business dates of it."""
    import pyarrow.parquet as pq

    from conftest import generate_landing
    from midoffice.sample import risk_data

    landing = generate_landing(tmp_path / "l", "2026-01-05", 1, 300)
    prices = pq.read_table(landing / "2026-01-05" / "prices.parquet").to_pylist()
    dates = sorted({str(r["price_date"]) for r in prices})
    assert len(dates) == 300 + 1 + risk_data.PRE_HISTORY_DAYS
    feeds = Feeds(landing)
    start = parameter(feeds, "2026-01-05", "SVAR_WINDOW_START", text=True)
    assert len([d for d in dates if d >= start]) >= SCENARIOS
    for r in feeds.latest("stress_scenarios.csv", "2026-01-05"):
        if r["kind"] == "HISTORICAL":
            assert dates[0] <= r["start_date"] < r["end_date"] < dates[risk_data.PRE_HISTORY_DAYS]
    # Part 1's rows come first, as before the pre-history was added: the pre-history is after them
    n_part1 = (300 + 1) * len({r["instrument_id"] for r in prices})
    assert min(str(r["price_date"]) for r in prices[:n_part1]) == dates[risk_data.PRE_HISTORY_DAYS]
    assert max(str(r["price_date"]) for r in prices[n_part1:]) < dates[risk_data.PRE_HISTORY_DAYS]
