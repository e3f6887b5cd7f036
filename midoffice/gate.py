"""The gate: may a feed's day go into the warehouse? (DOMAIN §3.5)

PASS needs all of: the file was read (no file-level failure), conservation holds, the quarantined
share is within the threshold, and the Great Expectations suite passed on the loaded records.
"""

from __future__ import annotations

from midoffice import control
from midoffice.config import Settings


def decide_gate(settings: Settings, business_date: str, feed: str, run_id: str) -> dict:
    ingest = control.read_record(settings, "ingest", feed, business_date) or {}
    validation = control.read_record(settings, "validation", feed, business_date) or {}
    reasons: list[str] = []
    if ingest.get("status") != "LOADED":
        reasons.append(ingest.get("error") or "not ingested")
    else:
        if not ingest.get("conservation_ok"):
            reasons.append(
                f"conservation broken: received {ingest.get('received_rows')} != loaded "
                f"{ingest.get('loaded_rows')} + quarantined {ingest.get('quarantined_rows')}"
            )
        received = ingest.get("received_rows") or 0
        share = (ingest.get("quarantined_rows", 0) / received) if received else 0.0
        if share > settings.quarantine_threshold:
            reasons.append(
                f"{ingest.get('quarantined_rows')} of {received} records quarantined "
                f"({share:.2%} > {settings.quarantine_threshold:.2%})"
            )
        if not validation.get("success"):
            failed = ", ".join(
                f"{f.get('expectation_type')}({f.get('column') or ''})" for f in validation.get("failed", [])[:5]
            )
            reasons.append("expectations failed: " + (failed or validation.get("reason", "no validation result")))
    record = {
        "feed": feed,
        "business_date": business_date,
        "run_id": run_id,
        "gate": "FAIL" if reasons else "PASS",
        "reason": "; ".join(reasons) or None,
    }
    control.write_record(settings, "gate", feed, business_date, record)
    return record


def gates_for(settings: Settings, business_date: str, feeds: list[str]) -> dict[str, dict]:
    return {f: control.read_record(settings, "gate", f, business_date) or {"gate": "FAIL", "reason": "no gate decision"}
            for f in feeds}
