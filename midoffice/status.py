"""`midoffice status`: what happened to each business date, told honestly.

A date's outcome comes from the run ledger the stages write under `<home>/lake/control/runs/`
(and what the published warehouse's `pipeline_runs` holds), so a build or publication that
failed shows here at once, not only after a later date publishes its ledger. Feed facts (gate,
rows, quarantined, freshness) come from the control records of the current attempt, else from the
published `dq_feed_health`.

One line per date by default; `--date D` gives every feed and every stage of that date, with
reasons in full.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import duckdb

from midoffice import lake
from midoffice.config import Settings, default_home
from midoffice.query import EXIT_OK, EXIT_USAGE, _quiet_broken_pipe, open_published, render_table

# Outcomes, worst first: what a person must do something about comes first.
NOT_PUBLISHED = "NOT PUBLISHED"  # the build or the publication failed, or has not run yet
FAILED = "FAILED"                # published, but a later stage (report, notify, a task) failed
GATES_FAILED = "GATES FAILED"    # published; the marts of the failed feeds kept their previous rows
WARNINGS = "WARNINGS"            # every gate passed, but records were quarantined or files came late
OK = "OK"


@dataclass(frozen=True)
class StageRecord:
    run_id: str
    business_date: str
    stage: str
    status: str
    started_at: str
    finished_at: str
    message: str = ""


@dataclass(frozen=True)
class FeedFacts:
    feed: str
    gate: str | None
    received: int | None
    loaded: int | None
    quarantined: int | None
    freshness: str | None
    reason: str | None


@dataclass
class DateStatus:
    business_date: str
    outcome: str
    published_at: str | None
    gates_failed: list[str] = field(default_factory=list)
    quarantined: int = 0
    late: list[str] = field(default_factory=list)
    failed_stages: list[StageRecord] = field(default_factory=list)
    feeds: list[FeedFacts] = field(default_factory=list)
    stages: list[StageRecord] = field(default_factory=list)


# --- reading the facts -------------------------------------------------------------------------

def ledger_on_disk(settings: Settings, business_date: str = "*") -> list[StageRecord]:
    """Every stage record the pipeline wrote under lake/control/runs (of one date, or all); a
    killed writer's temporaries, `.tmp-*`, and unreadable files are skipped."""
    records = []
    root = settings.control / "runs"
    for path in sorted(root.glob(f"{business_date}/*/[!.]*.json")) if root.is_dir() else []:
        try:
            raw = json.loads(path.read_text())
            records.append(_stage_record(raw))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return records


def _stage_record(raw: dict) -> StageRecord:
    return StageRecord(run_id=str(raw["run_id"]), business_date=str(raw["business_date"]), stage=str(raw["stage"]),
                       status=str(raw["status"]), started_at=str(raw.get("started_at") or ""),
                       finished_at=str(raw.get("finished_at") or ""), message=str(raw.get("message") or ""))


PUBLISHED_RUNS_SQL = """
SELECT run_id, CAST(business_date AS VARCHAR) AS business_date, stage, status,
       strftime(started_at, '%Y-%m-%dT%H:%M:%S.%fZ') AS started_at,
       strftime(finished_at, '%Y-%m-%dT%H:%M:%S.%fZ') AS finished_at, coalesce(message, '') AS message
FROM pipeline_runs
"""
PUBLISHED_FEEDS_SQL = """
SELECT CAST(business_date AS VARCHAR), feed, gate, received_rows, loaded_rows, quarantined_rows, freshness, reason
FROM dq_feed_health
"""


def published_facts(settings: Settings) -> tuple[list[StageRecord], dict[tuple[str, str], FeedFacts]]:
    if not lake.exists(settings):
        return [], {}
    try:
        con = open_published(settings)
    except (lake.LakeError, duckdb.Error) as exc:  # a broken catalog: the ledger on disk still tells
        print(f"midoffice: warning: cannot read {lake.describe(settings)} ({str(exc).splitlines()[0]}); "
              "showing the run ledger on disk only", file=sys.stderr)
        return [], {}
    try:
        cur = con.execute(PUBLISHED_RUNS_SQL)
        names = [d[0] for d in cur.description]
        runs = [_stage_record(dict(zip(names, row))) for row in cur.fetchall()]
        feeds = {(r[0], r[1]): FeedFacts(*r[1:]) for r in con.execute(PUBLISHED_FEEDS_SQL).fetchall()}
    finally:
        con.close()
    return runs, feeds


