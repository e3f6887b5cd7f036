"""The alerts a business date should raise, from the kpi and recon oracles.
"""

from __future__ import annotations


from oracles.kpi import expected_kpis, expected_targets, limit_statuses, near


def expected_alert_keys(sample: dict, as_of: str) -> tuple[set[str], set[str]]:
    """(keys surely raised, keys too close to a threshold to be decided by a float comparison)."""
    keys = {f"LIMIT_BREACH:{lim}" for lim, s in limit_statuses(sample["files"], as_of).items() if s == "BREACH"}
    keys |= {f"BREAK_OVER_5BD:{tid}" for tid, r in sample["recon"][as_of].items() if (r["age_bd"] or 0) > 5}
    keys |= {f"FEED_LATE:{feed}" for feed in late_feeds(sample["files"].landing, as_of)}
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
