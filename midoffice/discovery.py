"""Which business dates have arrived in the landing folder and not been handed to a run yet.

Used by the `midoffice_landing` DAG on a real scheduler: a date is ready when its
`_manifest.json` is there (senders write it last, as the control record of the delivery).
Handing a date over is recorded under lake/control/handover/, so each date is triggered once;
delete that file to have the scheduler pick the date up again.
"""

from __future__ import annotations

import re
from datetime import date

from midoffice import control
from midoffice.config import Settings

DATE_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def delivered_dates(settings: Settings) -> list[str]:
    if not settings.landing.is_dir():
        return []
    dates = []
    for folder in settings.landing.iterdir():
        if folder.is_dir() and DATE_FOLDER.match(folder.name) and (folder / "_manifest.json").is_file():
            try:
                if date.fromisoformat(folder.name).weekday() < 5:
                    dates.append(folder.name)
            except ValueError:
                continue
    return sorted(dates)


def take_new_dates(settings: Settings, limit: int = 20) -> list[str]:
    """Dates delivered but not yet handed over; marks them handed over (oldest first)."""
    taken = []
    for d in delivered_dates(settings):
        marker = settings.control / "handover" / f"{d}.json"
        if marker.exists():
            continue
        control.write_json_atomic(marker, {"business_date": d, "handed_over_at": control.utc_now()})
        taken.append(d)
        if len(taken) >= limit:
            break
    return taken
