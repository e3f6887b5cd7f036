"""Handing a delivered date to exactly one run: the landing watcher, a scheduled run, a retry."""

from __future__ import annotations

import json

from midoffice.config import settings_from
from midoffice.discovery import claim, delivered_dates, hand_over, handed_over_to, take_new_dates


def _deliver(landing, day: str) -> None:
    (landing / day).mkdir(parents=True)
    (landing / day / "_manifest.json").write_text(json.dumps({"business_date": day, "files": []}))


def test_a_date_is_handed_over_once_and_a_run_may_retry_its_own_claim(tmp_path):
    s = settings_from(tmp_path / "landing", tmp_path / "home")
    assert handed_over_to(s, "2026-04-06") is None
    assert claim(s, "2026-04-06", "scheduled__a")
    assert handed_over_to(s, "2026-04-06") == "scheduled__a"
    assert claim(s, "2026-04-06", "scheduled__a")  # the same run's retry still holds the date
    assert not claim(s, "2026-04-06", "scheduled__b")
    assert not hand_over(s, "2026-04-06", "scheduled__a")  # the record itself is written once
    assert handed_over_to(s, "2026-04-06") == "scheduled__a"


def test_the_watcher_takes_each_delivered_weekday_once_oldest_first(tmp_path):
    landing = tmp_path / "landing"
    for day in ("2026-04-07", "2026-04-06", "2026-04-11"):  # the 11th is a Saturday
        _deliver(landing, day)
    (landing / "2026-04-08").mkdir()  # no manifest yet: still arriving
    s = settings_from(landing, tmp_path / "home")
    assert delivered_dates(s) == ["2026-04-06", "2026-04-07"]
    assert claim(s, "2026-04-07", "manual__x")  # a run by hand got there first
    assert take_new_dates(s) == ["2026-04-06"]
    assert take_new_dates(s) == []
    _deliver(landing, "2026-04-09")
    assert take_new_dates(s) == ["2026-04-09"]
    assert handed_over_to(s, "2026-04-06") == "midoffice_landing"
