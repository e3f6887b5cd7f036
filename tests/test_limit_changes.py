"""limit_changes (DOMAIN §10.3) against a plain-Python comparison of the limits deliveries.

The shared sample run: the generator raises one breached BOOK gross limit by 15 % mid-period
(midoffice/sample/reference.py, limit_change_day). Every date's rows equal the oracle
(tests/oracles/limits.py: the landing files' limits.csv compared date by date, statuses from
oracles.kpi); the change is alerted (LIMIT_CHANGE) and the pack's limit section lists it.
"""

from __future__ import annotations

import math

import pytest

from conftest import published
from oracles.kpi import Files
from oracles.limits import expected_limit_changes

COMPARED = ("change_type", "old_limit_value", "new_limit_value", "old_warning_pct", "new_warning_pct", "change_pct",
            "cured_by_limit_change")


@pytest.fixture(scope="module")
def sample(sample_run):
    assert all(o.ok for o in sample_run["outcomes"]), "the sample run must pass every gate"
    con = published(sample_run["home"])
    try:
        cur = con.execute("SELECT * EXCLUDE (run_id, loaded_at), CAST(as_of_date AS VARCHAR) AS d FROM limit_changes")
        names = [c[0] for c in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
        alerts = {(str(d), k) for d, k in con.execute(
            "SELECT business_date, alert_key FROM alerts WHERE alert_type = 'LIMIT_CHANGE'").fetchall()}
    finally:
        con.close()
    return {**sample_run, "files": Files(sample_run["landing"]), "rows": rows, "alerts": alerts}


def same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return a == b


def test_limit_changes_equal_the_deliveries_compared_in_plain_python(sample):
    dates = sample["dates"]
    expected = {}
    for i, d in enumerate(dates[1:], start=1):  # the sample's dates are consecutive business dates
        expected |= {(d, lim): e for lim, e in expected_limit_changes(sample["files"], d, dates[i - 1]).items()}
    got = {(r["d"], r["limit_id"]): r for r in sample["rows"]}
    assert set(got) == set(expected)
    for key, e in expected.items():
        for column in COMPARED:
            assert same(got[key][column], e[column]), (key, column, got[key][column], e[column])
    # the generator's change: one BOOK gross limit raised by about 15 % while in breach
    raised = [e for e in expected.values() if e["change_type"] == "CHANGED"]
    assert len(raised) == 1 and abs(raised[0]["change_pct"] - 0.15) < 0.01
    # identities: a cure needs a raise, a previous breach and a status that is no longer BREACH
    for r in sample["rows"]:
        if r["cured_by_limit_change"]:
            assert r["new_limit_value"] > r["old_limit_value"] and r["status_before"] == "BREACH"
            assert r["status"] != "BREACH" and abs(r["exposure"]) > r["old_limit_value"]


def test_every_limit_change_is_alerted(sample):
    assert sample["alerts"] == {(r["d"], f"LIMIT_CHANGE:{r['limit_id']}") for r in sample["rows"]}
    assert sample["alerts"]


def test_the_packs_limit_section_lists_todays_limit_changes(sample):
    from midoffice.dictionary import published_columns
    from midoffice.report.queries import Pack
    from midoffice.report.sections import section_limits

    day = min(r["d"] for r in sample["rows"])
    con = published(sample["home"])
    try:
        columns = {t: {c for c, _ in cols} for t, cols in published_columns(con).items()}
        for d, listed in ((day, {r["limit_id"] for r in sample["rows"] if r["d"] == day}), (sample["dates"][0], set())):
            section = section_limits(Pack(con, d, columns), {})
            tables = [b for b in section.blocks if getattr(b, "mart", None) == "limit_changes"]
            shown = {row.cells[0].text for t in tables for row in t.rows}
            assert shown == listed, d
            assert any(getattr(b, "text", None) == "Limit changes today" for b in section.blocks)
    finally:
        con.close()