def control_feed_facts(settings: Settings, business_date: str, feed: str) -> FeedFacts | None:
    """The current attempt's facts of a feed and date, from its ingest and gate records."""
    from midoffice.control import read_record

    ingest = read_record(settings, "ingest", feed, business_date)
    gate = read_record(settings, "gate", feed, business_date)
    if not ingest and not gate:
        return None
    ingest, gate = ingest or {}, gate or {}
    return FeedFacts(feed=feed, gate=gate.get("gate"), received=ingest.get("received_rows"),
                     loaded=ingest.get("loaded_rows"), quarantined=ingest.get("quarantined_rows"),
                     freshness=ingest.get("freshness"), reason=gate.get("reason") or ingest.get("error"))


# --- judging a date ----------------------------------------------------------------------------

def current_attempt(records: list[StageRecord]) -> list[StageRecord]:
    """The records of a date's latest attempt: from the start of its latest ingest run on (a
    rerun starts with ingest), the latest record of each stage. A failure that a later rerun
    replaced is history, not the date's state."""
    ingests = [r for r in records if r.stage.startswith("ingest:")]
    if ingests:
        latest_run = max(ingests, key=lambda r: r.finished_at).run_id
        start = min(r.started_at for r in records if r.run_id == latest_run)
        records = [r for r in records if r.finished_at >= start]
    latest: dict[str, StageRecord] = {}
    for r in sorted(records, key=lambda r: r.finished_at):
        latest[r.stage] = r
    return sorted(latest.values(), key=lambda r: (r.finished_at, r.stage))


def _is_gate_task(stage: str) -> bool:
    # a failed gate fails the ingest DAG's `gates` task by design (before: `validate_<feed>` and
    # `decided_<feed>`, still in older ledgers): the gate column says it, not "FAILED"
    return stage == "task:gates" or stage.startswith(("task:validate_", "task:decided_"))


def judge(business_date: str, records: list[StageRecord], feeds: list[FeedFacts]) -> DateStatus:
    stages = current_attempt(records)
    by_stage = {r.stage: r for r in stages}
    publish = by_stage.get("publish")
    failed = [r for r in stages if r.status == "FAILED" and not _is_gate_task(r.stage)]
    gates_failed = sorted(f.feed for f in feeds if f.gate and f.gate != "PASS")
    late = sorted(f.feed for f in feeds if f.freshness and f.freshness not in ("ON_TIME", "UNKNOWN"))
    quarantined = sum(f.quarantined or 0 for f in feeds)
    if publish is None or publish.status != "SUCCESS" or any(r.stage == "build" for r in failed):
        outcome = NOT_PUBLISHED
    elif failed:
        outcome = FAILED
    elif gates_failed:
        outcome = GATES_FAILED
    elif quarantined or late:
        outcome = WARNINGS
    else:
        outcome = OK
    return DateStatus(business_date=business_date, outcome=outcome,
                      published_at=publish.finished_at if publish and publish.status == "SUCCESS" else None,
                      gates_failed=gates_failed, quarantined=quarantined, late=late, failed_stages=failed,
                      feeds=sorted(feeds, key=lambda f: f.feed), stages=stages)


def date_status(settings: Settings, business_date: str) -> DateStatus:
    """One date, judged from the run ledger on disk and the control records (no warehouse read)."""
    from midoffice.contracts import feed_names

    records = ledger_on_disk(settings, business_date)
    feeds = [control_feed_facts(settings, business_date, f) for f in feed_names()]
    return judge(business_date, records, [f for f in feeds if f is not None])


def failed_stage_names(s: DateStatus) -> list[str]:
    """The failed stages, each once: a stage's own record and its task's ("publish",
    "task:publish") are one failure."""
    return list(dict.fromkeys(r.stage.removeprefix("task:") for r in s.failed_stages))


def one_line(s: DateStatus) -> str:
    """What a date came to, for the console: the outcome first, then what a person must know."""
    parts = []
    if s.gates_failed:
        parts.append("gates failed: " + ", ".join(s.gates_failed))
    if s.quarantined:
        counts = ", ".join(f"{f.feed} {f.quarantined:,}" for f in s.feeds if f.quarantined)
        parts.append(f"{s.quarantined:,} record{'s' if s.quarantined != 1 else ''} quarantined ({counts})")
    if s.late:
        parts.append("late: " + ", ".join(s.late))
    if s.failed_stages:
        parts.append("failed: " + ", ".join(failed_stage_names(s)))
    return s.outcome + (f" ({'; '.join(parts)})" if parts else "")


