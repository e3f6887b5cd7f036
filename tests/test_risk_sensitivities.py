"""risk_sensitivities (DOMAIN §11.1): the bond analytics of transforms/risk_sensitivities.sql,
run unchanged on a scratch DuckDB, equal QuantLib's (a test-only dependency) to 1e-8 relative:
yield to maturity from the clean price, accrued interest, modified duration and DV01 (central
difference of ±1 bp) on bonds that cover coupon frequencies 1, 2 and 4, a bond inside its
(short) first coupon period, one a few days from maturity, and prices far below and far above par.
Delta and FX delta are checked against their definitions on the same fixture.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pytest

from conftest import REPO

ql = pytest.importorskip("QuantLib")

SETTLE = date(2026, 3, 17)


@dataclass(frozen=True)
class Bond:
    instrument_id: str
    coupon_rate: float
    frequency: int
    issue_date: date
    maturity_date: date
    clean_price: float
    quantity: float = 1000.0
    currency: str = "USD"
    fx: float = 1.0


BONDS = [
    Bond("BD_SEMI_10Y", 0.04125, 2, date(2016, 5, 15), date(2036, 5, 15), 98.5),
    Bond("BD_ANNUAL", 0.0275, 1, date(2019, 9, 30), date(2031, 9, 30), 103.25, -2500.0, "EUR", 1.085),
    Bond("BD_QUARTERLY", 0.055, 4, date(2020, 1, 20), date(2030, 7, 20), 99.1, 700.0, "GBP", 1.268),
    # issued 2026-01-05, first coupon 2026-06-10: inside a short first period
    Bond("BD_FIRST_PERIOD", 0.035, 2, date(2026, 1, 5), date(2034, 12, 10), 100.4),
    Bond("BD_NEAR_MATURITY", 0.05, 2, date(2016, 4, 2), date(2026, 4, 2), 99.95),
    Bond("BD_DEEP_DISCOUNT", 0.01, 2, date(2021, 2, 28), date(2051, 2, 28), 48.2),
    Bond("BD_HIGH_PREMIUM", 0.08, 4, date(2011, 11, 11), date(2041, 11, 11), 151.7, 300.0, "JPY", 0.00672),
    Bond("BD_ZERO_COUPON", 0.0, 1, date(2024, 6, 1), date(2029, 6, 1), 88.0),
]


def quantlib_analytics(b: Bond) -> dict[str, float]:
    """The same bond in QuantLib: a FixedRateBond on a backward, unadjusted schedule from issue to
    maturity, Actual/Actual (ISMA), yield compounded at the coupon frequency, settling on SETTLE."""
    settle = ql.Date(SETTLE.day, SETTLE.month, SETTLE.year)
    ql.Settings.instance().evaluationDate = settle
    freq = {1: ql.Annual, 2: ql.Semiannual, 4: ql.Quarterly}[b.frequency]
    schedule = ql.Schedule(ql.Date(b.issue_date.day, b.issue_date.month, b.issue_date.year),
                           ql.Date(b.maturity_date.day, b.maturity_date.month, b.maturity_date.year),
                           ql.Period(freq), ql.NullCalendar(), ql.Unadjusted, ql.Unadjusted,
                           ql.DateGeneration.Backward, False)
    dc = ql.ActualActual(ql.ActualActual.ISMA)
    bond = ql.FixedRateBond(0, 100.0, schedule, [b.coupon_rate], dc, ql.Unadjusted)
    price = ql.BondPrice(b.clean_price, ql.BondPrice.Clean)
    ytm = ql.BondFunctions.bondYield(bond, price, dc, ql.Compounded, freq, settle, 1e-15, 10000, 0.05)

    def dirty(y: float) -> float:
        return (ql.BondFunctions.cleanPrice(bond, y, dc, ql.Compounded, freq, settle)
                + ql.BondFunctions.accruedAmount(bond, settle))

    return {
        "ytm": ytm,
        "accrued_interest": ql.BondFunctions.accruedAmount(bond, settle),
        "modified_duration": ql.BondFunctions.duration(bond, ql.InterestRate(ytm, dc, ql.Compounded, freq),
                                                       ql.Duration.Modified, settle),
        "dv01_usd": (dirty(ytm - 1e-4) - dirty(ytm + 1e-4)) / 2 * b.quantity * b.fx,
    }


def mart_rows(bonds: list[Bond], others: list[tuple] = ()) -> dict[str, dict]:
    """transforms/risk_sensitivities.sql on a scratch warehouse whose risk_exposure holds the bonds
    (and `others`: (instrument_id, asset_class, currency, quantity, price, fx)) in book B1."""
    from midoffice.duck import connect_scratch
    from midoffice.warehouse import create_schema

    con = connect_scratch()
    try:
        create_schema(con)
        con.execute("SET VARIABLE as_of_date = CAST(? AS DATE)", [SETTLE.isoformat()])
        con.execute("CREATE TABLE main.risk_exposure (as_of_date DATE, holder_type VARCHAR, holder_id VARCHAR, "
                    "instrument_id VARCHAR, asset_class VARCHAR, currency VARCHAR, quantity DOUBLE, price DOUBLE, "
                    "fx DOUBLE, market_value_usd DOUBLE)")
        holdings = [(b.instrument_id, "BOND", b.currency, b.quantity, b.clean_price, b.fx) for b in bonds]
        for inst, ac, ccy, qty, px, fx in holdings + list(others):
            con.execute("INSERT INTO main.risk_exposure VALUES (?, 'BOOK', 'B1', ?, ?, ?, ?, ?, ?, ?)",
                        [SETTLE, inst, ac, ccy, qty, px, fx, qty * px * fx])
        for b in bonds:
            con.execute("INSERT INTO core.instruments (business_date, instrument_id, name, asset_class, sector, "
                        "issuer_id, issuer_country, currency, coupon_rate, issue_date, maturity_date, "
                        "coupon_frequency) VALUES (?, ?, ?, 'BOND', 'Govt', 'ISS1', 'US', ?, ?, ?, ?, ?)",
                        [SETTLE, b.instrument_id, b.instrument_id, b.currency, b.coupon_rate, b.issue_date,
                         b.maturity_date, b.frequency])
        cur = con.execute((REPO / "transforms" / "risk_sensitivities.sql").read_text())
        cols = [d[0] for d in cur.description]
        return {r[cols.index("instrument_id")]: dict(zip(cols, r)) for r in cur.fetchall()}
    finally:
        con.close()


@pytest.fixture(scope="module")
def rows():
    others = [("EQ1", "EQUITY", "EUR", 150.0, 42.0, 1.085), ("FD1", "FUND", "USD", -80.0, 12.5, 1.0),
              ("CM1", "COMMODITY", "USD", 10.0, 80.0, 1.0), ("FX1", "FX", "USD", 1e6, 1.085, 1.0)]
    return mart_rows(BONDS, others)


@pytest.mark.parametrize("bond", BONDS, ids=lambda b: b.instrument_id)
def test_bond_yield_duration_and_dv01_equal_quantlib(rows, bond):
    expected = quantlib_analytics(bond)
    got = rows[bond.instrument_id]
    for column, value in expected.items():
        assert got[column] == pytest.approx(value, rel=1e-8, abs=1e-12), (bond.instrument_id, column)
    assert got["dirty_price"] == pytest.approx(bond.clean_price + expected["accrued_interest"], rel=1e-12)
    assert got["delta_1pct_usd"] is None


def test_the_fixture_covers_what_the_issue_asks(rows):
    assert {b.frequency for b in BONDS} == {1, 2, 4}
    first = next(b for b in BONDS if b.instrument_id == "BD_FIRST_PERIOD")
    # the short first period: accrued counts from issue, not from the regular period start
    assert 0 < rows["BD_FIRST_PERIOD"]["accrued_interest"] < first.coupon_rate * 100 / 2 * (SETTLE - first.issue_date).days / 150
    assert (date(2026, 4, 2) - SETTLE).days < 30
    assert min(b.clean_price for b in BONDS) < 60 and max(b.clean_price for b in BONDS) > 140


def test_delta_and_fx_delta_follow_their_definitions(rows):
    for inst, r in rows.items():
        mv = r["market_value_usd"]
        expected_delta = 0.01 * mv if r["asset_class"] in ("EQUITY", "FUND", "COMMODITY") else None
        assert r["delta_1pct_usd"] == (pytest.approx(expected_delta) if expected_delta is not None else None), inst
        expected_fx = 0.01 * mv if r["currency"] != "USD" else None
        assert r["fx_delta_1pct_usd"] == (pytest.approx(expected_fx) if expected_fx is not None else None), inst
    # a long bond gains when yields fall, a short one loses
    assert rows["BD_SEMI_10Y"]["dv01_usd"] > 0 > rows["BD_ANNUAL"]["dv01_usd"]
    assert rows["FX1"]["ytm"] is None and rows["EQ1"]["dv01_usd"] is None
