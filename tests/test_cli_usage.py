"""The command line as a careless user meets it (issue 21): usage mistakes get one clear line and
exit 2, a date with nothing delivered publishes nothing and says so, an earlier date run into a
home with later dates warns with the command to run next, and every --help says what each option
takes, the date format and the exit codes."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, generate_landing

DAYS = ["2026-03-02", "2026-03-03"]


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "midoffice.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ), timeout=timeout)


def one_line_error(run: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert run.returncode == code, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    for fragment in fragments:
        assert fragment in run.stderr, (fragment, run.stderr)


@pytest.mark.parametrize("args, message", [
    (["--days", "0"], "--days must be at least 1 (got 0)"),
    (["--days", "-3"], "--days must be at least 1"),
    (["--days", "1", "--trades-per-day", "0"], "--trades-per-day must be at least 1"),
])
def test_generate_refuses_impossible_sizes_in_one_line(tmp_path, args, message):
    run = cli("generate", "--out", str(tmp_path / "landing"), "--start", DAYS[0], *args)
    one_line_error(run, 2, message)
    assert len(run.stderr.strip().splitlines()) == 1


def test_generate_does_not_overwrite_a_landing_without_force(tmp_path):
    landing = tmp_path / "landing"
    assert cli("generate", "--out", str(landing), "--start", DAYS[0], "--days", "1", "--trades-per-day", "50").returncode == 0
    manifest = (landing / DAYS[0] / "_manifest.json").read_bytes()
    again = cli("generate", "--out", str(landing), "--start", DAYS[0], "--days", "1", "--trades-per-day", "80")
    one_line_error(again, 2, "already holds deliveries", "--force")
    assert (landing / DAYS[0] / "_manifest.json").read_bytes() == manifest
    forced = cli("generate", "--out", str(landing), "--start", DAYS[0], "--days", "1", "--trades-per-day", "80",
                 "--force")
    assert forced.returncode == 0 and (landing / DAYS[0] / "_manifest.json").read_bytes() != manifest


def test_a_date_with_nothing_delivered_publishes_nothing_and_says_so_in_one_line(tmp_path):
    landing = generate_landing(tmp_path / "landing", DAYS[0], 1, 100, seed=2)
    home = tmp_path / "home"
    run = cli("run", "--landing", str(landing), "--home", str(home), "--date", "2026-03-09")
    one_line_error(run, 1, "2026-03-09: nothing delivered", "nothing published")
    assert len(run.stderr.strip().splitlines()) <= 2  # that line (and at most the key's source)
    assert not (home / "warehouse").exists() and not (home / "reports").exists()
    assert "daily pack" not in run.stdout


def test_running_an_earlier_date_into_a_home_with_later_dates_warns_with_the_command(tmp_path):
    from midoffice.config import settings_from
    from midoffice.ingest import ingest_feed
    from midoffice.lock import home_lock

    landing = generate_landing(tmp_path / "landing", DAYS[0], 2, 100, seed=2)
    home = tmp_path / "home"
    # The later date has been run into the home (its run ledger says so: one stage of it is enough).
    assert ingest_feed(settings_from(landing, home), DAYS[1], "books", "later-first")["status"] == "LOADED"
    # The warning is given before the run starts, and it is a warning, not a refusal: the run goes
    # on to take the home. (Another run holds it here, so that this one stops there without
    # running Airflow: what it would build is the sample run's business, not this test's.)
    with home_lock(home):
        run = cli("run", "--landing", str(landing), "--home", str(home), "--date", DAYS[0])
    expected = f"midoffice run --landing {landing.resolve()} --home {home.resolve()} --from 2026-03-03 --to {DAYS[1]}"
    assert "already has later business dates" in run.stderr and expected in run.stderr
    one_line_error(run, 2, f"{home.resolve()} is being run by pid {os.getpid()}")


@pytest.mark.parametrize("command", ["generate", "run", "report", "query", "status"])
def test_every_help_describes_each_option_the_date_format_and_the_exit_codes(command):
    text = cli(command, "--help").stdout
    options = text.split("options:", 1)[1]
    entries = re.split(r"\n  (?=-)", "\n" + options.split("\n\n")[0].strip("\n"))
    for entry in (e for e in entries if e.strip()):
        flag, _, rest = entry.strip().partition("  ")
        assert rest.strip() or "\n" in entry, f"{command}: option {flag!r} has no description"
    assert "exit status" in text
    if command != "query":
        assert "YYYY-MM-DD" in text