def explain_gate_failure(settings: Settings, business_date: str, feed: str, top: int = 3) -> str:
    """A failed gate as an operator needs it: the file, the cause, the rules that quarantined most,
    and what to do next."""
    from midoffice.control import read_record

    ingest = read_record(settings, "ingest", feed, business_date) or {}
    gate = read_record(settings, "gate", feed, business_date) or {}
    cause = gate.get("reason") or ingest.get("error") or "failed"
    rules = sorted((ingest.get("rules") or {}).items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    text = f"GATE FAILED {business_date} {feed} ({ingest.get('file') or feed}): {cause}"
    if rules:
        text += "; top rules: " + ", ".join(f"{rule} {count:,}" for rule, count in rules)
    return text


def date_statuses(settings: Settings) -> list[DateStatus]:
    from midoffice.contracts import feed_names

    published_runs, published_feeds = published_facts(settings)
    records: dict[tuple[str, str], StageRecord] = {}
    for r in published_runs + ledger_on_disk(settings):  # the same record in both: one
        records[(r.run_id, r.stage)] = r
    by_date: dict[str, list[StageRecord]] = {}
    for r in records.values():
        by_date.setdefault(r.business_date, []).append(r)
    statuses = []
    for d in sorted(by_date):
        feeds = [control_feed_facts(settings, d, f) or published_feeds.get((d, f)) for f in feed_names()]
        statuses.append(judge(d, by_date[d], [f for f in feeds if f is not None]))
    return statuses


# --- printing ----------------------------------------------------------------------------------

SUMMARY_HEADERS = ["business_date", "outcome", "gates_failed", "quarantined", "late", "published_at", "what failed"]
FEED_HEADERS = ["feed", "gate", "received", "loaded", "quarantined", "freshness", "reason"]
STAGE_HEADERS = ["stage", "status", "finished_at", "run_id", "message"]
NO_CUT = 10**9  # reasons and messages are printed whole: a cut path is no use to an operator


def _names(items: list[str]) -> str:
    return ", ".join(items) if items else ""


def summary_rows(statuses: list[DateStatus]) -> list[tuple]:
    return [(s.business_date, s.outcome, _names(s.gates_failed), s.quarantined, _names(s.late),
             (s.published_at or "")[:19].replace("T", " "),
             _names(failed_stage_names(s))) for s in statuses]


def show_status(home: str | None, business_date: str | None = None, out: TextIO | None = None) -> int:
    """`midoffice status [--date D]`: exit 0 with the report, 2 when the home has no run at all."""
    out = out or sys.stdout
    settings = Settings(landing=Path(home).resolve() if home else default_home(),
                        home=Path(home).resolve() if home else default_home())
    statuses = date_statuses(settings)
    if not statuses:
        print(f"midoffice: error: no run recorded under {settings.home} (run `midoffice run` first)", file=sys.stderr)
        return EXIT_USAGE
    try:
        if business_date:
            chosen = [s for s in statuses if s.business_date == business_date]
            if not chosen:
                print(f"midoffice: error: no run recorded for {business_date} under {settings.home}", file=sys.stderr)
                return EXIT_USAGE
            _print_date(chosen[0], out)
        else:
            for text in render_table(SUMMARY_HEADERS, summary_rows(statuses), width=NO_CUT, null=""):
                out.write(text + "\n")
            out.write(_closing_line(statuses) + "\n")
        out.flush()
    except BrokenPipeError:
        return _quiet_broken_pipe()
    return EXIT_OK


def _print_date(s: DateStatus, out: TextIO) -> None:
    out.write(f"{s.business_date}: {s.outcome}"
              + (f", published {s.published_at[:19].replace('T', ' ')} UTC" if s.published_at else "") + "\n\n")
    feeds = [(f.feed, f.gate, f.received, f.loaded, f.quarantined, f.freshness, f.reason) for f in s.feeds]
    for text in render_table(FEED_HEADERS, feeds, width=NO_CUT, null=""):
        out.write(text + "\n")
    out.write("\n")
    stages = [(r.stage, r.status, r.finished_at[:19].replace("T", " "), r.run_id, r.message) for r in s.stages]
    for text in render_table(STAGE_HEADERS, stages, width=NO_CUT, null=""):
        out.write(text + "\n")


def _closing_line(statuses: list[DateStatus]) -> str:
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s.outcome] = counts.get(s.outcome, 0) + 1
    order = [NOT_PUBLISHED, FAILED, GATES_FAILED, WARNINGS, OK]
    parts = [f"{counts[o]} {o}" for o in order if o in counts]
    dates = [s.business_date for s in statuses]
    head = f"{len(dates)} business date{'s' if len(dates) != 1 else ''}, {dates[0]} to {dates[-1]}: "
    return head + ", ".join(parts) + ("" if set(counts) == {OK} else "; details: midoffice status --date D")
