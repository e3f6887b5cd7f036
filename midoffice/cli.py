"""The `midoffice` command: a thin layer over the functions the Airflow DAGs call.

Exit status: 0 every gate passed, 1 a gate or a stage failed (the rest still ran) or a date had
nothing delivered, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

EXIT_OK, EXIT_GATE_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_CODES = ("exit status: 0 done (every gate passed); 1 a gate or a stage failed, or a date had nothing "
              "delivered (the rest still ran; the message names date, feed, file and cause); 2 usage or "
              "configuration error. Dates are YYYY-MM-DD.")


class UsageError(Exception):
    pass


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}")


def _timestamp(value: str):
    from datetime import datetime, timezone

    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a timestamp (ISO 8601, e.g. 2026-01-07T08:00:00Z): {value!r}")
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _not_negative(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}")
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
        return value
    return parse


def _progress_printer():
    """Progress on stderr: a line that ends in '…' is overwritten by the next on a terminal."""
    tty = sys.stderr.isatty()
    pending = {"open": False}

    def show(message: str) -> None:
        if tty:
            prefix = "\r\033[K" if pending["open"] else ""
            pending["open"] = message.endswith("…")
            print(prefix + message, end="" if pending["open"] else "\n", file=sys.stderr, flush=True)
        else:
            print(message, file=sys.stderr, flush=True)
    return show


def cmd_generate(args) -> int:
    from midoffice.sample import generate

    if args.days < 1:
        raise UsageError(f"--days must be at least 1 (got {args.days})")
    if args.trades_per_day < 1:
        raise UsageError(f"--trades-per-day must be at least 1 (got {args.trades_per_day})")
    out = Path(args.out)
    delivered = _delivered_dates(out, out)
    if delivered and not args.force:
        raise UsageError(f"{out} already holds deliveries ({delivered[0]} to {delivered[-1]}): generating into it "
                         "would overwrite them; give another --out, or --force to overwrite")
    summary = generate(Path(args.out), args.start, args.days, trades_per_day=args.trades_per_day,
                       seed=args.seed, faults=args.faults, progress=_progress_printer())
    print(f"generated {len(summary.get('dates', []))} business dates into {args.out} "
          f"in {summary.get('seconds', 0):.1f}s")
    return EXIT_OK


def _delivered_dates(landing: Path, home: Path) -> list[str]:
    """The business dates a landing folder has a manifest for, in order (midoffice.discovery)."""
    from midoffice.config import Settings
    from midoffice.discovery import delivered_dates

    return delivered_dates(Settings(landing=landing.resolve(), home=home.resolve()))


def _later_dates_in_home(settings, last: str) -> list[str]:
    """Business dates after `last` that the home already ran (their run ledger folders)."""
    from midoffice.calendar import is_iso_date

    runs = settings.control / "runs"
    return sorted(p.name for p in runs.iterdir() if is_iso_date(p.name) and p.name > last) if runs.is_dir() else []


def _settings(args):
    from midoffice.config import settings_from

    landing = Path(args.landing)
    if not landing.is_dir():
        raise UsageError(f"landing folder not found: {landing}")
    return settings_from(landing, args.home)


def cmd_run(args) -> int:
    from midoffice.runner import plan_dates

    settings = _settings(args)
    if args.date and (args.from_ or args.to):
        raise UsageError("give either --date, or --from and --to, not both")
    if args.date:
        if args.date.weekday() >= 5:
            raise UsageError(f"{args.date} is not a business date (weekend)")
        first = last = args.date
    else:
        if not (args.from_ and args.to):
            raise UsageError("give --date, or both --from and --to")
        if args.to < args.from_:
            raise UsageError(f"--to {args.to} is before --from {args.from_}")
        first, last = args.from_, args.to
    try:
        plan = plan_dates(settings.landing, first, last)
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
        from midoffice.calendar import latest_calendars_file

        raise UsageError(f"cannot read {latest_calendars_file(settings.landing, last)} (the landing's calendars): "
                         f"{type(exc).__name__}: {exc}")
    if plan.calendars_file is None:
        print("no calendars.csv in the landing: business dates are weekdays (no FIRM holiday known)",
              file=sys.stderr)
    if args.date and plan.holidays_skipped:
        raise UsageError(f"{args.date} is not a business date (a FIRM holiday in the landing's calendars.csv)")
    for day in plan.holidays_skipped:
        print(f"skipping {day}: a FIRM holiday (the landing's calendars.csv)", file=sys.stderr)
    dates = plan.dates
    if not dates:
        raise UsageError("no business date in the range")
    delivered = set(_delivered_dates(settings.landing, settings.home))
    for day in (d for d in dates if d not in delivered):
        print(f"{day}: nothing delivered (no {settings.landing / day / '_manifest.json'}): nothing run, "
              "nothing published for it", file=sys.stderr)
    dates = [d for d in dates if d in delivered]
    if not dates:
        return EXIT_GATE_FAILED
    _restatement_reason(settings, dates, args.reason, args.by)
    later = _later_dates_in_home(settings, dates[-1])
    if later:
        after = date.fromisoformat(dates[-1]) + timedelta(days=1)
        print(f"warning: {settings.home} already has later business dates ({later[0]} to {later[-1]}); they carry "
              f"state from the dates run now (breach streaks, VaR history, recon ages) and must be run again "
              f"afterwards: midoffice run --landing {settings.landing} --home {settings.home} "
              f"--from {after.isoformat()} --to {later[-1]} --reason TEXT", file=sys.stderr)
    from midoffice.lock import HomeBusy, home_lock

    if args.development_key:  # the DAG tasks run in this process and read the same environment
        from midoffice.pseudonym import DEV_KEY_ENV

        os.environ[DEV_KEY_ENV] = "1"
    _refuse_a_bad_key_before_airflow(settings)
    started = time.time()
    try:
        # Held from before Airflow's metadata DB is migrated: two runs on one home share it too.
        with home_lock(settings.home, wait_seconds=args.wait):
            outcomes = _run_dates(settings, dates)
    except HomeBusy as exc:
        raise UsageError(str(exc))
    failed = [o for o in outcomes if not o.ok]
    from midoffice import lake

    print(f"ran {len(outcomes)} business dates; published warehouse: {lake.describe(settings)}")
    for o in outcomes:
        pack = settings.reports / o.business_date / "index.html"
        if pack.is_file() and pack.stat().st_mtime >= started:  # written by this run, not an earlier one
            print(f"daily pack {o.business_date}: {pack}")
    from midoffice.status import explain_gate_failure

    last = max([dates[-1], *_later_dates_in_home(settings, dates[-1])])
    for o in failed:
        for feed in o.failed_gates:
            print(explain_gate_failure(settings, o.business_date, feed), file=sys.stderr)
        if o.failed_gates:
            print(f"  next: have the sender redeliver, then run that date and every later one again: midoffice run "
                  f"--landing {settings.landing} --home {settings.home} --from {o.business_date} --to {last}",
                  file=sys.stderr)
        if o.failed_tasks:
            print(f"FAILED {o.business_date}: tasks {', '.join(o.failed_tasks)}; details: midoffice status --date "
                  f"{o.business_date} --home {settings.home}; tracebacks: {o.log}", file=sys.stderr)
    return EXIT_GATE_FAILED if failed else EXIT_OK


def _refuse_a_bad_key_before_airflow(settings) -> None:
    """A missing or weak pseudonymisation key refused before Airflow is prepared (its metadata DB
    migrated, Airflow imported: seconds), wherever Airflow cannot change the answer: a key in the
    environment wins over the Airflow connection; without it or the development key, the
    connection can only come from an environment variable, a secrets backend or a metadata DB that
    exists already. Otherwise the key is resolved once Airflow is ready (`_run_dates`)."""
    from midoffice.pseudonym import AIRFLOW_CONN_ID, KEY_ENV, MissingKeyError, development_key_opted_in, resolve_key

    if os.environ.get(KEY_ENV):
        decided = True
    elif development_key_opted_in():
        return  # nothing to refuse: the connection, if any, or the development key
    else:
        elsewhere = (f"AIRFLOW_CONN_{AIRFLOW_CONN_ID.upper()}", "AIRFLOW__SECRETS__BACKEND", "AIRFLOW_HOME",
                     "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
        decided = not any(os.environ.get(name) for name in elsewhere) \
            and not (settings.home / "airflow" / "airflow.db").exists()
    if decided:
        try:
            resolve_key(settings)
        except MissingKeyError as exc:
            raise UsageError(str(exc))


def _run_dates(settings, dates: list[str]):
    from midoffice.pseudonym import MissingKeyError, resolve_key
    from midoffice.runner import prepare_airflow, run_dates

    prepare_airflow(settings)  # before anything imports airflow: it reads AIRFLOW_HOME once
    import airflow.sdk  # noqa: F401  (now configured: the key may be an Airflow connection)

    try:
        _key, source = resolve_key(settings)
    except MissingKeyError as exc:
        raise UsageError(str(exc))
    print(f"pseudonymisation key: {source}", file=sys.stderr)
    return run_dates(settings, dates, progress=_progress_printer())


def _restatement_reason(settings, dates: list[str], reason: str | None, by: str | None) -> None:
    """A rerun of published dates needs a reason (DOMAIN §10.2): refused without one, recorded
    with people's actions (for the publication to find) with one."""
    from midoffice import lake
    from midoffice.restate import record_reason, refusal

    published = lake.published_dates(settings)
    again = [d for d in dates if d in published]
    if not again:
        return
    if not (reason or "").strip():
        raise UsageError(refusal(again[0], published[again[0]])
                         + (f" (also published: {', '.join(again[1:])})" if again[1:] else ""))
    record_reason(settings, again, reason, by)
    print(f"restating {', '.join(again)}: {reason.strip()}", file=sys.stderr)


