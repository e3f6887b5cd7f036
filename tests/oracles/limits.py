"""Limit changes (DOMAIN §10.3) from the landing files, in plain Python.

The limits delivery of a date against the delivery before it; a change cures a breach when the
limit was in BREACH on the previous business date, is not on the date, was raised, and the
exposure it measures is still above the old value. Statuses come from oracles.kpi.limit_statuses;
the exposure of a changed limit is recomputed here for the scopes the sample changes (gross and
net exposure of the firm or a book).
"""

from __future__ import annotations

from oracles.kpi import Files, book_holdings, limit_statuses
from oracles.recon import read_csv


def _value(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def _limits(files: Files, day: str) -> dict[str, dict]:
    return {r["limit_id"]: r for r in read_csv(files.landing / day / "limits.csv")}


def utilised(files: Files, day: str, lim: dict) -> float:
    """|net| or gross exposure of a FIRM or BOOK exposure limit on the day."""
    assert lim["scope_type"] in ("FIRM", "BOOK") and lim["metric"] in ("GROSS_EXPOSURE", "NET_EXPOSURE"), lim
    values = [mv for (b, _), mv in book_holdings(files, day).items() if lim["scope_type"] == "FIRM" or b == lim["scope_id"]]
    return sum(abs(v) for v in values) if lim["metric"] == "GROSS_EXPOSURE" else abs(sum(values))


def expected_limit_changes(files: Files, day: str, previous_business_day: str) -> dict[str, dict]:
    """limit_id -> the change on `day` (change_type, old/new limit_value and warning_pct,
    change_pct, cured_by_limit_change). Empty on the first delivery."""
    delivered = [d for d in files.dates if (files.landing / d / "limits.csv").exists()]
    earlier = [d for d in delivered if d < day]
    if day not in delivered or not earlier:
        return {}
    before, today = _limits(files, earlier[-1]), _limits(files, day)
    out = {}
    for limit_id in sorted(set(before) | set(today)):
        old, new = before.get(limit_id), today.get(limit_id)
        if old is None:
            kind = "NEW"
        elif new is None:
            kind = "REMOVED"
        elif any(old[k] != new[k] for k in ("scope_type", "scope_id", "metric")) \
                or _value(old["limit_value"]) != _value(new["limit_value"]) \
                or _value(old["warning_pct"]) != _value(new["warning_pct"]):
            kind = "CHANGED"
        else:
            continue
        o = _value(old["limit_value"]) if old else None
        n = _value(new["limit_value"]) if new else None
        out[limit_id] = {"change_type": kind, "old_limit_value": o, "new_limit_value": n,
                         "old_warning_pct": _value(old["warning_pct"]) if old else None,
                         "new_warning_pct": _value(new["warning_pct"]) if new else None,
                         "change_pct": (n - o) / o if kind == "CHANGED" else None,
                         "cured_by_limit_change": False}
    for limit_id, change in out.items():
        if change["change_type"] != "CHANGED" or not change["new_limit_value"] > change["old_limit_value"]:
            continue
        was = limit_statuses(files, previous_business_day).get(limit_id)
        now = limit_statuses(files, day).get(limit_id)
        if was == "BREACH" and now != "BREACH":
            change["cured_by_limit_change"] = utilised(files, day, today[limit_id]) > change["old_limit_value"]
    return out
