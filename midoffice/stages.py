"""Stage entry points that combine a few steps; the DAG tasks and the CLI both call these."""

from __future__ import annotations

from midoffice import control
from midoffice.config import Settings
from midoffice.gate import decide_gate


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