def cmd_restate(args) -> int:
    """Record why a published date will be run again (before a scheduler's rerun)."""
    from midoffice import lake
    from midoffice.config import Settings, default_home
    from midoffice.restate import record_reason

    home = Path(args.home).resolve() if args.home else default_home()
    settings = Settings(landing=home, home=home)
    day = args.date.isoformat()
    published = lake.published_dates(settings)
    if day not in published:
        raise UsageError(f"{day} is not published: running it is not a restatement, no reason is needed")
    record_reason(settings, [day], args.reason, args.by)
    print(f"{day} (published in version {published[day]}) may be run again: {args.reason.strip()}")
    return EXIT_OK


def cmd_signoff(args) -> int:
    from midoffice.config import Settings, default_home
    from midoffice.signoff import SignoffRefused, sign_off

    home = Path(args.home).resolve() if args.home else default_home()
    settings = Settings(landing=home, home=home)
    try:
        s = sign_off(settings, args.date.isoformat(), args.by, args.comment)
    except SignoffRefused as exc:
        raise UsageError(str(exc))
    who = f"signed by {s.signed_by} (prepared by {s.prepared_by})" if s.state == "SIGNED" else \
        f"prepared by {s.prepared_by}; a different person signs it with the same command"
    print(f"{s.business_date} version {s.version}: {s.state}, {who}")
    return EXIT_OK


