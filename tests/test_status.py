"""`midoffice status` tells the truth about each date (issues 21 and 22).

A small generated delivery (with `--faults`: quarantined records and a late file) runs through
the real stages without Airflow; then a later date's build fails. status must show the failure at
once (it used to wait for a later date to publish its ledger), call a date with quarantined
records or late files what it is, print one line per date, and never cut a reason.
"""

from __future__ import annotations

import io
import os

import pytest

from conftest import generate_landing, run_stages

DATES = ["2026-03-02", "2026-03-03", "2026-03-04"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from midoffice.config import settings_from
    from midoffice.pseudonym import DEV_KEY_ENV, MissingKeyError

    root = tmp_path_factory.mktemp("status")
    landing = generate_landing(root / "landing", DATES[0], len(DATES), 300, seed=5, faults=True)
    settings = settings_from(landing, root / "home")
    run_stages(settings, DATES[0], "run-1")
    run_stages(settings, DATES[1], "run-2")
    # The third date's build fails: no pseudonymisation key (the operator forgot it).
    saved = os.environ.pop(DEV_KEY_ENV, None)
    try:
        with pytest.raises(MissingKeyError):
            run_stages(settings, DATES[2], "run-3")
    finally:
        if saved is not None:
            os.environ[DEV_KEY_ENV] = saved
    return settings


def status(settings, business_date: str | None = None) -> tuple[int, str]:
    from midoffice.status import show_status

    out = io.StringIO()
    return show_status(str(settings.home), business_date, out=out), out.getvalue()


def test_a_failed_build_shows_at_once_not_after_a_later_publication(home):
    from midoffice.status import NOT_PUBLISHED, date_statuses

    by_date = {s.business_date: s for s in date_statuses(home)}
    failed = by_date[DATES[2]]
    assert failed.outcome == NOT_PUBLISHED and failed.published_at is None
    assert [r.stage for r in failed.failed_stages] == ["build"]
    assert "no pseudonymisation key" in failed.failed_stages[0].message
    code, text = status(home)
    assert code == 0
    line = next(x for x in text.splitlines() if x.startswith(DATES[2]))
    assert "NOT PUBLISHED" in line and "build" in line


def test_quarantined_records_and_late_files_are_not_called_a_plain_success(home):
    """DOMAIN §12: a date whose gates passed but which quarantined records or received late files
    is reported as such. The faults delivery quarantines records and sends a late file."""
    from midoffice.control import read_record
    from midoffice.contracts import feed_names
    from midoffice.status import GATES_FAILED, OK, WARNINGS, date_statuses

    for s in date_statuses(home)[:2]:
        records = [read_record(home, "ingest", f, s.business_date) for f in feed_names()]
        quarantined = sum(r["quarantined_rows"] or 0 for r in records)
        late = sorted(r["feed"] for r in records if r["freshness"] == "LATE")
        assert s.quarantined == quarantined and s.late == late
        assert quarantined or late, "the faults delivery should quarantine something on every date"
        assert s.outcome in (WARNINGS, GATES_FAILED) and s.outcome != OK
        assert (s.outcome == GATES_FAILED) == bool(s.gates_failed)


def test_status_prints_one_line_per_date_and_a_closing_count(home):
    code, text = status(home)
    lines = text.rstrip("\n").splitlines()
    assert lines[0].split()[:2] == ["business_date", "outcome"]
    assert [x.split()[0] for x in lines[2:-2]] == DATES  # one line per date, then the row count
    assert lines[-1].startswith(f"3 business dates, {DATES[0]} to {DATES[-1]}: 1 NOT PUBLISHED")
    assert "midoffice status --date D" in lines[-1]


def test_status_of_one_date_lists_every_feed_and_stage_with_reasons_in_full(home):
    from midoffice.contracts import feed_names

    code, text = status(home, DATES[2])
    assert code == 0 and text.startswith(f"{DATES[2]}: NOT PUBLISHED")
    for feed in feed_names():
        assert any(line.split()[:1] == [feed] for line in text.splitlines()), feed
    build_line = next(line for line in text.splitlines() if line.startswith("build "))
    assert "FAILED" in build_line and "--development-key`" in build_line  # the message's last words: not cut
    assert status(home, "2026-03-09")[0] == 2


def test_status_without_any_run_says_so(tmp_path, capsys):
    from midoffice.config import settings_from

    code, _ = status(settings_from(tmp_path, tmp_path / "empty"))
    assert code == 2 and "no run recorded" in capsys.readouterr().err
