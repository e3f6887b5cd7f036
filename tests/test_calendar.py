"""The business calendar (DOMAIN §2, §7.1): midoffice/calendar.py against the holidays library,
the warehouse's DuckDB macros (warehouse/calendar.sql) against the Python module, the command
line over a FIRM holiday, and a settlement currency's holiday in settlement efficiency."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import duckdb
import holidays as holiday_library
import numpy as np
import pytest

from conftest import published, REPO, generate_landing, midoffice_here

from midoffice import calendar
from midoffice.sample.calendars import weekday_holidays

YEARS = range(2025, 2028)
FIRST, LAST = date(2025, 1, 1), date(2026, 12, 31)


def nyse() -> frozenset[date]:
    return frozenset(holiday_library.financial_holidays("NYSE", years=YEARS))


def days(first: date = FIRST, last: date = LAST) -> list[date]:
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


# --- the Python module, against the holidays library ---------------------------------------------

def test_a_business_day_is_a_weekday_that_the_library_does_not_list():
    h = nyse()
    for day in days():
        assert calendar.is_business_day(day, h) == (day.weekday() < 5 and day not in h), day
    assert not calendar.is_business_day(date(2026, 1, 1), h)          # New Year's Day, a Thursday
    assert calendar.is_business_day(date(2026, 1, 1))                 # weekdays only: it is


def test_steps_and_counts_agree_with_numpy_over_the_library_holidays():
    h = nyse()
    np_h = np.array(sorted(h), dtype="datetime64[D]")
    for day in days():
        d64 = np.datetime64(day, "D")
        assert calendar.next_business_day(day, h) == np.busday_offset(d64 + 1, 0, roll="forward", holidays=np_h)
        assert calendar.previous_business_day(day, h) == np.busday_offset(d64 - 1, 0, roll="backward", holidays=np_h)
        for n in (-19, -1, 0, 1, 2):
            expected = np.busday_offset(d64, n, roll="backward", holidays=np_h)
            assert calendar.add_business_days(day, n, h) == expected, (day, n)
    rng = random.Random(1)
    for _ in range(300):
        a, b = sorted(rng.sample(days(), 2))
        # numpy counts [a, b); ours (a, b]: the same when both are business days
        a, b = calendar.on_or_before(a, h), calendar.on_or_before(b, h)
        expected = int(np.busday_count(np.datetime64(a, "D"), np.datetime64(b, "D"), holidays=np_h))
        assert calendar.business_days_between(a, b, h) == expected
        assert calendar.business_days_between(b, a, h) == -expected
    assert calendar.business_dates(date(2025, 12, 29), date(2026, 1, 5), h) == [
        date(2025, 12, 29), date(2025, 12, 30), date(2025, 12, 31), date(2026, 1, 2), date(2026, 1, 5)]


def test_the_landing_delivers_the_calendars_and_the_latest_up_to_a_date_counts(tmp_path):
    landing = tmp_path / "landing"
    assert calendar.landing_holidays(landing, date(2026, 1, 2)) == calendar.NO_HOLIDAYS  # none delivered
    for day, rows in (("2025-12-31", [("FIRM", "2026-01-01")]), ("2026-01-05", [("FIRM", "2026-01-19")])):
        (landing / day).mkdir(parents=True)
        text = "calendar_id,holiday_date,name\n" + "".join(f"{c},{d},x\n" for c, d in rows)
        (landing / day / calendar.CALENDARS_FILE).write_text(text)
    assert calendar.landing_holidays(landing, date(2026, 1, 2)) == {date(2026, 1, 1)}
    assert calendar.landing_holidays(landing, date(2026, 1, 9)) == {date(2026, 1, 19)}
    assert calendar.landing_holidays(landing, date(2025, 6, 1)) == {date(2026, 1, 1)}  # before the first: the first


# --- the DuckDB macros, against the Python module ------------------------------------------------

CALENDARS = ["FIRM", "EUR", "GBP", "JPY", "AUD"]


@pytest.fixture(scope="module")
def warehouse_calendar():
    """A warehouse (the real DDL) with the sample generator's calendars delivered on 2026-01-02."""
    from midoffice.warehouse import create_schema, refresh_calendar_days

    by_calendar = {c: weekday_holidays(c, YEARS) for c in CALENDARS}
    con = duckdb.connect()
    create_schema(con)
    con.executemany("INSERT INTO core.calendars (business_date, calendar_id, holiday_date, name) VALUES (?, ?, ?, ?)",
                    [(date(2026, 1, 2), c, d, n) for c, hs in by_calendar.items() for d, n in hs.items()])
    # CHF has rates but no calendar of its own: it counts FIRM's business days
    con.execute("INSERT INTO core.fx_rates (business_date, rate_date, currency, usd_per_unit) "
                "VALUES ('2026-01-02', '2026-01-02', 'CHF', 1.1)")
    con.execute("SET VARIABLE as_of_date = DATE '2026-01-05'")
    refresh_calendar_days(con)
    yield con, {c: frozenset(hs) for c, hs in by_calendar.items()}
    con.close()