def cmd_versions(args) -> int:
    from midoffice.versions import show_versions

    return show_versions(args.home, args.format, attach=args.attach)


def cmd_report(args) -> int:
    from midoffice.config import Settings, default_home
    from midoffice.report import NothingPublishedForDate, ReportError, build_report

    home = Path(args.home).resolve() if args.home else default_home()
    settings = Settings(landing=home, home=home)
    from midoffice import lake

    if not lake.exists(settings):
        raise UsageError(f"nothing published yet in {home} (run `midoffice run` first)")
    try:
        summary = build_report(settings, args.date.isoformat(), run_id="cli-report")
    except NothingPublishedForDate as exc:
        raise UsageError(str(exc))
    except ReportError as exc:
        print(f"midoffice: report incomplete: {exc}", file=sys.stderr)
        return EXIT_GATE_FAILED
    print(summary["report"])
    return EXIT_OK


def cmd_query(args) -> int:
    from midoffice.query import run_query

    # Only what was given: run_query's defaults are the bounds' one source.
    bounds = {name: (value or None) for name, value in (("timeout", args.timeout), ("max_rows", args.max_rows))
              if value is not None}
    if args.as_of_version is not None and args.as_of is not None:
        raise UsageError("give --as-of-version or --as-of, not both")
    return run_query(args.sql, args.home, args.format, version=args.as_of_version,
                     as_of=args.as_of.isoformat() if args.as_of else None, **bounds)


