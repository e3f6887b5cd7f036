"""The alerts a business date should raise, from the kpi and recon oracles.
"""

from __future__ import annotations


from oracles.kpi import expected_kpis, expected_targets, limit_statuses, near


def expected_alert_keys(sample: dict, as_of: str) -> tuple[set[str], set[str]]:
    """(keys surely raised, keys too close to a threshold to be decided by a float comparison)."""
    keys = {f"LIMIT_BREACH:{lim}" for lim, s in limit_statuses(sample["files"], as_of).items() if s == "BREACH"}
    keys |= {f"BREAK_OVER_5BD:{tid}" for tid, r in sample["recon"][as_of].items() if (r["age_bd"] or 0) > 5}
    undecided = set()
    for tid, t in expected_targets(sample, as_of, expected_kpis(sample, as_of)).items():
        if near(t["actual"], t["target_value"]):
            undecided.add(f"TARGET_MISSED:{tid}")
        elif t["met"] is False:
            keys.add(f"TARGET_MISSED:{tid}")
    return keys, undecided
