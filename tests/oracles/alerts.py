"""The alerts a business date should raise, from the kpi and recon oracles.
"""

from __future__ import annotations


from oracles.kpi import expected_kpis, expected_targets, limit_statuses, near
from oracles.limits import expected_limit_changes


def expected_alert_keys(sample: dict, as_of: str, worklist: dict[str, list[dict]] | None = None
                        ) -> tuple[set[str], set[str]]:
    """(keys surely raised, keys too close to a threshold to be decided by a float comparison).

    Limits alert when newly in breach (not in BREACH on the sample's previous date). The worklist's
    alerts follow from the worklist's rows of the date and the date before (`worklist`: as_of ->
    rows of bo_worklist), by DOMAIN §9.3: an item P1 today and not yesterday alone (limit breaches
    and feed failures are alerted as events already), the rest one row per type, team and priority.
    """
    dates = sample["dates"]
    before = dates[dates.index(as_of) - 1] if dates.index(as_of) > 0 else None
    was = limit_statuses(sample["files"], before) if before else {}
    keys = {f"LIMIT_BREACH:{lim}" for lim, s in limit_statuses(sample["files"], as_of).items()
            if s == "BREACH" and was.get(lim) != "BREACH"}
    keys |= {f"FEED_LATE:{feed}" for feed in late_feeds(sample["files"].landing, as_of)}
    if worklist is not None:
        p1_before = {r["item_id"] for r in worklist.get(before, []) if r["priority"] == "P1"}
        alone = {r["item_id"] for r in worklist[as_of] if r["priority"] == "P1" and r["item_id"] not in p1_before
                 and r["item_type"] not in ("LIMIT_BREACH", "FEED_FAILURE")}
        keys |= {f"WORKLIST_P1:{i}" for i in alone}
        keys |= {f"WORKLIST_SUMMARY:{r['item_type']}/{r['owner_team']}/{r['priority']}"
                 for r in worklist[as_of] if r["item_id"] not in alone}
    if before is not None:  # the sample's dates are consecutive business dates
        keys |= {f"LIMIT_CHANGE:{lim}" for lim in expected_limit_changes(sample["files"], as_of, before)}
    undecided = set()
    for tid, t in expected_targets(sample, as_of, expected_kpis(sample, as_of)).items():
        if near(t["actual"], t["target_value"]):
            undecided.add(f"TARGET_MISSED:{tid}")
        elif t["met"] is False:
            keys.add(f"TARGET_MISSED:{tid}")
    return keys, undecided


def late_feeds(landing, as_of: str) -> list[str]:
    """Feeds whose manifest says they were delivered after their deadline (HH:MM UTC on the date)."""
    import json

    from midoffice.contracts import load_contracts

    manifest = json.loads((landing / as_of / "_manifest.json").read_text())
    late = []
    for name, feed in load_contracts().items():
        delivered = (manifest["feeds"].get(name) or {}).get("delivered_at")
        if delivered and delivered > f"{as_of}T{feed.deadline}:00Z":
            late.append(name)
    return late
