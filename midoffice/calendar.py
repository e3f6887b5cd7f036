"""The business calendar (DOMAIN.md §2, §7.1): a business date is a weekday that is not a
holiday of the calendar (FIRM for the pipeline's dates, a currency's for settlement counts).

Small pure functions over a frozen set of holidays, and where the holidays come from before
anything is ingested: the landing's `calendars.csv`. The warehouse's own copy is the DuckDB
macros of warehouse/calendar.sql over the delivered feed (core.calendars); both count the same
way (tests/test_calendar.py):

- a day that is not a business day counts as the business day before it: from a Saturday, one
  business day on is the Monday; `business_days_between(Friday, Sunday)` is 0;
- `business_days_between(a, b)` is the number of business days in (a, b], negative when b < a.
"""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

FIRM = "FIRM"
CALENDARS_FILE = "calendars.csv"
Holidays = frozenset[date]
NO_HOLIDAYS: Holidays = frozenset()


def is_business_day(day: date, holidays: Holidays = NO_HOLIDAYS) -> bool:
    return day.weekday() < 5 and day not in holidays


def previous_business_day(day: date, holidays: Holidays = NO_HOLIDAYS) -> date:
    """The last business day strictly before `day`."""
    day -= timedelta(days=1)
    while not is_business_day(day, holidays):
        day -= timedelta(days=1)
    return day


def next_business_day(day: date, holidays: Holidays = NO_HOLIDAYS) -> date:
    """The first business day strictly after `day`."""
    day += timedelta(days=1)
    while not is_business_day(day, holidays):
        day += timedelta(days=1)
    return day


def on_or_before(day: date, holidays: Holidays = NO_HOLIDAYS) -> date:
    """`day` if it is a business day, else the business day before it (how a count starts)."""
    return day if is_business_day(day, holidays) else previous_business_day(day, holidays)


def add_business_days(day: date, n: int, holidays: Holidays = NO_HOLIDAYS) -> date:
    """n business days after `day` (before it when n < 0), counted from on_or_before(day)."""
    day = on_or_before(day, holidays)
    step = next_business_day if n >= 0 else previous_business_day
    for _ in range(abs(n)):
        day = step(day, holidays)
    return day


def business_dates(start: date, end: date, holidays: Holidays = NO_HOLIDAYS) -> list[date]:
    """The business dates from start to end, both included."""
    days = (start + timedelta(days=k) for k in range((end - start).days + 1))
    return [d for d in days if is_business_day(d, holidays)]


def business_days_between(start: date, end: date, holidays: Holidays = NO_HOLIDAYS) -> int:
    """How many business days are in (start, end]; negative when end is before start."""
    if end < start:
        return -business_days_between(end, start, holidays)
    return len(business_dates(start + timedelta(days=1), end, holidays))


# ---- where the holidays come from before the warehouse has any ----------------------------
def read_calendars(path: Path) -> dict[str, Holidays]:
    """A delivered calendars.csv: the holidays of each calendar id."""
    found: dict[str, set[date]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            found.setdefault(row["calendar_id"], set()).add(date.fromisoformat(row["holiday_date"]))
    return {cal: frozenset(days) for cal, days in found.items()}


def latest_calendars_file(landing: Path, up_to: date | None = None) -> Path | None:
    """The landing's latest calendars.csv delivered on or before `up_to` (any date when None),
    else the earliest one delivered after it (a range that starts before the first delivery)."""
    files = sorted(p for p in Path(landing).glob(f"*/{CALENDARS_FILE}") if is_iso_date(p.parent.name))
    if not files:
        return None
    before = [p for p in files if up_to is None or p.parent.name <= up_to.isoformat()]
    return before[-1] if before else files[0]


def landing_holidays(landing: Path, up_to: date | None = None, calendar_id: str = FIRM) -> Holidays:
    """The holidays of a calendar as the landing delivers them (latest calendars.csv up to the
    date); none (weekdays only) when the landing has no calendars.csv at all."""
    return holidays_in(latest_calendars_file(landing, up_to), calendar_id)


def holidays_in(path: Path | None, calendar_id: str = FIRM) -> Holidays:
    """A calendar's holidays in a calendars.csv (none when there is no file or no such calendar)."""
    return read_calendars(path).get(calendar_id, NO_HOLIDAYS) if path else NO_HOLIDAYS


def is_iso_date(name: str) -> bool:
    try:
        return date.fromisoformat(name).isoformat() == name
    except ValueError:
        return False