def test_the_build_remakes_its_calendar_days_only_when_their_inputs_change():
    """Most dates have the calendars and currencies of the date before: the build then keeps
    core.calendar_days as it is (a tenth of a second a build). A new calendars delivery or a new
    currency remakes it, and what it holds is then what the new inputs give."""
    from midoffice.warehouse import create_schema, refresh_calendar_days

    con = duckdb.connect()
    create_schema(con)

    def deliver(on: date, calendar_id: str, holidays: list[date]) -> None:
        con.executemany("INSERT INTO core.calendars (business_date, calendar_id, holiday_date, name) VALUES (?, ?, ?, ?)",
                        [(on, calendar_id, h, "holiday") for h in holidays])

    def business(calendar_id: str, day: date) -> bool:
        return con.execute("SELECT core.is_business_day(?, ?)", [calendar_id, day]).fetchone()[0]

    deliver(date(2026, 1, 2), "FIRM", [date(2026, 1, 19)])
    con.execute("SET VARIABLE as_of_date = DATE '2026-01-05'")
    assert refresh_calendar_days(con) is True
    assert not business("FIRM", date(2026, 1, 19))
    con.execute("SET VARIABLE as_of_date = DATE '2026-01-06'")  # the next date, nothing new
    assert refresh_calendar_days(con) is False

    # a currency with rates from now on: counted with FIRM's days
    con.execute("INSERT INTO core.fx_rates (business_date, rate_date, currency, usd_per_unit) "
                "VALUES ('2026-01-07', '2026-01-07', 'NOK', 0.09)")
    con.execute("SET VARIABLE as_of_date = DATE '2026-01-07'")
    assert refresh_calendar_days(con) is True
    assert business("NOK", date(2026, 1, 16)) and not business("NOK", date(2026, 1, 19))

    # a new delivery moves the holiday: the 19th is a business day again, the 20th is not
    deliver(date(2026, 1, 8), "FIRM", [date(2026, 1, 20)])
    con.execute("SET VARIABLE as_of_date = DATE '2026-01-08'")
    assert refresh_calendar_days(con) is True
    assert business("FIRM", date(2026, 1, 19)) and not business("FIRM", date(2026, 1, 20))
    assert business("NOK", date(2026, 1, 19)) and not business("NOK", date(2026, 1, 20))
    # an earlier date rebuilt reads the calendars as they were then
    con.execute("SET VARIABLE as_of_date = DATE '2026-01-07'")
    assert refresh_calendar_days(con) is True and not business("FIRM", date(2026, 1, 19))
    con.close()


@pytest.mark.parametrize("cal", CALENDARS + ["CHF"])
def test_the_sql_macros_count_as_the_python_module(warehouse_calendar, cal):
    con, by_calendar = warehouse_calendar
    h = by_calendar.get(cal, by_calendar["FIRM"])
    con.execute("CREATE OR REPLACE TEMP TABLE probe AS SELECT CAST(range AS DATE) AS day "
                "FROM range(DATE '2025-01-01', DATE '2027-01-01', INTERVAL 1 DAY)")
    rows = con.execute(
        "SELECT day, core.is_business_day(?1, day), core.previous_business_day(?1, day), "
        "core.next_business_day(?1, day), core.add_business_days(?1, day, -19), core.add_business_days(?1, day, 2), "
        "core.business_days_between(?1, DATE '2025-06-30', day) FROM probe ORDER BY day", [cal]).fetchall()
    assert len(rows) == len(days())
    for day, is_bd, previous, following, back19, plus2, since in rows:
        assert is_bd == calendar.is_business_day(day, h), (cal, day)
        assert previous == calendar.previous_business_day(day, h), (cal, day)
        assert following == calendar.next_business_day(day, h), (cal, day)
        assert back19 == calendar.add_business_days(day, -19, h), (cal, day)
        assert plus2 == calendar.add_business_days(day, 2, h), (cal, day)
        assert since == calendar.business_days_between(date(2025, 6, 30), day, h), (cal, day)


def test_a_calendar_nobody_knows_has_no_business_days(warehouse_calendar):
    con, _ = warehouse_calendar
    assert con.execute("SELECT core.is_business_day('XXX', DATE '2026-01-05')").fetchone() == (None,)


# --- the command line over a FIRM holiday --------------------------------------------------------