def cmd_status(args) -> int:
    from midoffice.status import show_status

    return show_status(args.home, args.date.isoformat() if args.date else None)


def cmd_dictionary(args) -> int:
    from midoffice.dictionary import main as write_dictionary

    return write_dictionary((["--out", args.out] if args.out else []) + (["--check"] if args.check else []))


def cmd_suites(args) -> int:
    from midoffice.suites import write_suites

    for path in write_suites():
        print(path)
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="midoffice", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write deterministic sample feeds into a landing folder",
                       description="Write sample feeds (every feed, a manifest per date) for DAYS business dates "
                                   "from START into OUT. Deterministic: the same arguments give the same bytes.",
                       epilog=EXIT_CODES)
    g.add_argument("--out", required=True, metavar="DIR", help="the landing folder to write (one folder per date)")
    g.add_argument("--start", required=True, type=_date, metavar="YYYY-MM-DD",
                   help="first business date (a weekend or FIRM holiday moves to the next business date)")
    g.add_argument("--days", required=True, type=int, metavar="N", help="number of business dates, at least 1")
    g.add_argument("--trades-per-day", type=int, default=2000, metavar="N", help="trades per date (default 2000)")
    g.add_argument("--seed", type=int, default=42, metavar="N", help="random seed (default 42)")
    g.add_argument("--faults", action="store_true", help="inject realistic defects (listed in _faults.json)")
    g.add_argument("--force", action="store_true", help="overwrite deliveries already in --out")
    g.set_defaults(func=cmd_generate)

    r = sub.add_parser("run", help="run the midoffice_ingest and midoffice_warehouse DAGs for business dates",
                       description="Run business dates through the real Airflow DAGs in this process (Airflow's "
                                   "dag.test()): ingest, validate and gate every feed, build, publish, report. "
                                   "Dates run oldest first; FIRM holidays in a range are skipped and said.",
                       epilog=EXIT_CODES)
    r.add_argument("--landing", required=True, metavar="DIR", help="the senders' folder: <DIR>/<YYYY-MM-DD>/")
    r.add_argument("--home", default=None, metavar="DIR", help="where everything is written "
                                                               "(default $MIDOFFICE_HOME, else ./.midoffice)")
    r.add_argument("--date", type=_date, metavar="YYYY-MM-DD", help="one business date")
    r.add_argument("--from", dest="from_", type=_date, metavar="YYYY-MM-DD", help="first date of a range (with --to)")
    r.add_argument("--to", type=_date, metavar="YYYY-MM-DD", help="last date of a range (with --from)")
    r.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="when another run holds the home, wait up to this long for it (default: refuse at once)")
    r.add_argument("--development-key", action="store_true",
                   help="pseudonymise with the development key written in the code, when no key is configured: "
                        "for sample data only (anyone can re-identify its client keys)")
    r.add_argument("--reason", metavar="TEXT", help="why dates already published are run again (a restatement: "
                                                    "required then, recorded with the new version)")
    r.add_argument("--by", metavar="NAME", help="who gives the reason (default $MIDOFFICE_USER, else $USER)")
    r.set_defaults(func=cmd_run)

    rs = sub.add_parser("restate", help="record why a published date will be run again (before a scheduler rerun)",
                        epilog=EXIT_CODES)
    rs.add_argument("--date", required=True, type=_date, metavar="YYYY-MM-DD", help="a published business date")
    rs.add_argument("--reason", required=True, metavar="TEXT", help="why it is run again")
    rs.add_argument("--by", metavar="NAME", help="who (default $MIDOFFICE_USER, else $USER)")
    rs.add_argument("--home", default=None, metavar="DIR", help="default $MIDOFFICE_HOME, else ./.midoffice")
    rs.set_defaults(func=cmd_restate)

    so = sub.add_parser("signoff", help="prepare, then (a second person) sign the pack of a published date",
                        epilog="the first call on a date's current version PREPAREs it; a call by a different "
                               "person SIGNs it; a restatement makes the sign-off SUPERSEDED. " + EXIT_CODES)
    so.add_argument("--date", required=True, type=_date, metavar="YYYY-MM-DD", help="a published business date")
    so.add_argument("--by", required=True, metavar="NAME", help="who prepares or signs")
    so.add_argument("--comment", metavar="TEXT", help="kept with the sign-off")
    so.add_argument("--home", default=None, metavar="DIR", help="default $MIDOFFICE_HOME, else ./.midoffice")
    so.set_defaults(func=cmd_signoff)

    vs = sub.add_parser("versions", help="the published versions: number, time, run, dates, reason",
                        epilog="exit status: 0 the list; 2 nothing published yet.")
    vs.add_argument("--home", default=None, metavar="DIR", help="default $MIDOFFICE_HOME, else ./.midoffice")
    vs.add_argument("--format", choices=["table", "csv", "json"], default="table")
    vs.add_argument("--attach", nargs="?", const="current", metavar="N",
                    help="print instead the SQL that opens the lake (version N, or the current one) in DuckDB's "
                         "CLI or Python: duckdb -cmd \"$(midoffice versions --attach)\"")
    vs.set_defaults(func=cmd_versions)

    rep = sub.add_parser("report", help="(re)build the daily pack and extracts for a date", epilog=EXIT_CODES)
    rep.add_argument("--date", required=True, type=_date, metavar="YYYY-MM-DD", help="a published business date")
    rep.add_argument("--home", default=None, metavar="DIR", help="default $MIDOFFICE_HOME, else ./.midoffice")
    rep.set_defaults(func=cmd_report)

    qy = sub.add_parser("query", help="read-only SQL against the published warehouse",
                        description="Run one SELECT statement against the published warehouse. "
                                    "Anything else is refused before it runs.",
                        epilog="exit status: 0 the result; 2 the SQL was refused or failed, ran past --timeout, "
                               "or gave more than --max-rows rows, or nothing is published yet.")
    qy.add_argument("sql", help='the statement, e.g. "SELECT * FROM kpi_daily ORDER BY business_date"')
    qy.add_argument("--home", default=None, metavar="DIR", help="default $MIDOFFICE_HOME, else ./.midoffice")
    qy.add_argument("--format", choices=["table", "csv", "json"], default="table",
                    help="table (for reading; at most 10,000 rows), csv or json (every row, streamed)")
    qy.add_argument("--timeout", type=_not_negative(float), metavar="SECONDS",
                    help="stop the query after this many seconds (default 300; 0: no limit)")
    qy.add_argument("--max-rows", type=_not_negative(int), metavar="N",
                    help="csv/json: write at most N rows, then exit 2 (default 5,000,000; 0: no limit)")
    qy.add_argument("--as-of-version", type=_not_negative(int), metavar="N",
                    help="read published version N as it was (midoffice versions lists them)")
    qy.add_argument("--as-of", type=_timestamp, metavar="TIMESTAMP",
                    help="read the version that was current at this time (ISO 8601, UTC unless an offset is given)")
    qy.set_defaults(func=cmd_query)

    st = sub.add_parser("status", help="one line per business date: outcome, gates failed, quarantined, late, "
                                       "what failed (with --date: every feed and stage of that date)",
                        epilog="outcomes: OK; WARNINGS (records quarantined or files late); GATES FAILED (the "
                               "marts of those feeds kept their previous rows); FAILED (published, a later stage "
                               "failed); NOT PUBLISHED (the build or publication failed or has not run). "
                               "exit status: 0 the report; 2 no run recorded (for the date).")
    st.add_argument("--home", default=None, metavar="DIR", help="default $MIDOFFICE_HOME, else ./.midoffice")
    st.add_argument("--date", type=_date, metavar="YYYY-MM-DD", help="that date's feeds and stages, reasons in full")
    st.set_defaults(func=cmd_status)

    dc = sub.add_parser("dictionary", help="write the data dictionary (docs/DATA_DICTIONARY.md)")
    dc.add_argument("--out", metavar="FILE", help="default docs/DATA_DICTIONARY.md")
    dc.add_argument("--check", action="store_true", help="exit 1 when the committed dictionary is stale")
    dc.set_defaults(func=cmd_dictionary)

    su = sub.add_parser("suites", help="regenerate expectations/*.json from contracts/feeds.yaml")
    su.set_defaults(func=cmd_suites)

    from midoffice.people.cases import add_parser as add_case_parser
    add_case_parser(sub)  # `midoffice case ...`: the worklist's people (midoffice/people/cases.py)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"midoffice: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    sys.exit(main())
