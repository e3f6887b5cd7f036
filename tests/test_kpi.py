"""kpi_daily and kpi_targets (DOMAIN §4.5) against an independent computation from the feed files.

Every KPI is recomputed in plain Python (tests/oracles/kpi.py) from the landing files of the shared generated
sample (`sample_run`): exposures and VaR from positions, prices and fx; limit statuses from the
limits feed; the reconciliation and settlement efficiency with the recon oracle; clients from
the client file; revenue and cost from trades, GL entries and client activity. Nothing is read
from the project's SQL or core tables.
"""

from __future__ import annotations


import pytest

from oracles.kpi import Files, expected_kpis, expected_targets, near
from oracles.recon import recon_history
from test_recon import close, query, reading


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample(sample_run):
    files = Files(sample_run["landing"])
    # one connection to the published lake for the module (the sample run is read-only here):
    # opening the lake costs more than the queries
    with reading(sample_run["home"] / "warehouse" / "marts.duckdb") as con:
        yield {"files": files, "db": con, "dates": sample_run["dates"],
               "recon": recon_history(sample_run["landing"], sample_run["dates"]), "kpis": {}}


# --- the tests -----------------------------------------------------------------------------------

def test_a_glide_path_compares_the_actual_with_the_milestone_in_force(sample):
    """DOMAIN §7.3, §12: the sample delivers glide paths; on each date the row in force is the
    latest milestone on or before it, the final target and the next milestone are shown, and the
    milestone moves along the run."""
    by_date = {d: {r["target_id"]: r for r in query(sample["db"], "SELECT * FROM kpi_targets WHERE business_date = ?", [d])}
               for d in sample["dates"]}
    paths = {tid for rows in by_date.values() for tid, r in rows.items() if r["next_milestone_date"] is not None}
    assert paths  # the sample has glide paths
    for tid in paths:
        values = [by_date[d][tid]["target_value"] for d in sample["dates"] if tid in by_date[d]]
        assert len(set(values)) >= 2, tid  # a milestone came into force during the run
        for d in sample["dates"]:
            r = by_date[d].get(tid)
            if r is None:
                continue
            assert r["effective_date"] is None or str(r["effective_date"]) <= d
            if r["next_milestone_date"] is not None:
                assert str(r["next_milestone_date"]) > d and r["target_value"] != r["final_target_value"]
            else:
                assert r["target_value"] == r["final_target_value"]



def test_kpi_daily_matches_the_files(sample):
    for d in sample["dates"]:
        rows = query(sample["db"], "SELECT * EXCLUDE (run_id, loaded_at) FROM kpi_daily WHERE business_date = ?", [d])
        assert len(rows) == 1, d
        got, expected = rows[0], expected_kpis(sample, d)
        assert set(got) - {"business_date"} == set(expected)
        for column, value in expected.items():
            if isinstance(value, float):
                assert close(got[column], value, rel=1e-9, abs_=1e-6), (d, column, got[column], value)
            else:
                assert got[column] == value, (d, column, got[column], value)


def test_kpi_targets_match_the_files(sample):
    for d in sample["dates"]:
        kpi = expected_kpis(sample, d)
        expected = expected_targets(sample, d, kpi)
        got = {r["target_id"]: r for r in query(
            sample["db"], "SELECT * FROM kpi_targets WHERE business_date = ?", [d])}
        assert set(got) == set(expected), d
        for tid, e in expected.items():
            g = got[tid]
            assert (g["metric"], g["scope_id"], g["target_value"]) == (e["metric"], e["scope_id"], e["target_value"])
            assert close(g["actual"], e["actual"], rel=1e-9, abs_=1e-9), (d, tid, g["actual"], e["actual"])
            if not near(e["actual"], e["target_value"]):
                assert g["met"] == e["met"], (d, tid)
            assert (g["final_target_value"], g["next_milestone_value"]) == (e["final_target_value"],
                                                                           e["next_milestone_value"]), (d, tid)
            assert (str(g["effective_date"]) if g["effective_date"] else None) == e["effective_date"], (d, tid)
            assert (str(g["next_milestone_date"]) if g["next_milestone_date"] else None) == e["next_milestone_date"]
            assert close(g["progress"], e["progress"], rel=1e-9, abs_=1e-9), (d, tid, g["progress"], e["progress"])
    # the sample measures every target and misses some of them
    last = query(sample["db"], "SELECT metric, actual, met FROM kpi_targets WHERE business_date = ?", [sample["dates"][-1]])
    # (a desk that lost money this month has no cost-to-income: DOMAIN §12)
    assert all((r["met"] is None) == (r["actual"] is None) for r in last) and any(r["met"] is False for r in last)
    assert all(r["met"] is not None for r in last if r["metric"] != "COST_TO_INCOME_MAX")