def _midoffice(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "midoffice.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=900)


@pytest.fixture(scope="module")
def new_year_landing(tmp_path_factory) -> Path:
    """Generated from 2025-12-31: the next delivery is 2026-01-02 (New Year's Day is a FIRM holiday)."""
    landing = generate_landing(tmp_path_factory.mktemp("calendar") / "landing", "2025-12-31", 2, 40, seed=2)
    assert sorted(p.name for p in landing.iterdir() if p.is_dir()) == ["2025-12-31", "2026-01-02"]
    return landing


def test_a_firm_holiday_alone_is_refused(new_year_landing, tmp_path):
    done = _midoffice("run", "--landing", str(new_year_landing), "--home", str(tmp_path), "--date", "2026-01-01")
    assert done.returncode == 2
    assert "2026-01-01 is not a business date (a FIRM holiday" in done.stderr
    done = _midoffice("run", "--landing", str(new_year_landing), "--home", str(tmp_path),
                      "--from", "2026-01-01", "--to", "2026-01-01")
    assert done.returncode == 2 and "skipping 2026-01-01: a FIRM holiday" in done.stderr
    assert "no business date in the range" in done.stderr


def test_a_landing_without_calendars_is_walked_as_weekdays_and_says_so(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    done = _midoffice("run", "--landing", str(landing), "--home", str(tmp_path / "home"),
                      "--from", "2026-01-03", "--to", "2026-01-04")
    assert done.returncode == 2
    assert "no calendars.csv in the landing: business dates are weekdays" in done.stderr
    assert "no business date in the range" in done.stderr


@pytest.mark.slow
@pytest.mark.long
def test_a_range_over_a_firm_holiday_skips_it_and_says_so(new_year_landing, tmp_path, airflow_home, capsys):
    done = midoffice_here(capsys, "run", "--landing", str(new_year_landing), "--home", str(tmp_path / "home"),
                          "--from", "2025-12-31", "--to", "2026-01-02")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "skipping 2026-01-01: a FIRM holiday" in done.stderr
    assert "ran 2 business dates" in done.stdout
    con = published(tmp_path / "home" / "warehouse" / "marts.duckdb")
    try:
        built = [str(r[0]) for r in con.execute("SELECT DISTINCT business_date FROM dq_feed_health ORDER BY 1").fetchall()]
        gates = dict(con.execute("SELECT feed, gate FROM dq_feed_health WHERE business_date = '2026-01-02'").fetchall())
    finally:
        con.close()
    assert built == ["2025-12-31", "2026-01-02"]
    assert gates["calendars"] == "PASS"


# --- settlement efficiency: a currency holiday is not a due date ---------------------------------

def test_an_instruction_meant_for_a_currency_holiday_is_due_the_next_business_day(tmp_path, airflow_home):
    """2026-01-12 is a holiday of the yen (Coming of Age Day), not of the firm. The sender books
    JPY instructions for it that settle on the 13th: on time, not a 0 % day, and the mart equals
    the independent oracle (which rolls the due date with midoffice.calendar)."""
    from test_recon import RECON_FEEDS, efficiency_oracle, run_direct

    from midoffice.config import settings_from
    from midoffice.contracts import ingest_order, load_contracts

    # From 2026-01-09: three deliveries, the holiday's and one either side. The 13th's JPY
    # instructions due that day come from trades of the days before (18 of them from the 9th,
    # 32 from the 8th); a landing that starts on the holiday has none to move.
    landing = generate_landing(tmp_path / "landing", "2026-01-09", 3, 300, seed=4)
    dates = sorted(p.name for p in landing.iterdir() if p.is_dir())
    assert dates == ["2026-01-09", "2026-01-12", "2026-01-13"]
    assert date(2026, 1, 12) in calendar.read_calendars(landing / dates[-1] / "calendars.csv")["JPY"]
    moved = _move_intended_date(landing, "2026-01-13", "JPY", "2026-01-13", "2026-01-12", load_contracts())
    assert moved > 0
    settings = settings_from(landing, tmp_path / "home")
    run_direct(settings, dates, [f for f in ingest_order() if f in RECON_FEEDS], references_once=False)
    con = published(settings.home)
    try:
        rows = con.execute(
            "SELECT intended_settle_date, custodian, due, settled_on_time, efficiency_count FROM ops_settlement_efficiency "
            "WHERE as_of_date = '2026-01-13' AND currency = 'JPY' AND intended_settle_date = '2026-01-12'").fetchall()
    finally:
        con.close()
    assert sum(r[2] for r in rows) == moved
    # not a 0 % day: instructions meant for the holiday that settled the next day count as on time
    # (a custodian may still have only fails; the oracle below checks each row)
    assert sum(r[3] for r in rows) > 0 and sum(r[4] for r in rows) > 0
    oracle = efficiency_oracle(landing, "2026-01-13")
    for day, custodian, due, on_time, efficiency in rows:
        expected = oracle[(str(day), custodian, "JPY")]
        assert (due, on_time) == (expected["due"], expected["settled_on_time"])


def _move_intended_date(landing: Path, delivery: str, currency: str, old: str, new: str, contracts) -> int:
    """Rewrite a delivery's instructions of a currency from one intended date to another (and its
    manifest entry): what a sender that books the currency's holiday would send."""
    spec = contracts["settlements"]
    path = landing / delivery / spec.file
    rows = list(csv.DictReader(path.open(newline="")))
    moved = 0
    for row in rows:
        if row["currency"] == currency and row["intended_settle_date"] == old:
            row["intended_settle_date"] = new
            moved += 1
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=spec.column_names, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    data = out.getvalue().encode()
    path.write_bytes(data)
    manifest_path = landing / delivery / "_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["feeds"]["settlements"].update(rows=len(rows), sha256=hashlib.sha256(data).hexdigest())
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return moved
