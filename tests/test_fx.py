"""USD conversion's one definition (warehouse/fx.sql) against plain Python over a few rates:
re-delivered rate dates (a correction), a rate delivered after the date asked about, gaps,
the `since` bound, a currency without rates before a day."""

from __future__ import annotations

from datetime import date, timedelta
from itertools import product

import duckdb

from midoffice.config import WAREHOUSE_DDL_DIR

D = date(2026, 3, 2)
# (business_date delivered, rate_date, currency, usd_per_unit)
RATES = [
    (D, D, "EUR", 1.10), (D, D - timedelta(3), "EUR", 1.08), (D, D, "GBP", 1.30),
    (D + timedelta(1), D + timedelta(1), "EUR", 1.11),
    (D + timedelta(2), D, "EUR", 1.105),                  # a correction of D's EUR rate
    (D + timedelta(4), D + timedelta(4), "EUR", 1.12),     # a gap of three days
    (D + timedelta(4), D + timedelta(2), "JPY", 0.0067),   # a currency that starts late
]


def rate_on(day: date, known_on: date, since: date | None) -> dict[str, tuple[float, date]]:
    """currency -> (usd_per_unit, rate_date): the latest rate date on or before the day, from
    since on, and its latest delivery up to known_on."""
    best: dict[str, tuple] = {}
    for delivered, rate_date, currency, usd in RATES:
        if delivered <= known_on and rate_date <= day and (since is None or rate_date >= since):
            key = (rate_date, delivered)
            if currency not in best or key > best[currency][0]:
                best[currency] = (key, usd)
    return {c: (usd, key[0]) for c, (key, usd) in best.items()}


def test_the_rate_of_a_day_is_the_latest_known_on_or_before_it():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA core")
    con.execute("CREATE TABLE core.fx_rates (business_date DATE, rate_date DATE, currency VARCHAR, usd_per_unit DOUBLE)")
    con.executemany("INSERT INTO core.fx_rates VALUES (?, ?, ?, ?)", RATES)
    con.execute((WAREHOUSE_DDL_DIR / "fx.sql").read_text())
    days = [D + timedelta(i) for i in range(-4, 7)]
    checked = 0
    for day, known_on, since in product(days, days, [None, D, D + timedelta(2)]):
        got = {c: (u, r) for c, u, r in con.execute(
            "SELECT currency, usd_per_unit, rate_date FROM core.fx_rates_on(?, ?, ?)", [day, known_on, since]).fetchall()}
        assert got == rate_on(day, known_on, since), (day, known_on, since)
        # the spans of fx_rates_known say the same for every day
        spans = {c: (u, r) for c, u, r in con.execute(
            "SELECT currency, usd_per_unit, rate_date FROM core.fx_rates_known(?, ?) "
            "WHERE rate_date <= ? AND ? < valid_until", [known_on, since, day, day]).fetchall()}
        assert spans == got
        checked += len(got)
    assert checked > 100  # the grid is not empty
    # the correction counts from its delivery on, not before
    assert rate_on(D, D + timedelta(1), None)["EUR"][0] == 1.10 and rate_on(D, D + timedelta(2), None)["EUR"][0] == 1.105
