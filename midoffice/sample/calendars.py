"""The `calendars` feed (DOMAIN.md §7.1): FIRM and one calendar per settlement currency, taken
from the maintained `holidays` library (never a list written by hand).

FIRM is the New York Stock Exchange's calendar; each currency settles on the calendar of its
payment system or home market. Only weekdays are listed: a weekend is never a business day.
"""

from __future__ import annotations

from datetime import date

import holidays
import numpy as np
import pyarrow as pa

from midoffice.sample.common import CURRENCIES
from midoffice.sample.files import _csv_lines, _quote_needed

FIRM = "FIRM"
# calendar id -> (financial market, or None for a country calendar, country code, subdivision)
CALENDAR_SOURCES: dict[str, tuple[str | None, str | None, str | None]] = {
    FIRM: ("NYSE", None, None),
    "USD": ("FED", None, None),      # Fedwire
    "EUR": ("ECB", None, None),      # TARGET2
    "GBP": (None, "GB", "ENG"),      # CHAPS: England's bank holidays
    "JPY": (None, "JP", None),
    "CHF": (None, "CH", "ZH"),       # SIX in Zurich
    "CAD": (None, "CA", "ON"),       # Toronto
    "AUD": (None, "AU", "NSW"),      # Sydney
}
assert set(CALENDAR_SOURCES) == {FIRM, *CURRENCIES}


def weekday_holidays(calendar_id: str, years: range) -> dict[date, str]:
    """The calendar's holidays that fall on a weekday, by date, with their names."""
    market, country, subdiv = CALENDAR_SOURCES[calendar_id]
    found = (holidays.financial_holidays(market, years=years) if market
             else holidays.country_holidays(country, subdiv=subdiv, years=years))
    return {day: name for day, name in sorted(found.items()) if day.weekday() < 5}


def calendar_years(start: date, business_days_before: int, business_days_after: int) -> range:
    """Years wide enough for the sample's span (~1.4 calendar days a business day, and slack)."""
    first = start.year - (business_days_before * 7 // 5 + 366) // 365 - 1
    last = start.year + (business_days_after * 7 // 5 + 366) // 365 + 1
    return range(first, last + 1)


def all_holidays(years: range) -> dict[str, dict[date, str]]:
    return {cal: weekday_holidays(cal, years) for cal in CALENDAR_SOURCES}


def holiday_array(days: dict[date, str]) -> np.ndarray:
    """The holidays as numpy days, for np.busday_offset / np.is_busday."""
    return np.array(sorted(days), dtype="datetime64[D]")


def calendars_columns(by_calendar: dict[str, dict[date, str]]) -> list[pa.Array]:
    """calendar_id, holiday_date, name: FIRM first, then the currencies, each in date order."""
    rows = [(cal, day.isoformat(), name) for cal, days in by_calendar.items() for day, name in days.items()]
    return [_quote_needed(pa.array([r[k] for r in rows], pa.string())) for k in range(3)]


def calendars_lines(by_calendar: dict[str, dict[date, str]]) -> pa.Array:
    return _csv_lines(calendars_columns(by_calendar))
