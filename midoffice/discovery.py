"""Which business dates have arrived in the landing folder and not been handed to a run yet.

Used by the `midoffice_landing` DAG on a real scheduler: a date is ready when its
`_manifest.json` is there (senders write it last, as the control record of the delivery).
Handing a date over is recorded under lake/control/handover/, so each date is triggered once;
delete that file to have the scheduler pick the date up again. A run of `midoffice_ingest` that
was not started by the watcher (a backfill, a trigger by hand, `midoffice run`) records the
handover too, so the watcher does not start the same date a second time.
"""

from __future__ import annotations

import json
import os
import re
from datetime import date
from pathlib import Path

from midoffice import calendar, control
from midoffice.config import Settings

DATE_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def delivered_dates(settings: Settings) -> list[str]:
    if not settings.landing.is_dir():
        return []
    days = []
    for folder in settings.landing.iterdir():
        if folder.is_dir() and DATE_FOLDER.match(folder.name) and (folder / "_manifest.json").is_file():
            try:
                days.append(date.fromisoformat(folder.name))
            except ValueError:
                continue
    # a delivery on a FIRM holiday is not a business date (the latest calendars delivered: one
    # read a poll, and a calendar lists the holidays ahead of them)
    holidays = calendar.landing_holidays(settings.landing, max(days)) if days else calendar.NO_HOLIDAYS
    return sorted(d.isoformat() for d in days if calendar.is_business_day(d, holidays))


def is_firm_holiday(settings: Settings, business_date: str) -> bool:
    """Is the date a FIRM holiday by the calendars the landing delivered up to it?"""
    day = date.fromisoformat(business_date)
    return day in calendar.landing_holidays(settings.landing, day)


def is_delivered(settings: Settings, business_date: str) -> bool:
    return (settings.landing / business_date / "_manifest.json").is_file()


def _handover_marker(settings: Settings, business_date: str) -> Path:
    return settings.control / "handover" / f"{business_date}.json"


def hand_over(settings: Settings, business_date: str, to: str) -> bool:
    """Record that `to` (a run) has the date; False if it had been handed over already.

    Exclusive create: of two claimants (the watcher and a scheduled run) exactly one wins.
    """
    marker = _handover_marker(settings, business_date)
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        json.dump({"business_date": business_date, "handed_over_to": to,
                   "handed_over_at": control.utc_now()}, fh, indent=1, sort_keys=True)
    return True


def handed_over_to(settings: Settings, business_date: str) -> str | None:
    """Who has the date (a run id, or the watcher), None if nobody has it yet."""
    try:
        return json.loads(_handover_marker(settings, business_date).read_text())["handed_over_to"]
    except FileNotFoundError:
        return None


def claim(settings: Settings, business_date: str, run_id: str) -> bool:
    """A run takes the date: True if it has it now, including on a retry of its own claim."""
    return hand_over(settings, business_date, run_id) or handed_over_to(settings, business_date) == run_id


def take_new_dates(settings: Settings, limit: int = 20) -> list[str]:
    """Dates delivered but not yet handed over; marks them handed over (oldest first)."""
    taken = []
    for d in delivered_dates(settings):
        if hand_over(settings, d, "midoffice_landing"):
            taken.append(d)
            if len(taken) >= limit:
                break
    return taken
