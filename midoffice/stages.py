"""Stage entry points that combine a few steps; the DAG tasks and the CLI both call these."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from midoffice import control
from midoffice.config import Settings
from midoffice.gate import decide_gate

log = logging.getLogger(__name__)


class GatesUndecided(RuntimeError):
    """Some feeds of a date have no gate decision: their ingest or validation broke (not the
    data: a fault the orchestrator retries). The feeds that were decided keep their decision."""


def validate_and_gate(settings: Settings, business_date: str, feed: str, run_id: str) -> dict:
    """Run the feed's Great Expectations suite on its loaded records, then decide its gate."""
    from midoffice.validate import validate_feed

    started_at = control.utc_now()
    ingest = control.read_record(settings, "ingest", feed, business_date) or {}
    if ingest.get("status") == "LOADED":
        result = validate_feed(settings, business_date, feed, run_id)
        status = "SUCCESS" if result.get("success") else "FAILED"
        message = "" if result.get("success") else f"{result.get('expectations_failed')} expectations failed"
    else:
        # Nothing was loaded, so there is nothing for the suite to look at; the gate says why.
        control.write_record(settings, "validation", feed, business_date, {
            "feed": feed, "business_date": business_date, "run_id": run_id, "success": False,
            "reason": "not validated: the file was not loaded", "expectations_run": 0,
            "expectations_failed": 0, "failed": [],
        })
        status, message = "FAILED", "not validated: the file was not loaded"
        result = {}
    gate = decide_gate(settings, business_date, feed, run_id)
    control.record_stage(
        settings, run_id, business_date, f"validate:{feed}", status, started_at,
        rows_in=result.get("rows_validated"), message=gate.get("reason") or message,
    )
    return gate


def publish_date(settings: Settings, business_date: str, run_id: str) -> dict:
    """The publish stage: the run ledger brought up to date in the build (so that the publication
    shows this run's build), then the marts published. The stage joins the two so that
    publication never imports the build."""
    from midoffice.publish import publish
    from midoffice.warehouse import refresh_run_ledger

    return publish(settings, business_date, run_id, refresh_ledger=refresh_run_ledger)


def awaited_feeds(settings: Settings, business_date: str) -> list[str]:
    """The feeds of the contract that the date's manifest does not list yet, or whose file is not
    there yet (a late delivery), in ingest order."""
    from midoffice.contracts import ingest_order
    from midoffice.landing import feed_delivered

    return [f for f in ingest_order() if not feed_delivered(settings.landing, business_date, f)]


@dataclass
class DateGates:
    """What `decide_gates` came to for a date: each feed's gate record (PASS or FAIL) and the
    feeds it could not decide, with why (an exception, or a feed they depend on that broke)."""
    business_date: str
    run_id: str
    gates: dict[str, dict] = field(default_factory=dict)
    undecided: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> dict[str, str]:
        return {f: g.get("reason") or "failed" for f, g in self.gates.items() if g.get("gate") != "PASS"}

    def summary(self) -> dict:
        """Small and JSON-able: the asset event's extra and the task's XCom."""
        return {"business_date": self.business_date, "run_id": self.run_id,
                "gates": {f: g.get("gate") for f, g in self.gates.items()},
                "failed": self.failed, "undecided": dict(self.undecided)}


def decided_by(settings: Settings, business_date: str, feed: str, run_id: str) -> dict | None:
    """The feed's gate record if this run decided it (PASS or FAIL), else None."""
    gate = control.read_record(settings, "gate", feed, business_date) or {}
    return gate if gate.get("run_id") == run_id and gate.get("gate") in ("PASS", "FAIL") else None


def decide_gates(settings: Settings, business_date: str, run_id: str) -> DateGates:
    """Every feed of the contract for one date, in ingest order: ingest, validate (the GX suite)
    and gate. One call validates all feeds in one process, so Great Expectations is imported
    once, not once per feed.

    Each feed is its own unit: a feed whose ingest or validation raises (a fault, not bad data:
    bad data is a FAIL gate) is left undecided, the feeds that depend on it are not run, and the
    others go on. Then `GatesUndecided` is raised so that the orchestrator retries; a retry of
    the same run (same `run_id`) keeps the gates this run decided already and redoes only the
    undecided feeds.

    While a feed is validated (Python: GX and pandas), the next feed is ingested on a thread
    (DuckDB, which lets go of the GIL), unless it depends on the feed being validated: the two
    use both cores (at 1M trades a day, 11 s of ingest and 5 s of validation took 15.4 s one after
    the other)."""
    from midoffice.contracts import get_feed, ingest_order

    order = ingest_order()
    outcome = DateGates(business_date, run_id)

    def broken_by(feed: str) -> list[str]:  # what the feed depends on that was left undecided
        return [d for d in get_feed(feed).depends_on if d in outcome.undecided]

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-ahead") as loader:
        ahead: Future | None = None  # the ingest of order[i], started while order[i - 1] was validated
        for i, feed in enumerate(order):
            loading, ahead = ahead, None
            kept = decided_by(settings, business_date, feed, run_id)
            if kept is not None:  # decided by an earlier try of this run
                outcome.gates[feed] = kept
                continue
            broken = broken_by(feed)
            if broken:
                outcome.undecided[feed] = f"not run: {', '.join(broken)} (which it depends on) did not finish"
                continue
            try:
                if loading is not None:
                    loading.result()  # raises what the ingest raised
                else:
                    _ingest(settings, business_date, feed, run_id)
                following = order[i + 1] if i + 1 < len(order) else None
                if (following and feed not in get_feed(following).depends_on and not broken_by(following)
                        and decided_by(settings, business_date, following, run_id) is None):
                    ahead = loader.submit(_ingest, settings, business_date, following, run_id)
                outcome.gates[feed] = validate_and_gate(settings, business_date, feed, run_id)
            except Exception as exc:  # recorded by ingest (its ledger row); the retry redoes the feed
                log.exception("%s %s: no gate decided", business_date, feed)
                outcome.undecided[feed] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
    if outcome.undecided:
        raise GatesUndecided(f"{business_date}: no gate decided for " + "; ".join(
            f"{f} ({why})" for f, why in outcome.undecided.items()) + " (retried; the decided feeds are kept)")
    return outcome


def _ingest(settings: Settings, business_date: str, feed: str, run_id: str) -> dict:
    from midoffice.ingest import ingest_feed

    return ingest_feed(settings, business_date, feed, run_id)


def failed_gates(settings: Settings, business_date: str, run_id: str) -> dict[str, str]:
    """Feed -> reason for every gate this run decided as FAIL (the `gates` task's verdict)."""
    from midoffice.contracts import ingest_order

    decided = {f: decided_by(settings, business_date, f, run_id) for f in ingest_order()}
    return {f: g.get("reason") or "failed" for f, g in decided.items() if g and g["gate"] != "PASS"}
