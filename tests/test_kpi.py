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
from test_recon import close, query


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample(sample_run):
    files = Files(sample_run["landing"])
    return {"files": files, "db": sample_run["home"] / "warehouse" / "marts.duckdb", "dates": sample_run["dates"],
            "recon": recon_history(sample_run["landing"], sample_run["dates"]), "kpis": {}}


# --- the tests -----------------------------------------------------------------------------------

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
    # the sample measures every target and misses some of them
    last = query(sample["db"], "SELECT met FROM kpi_targets WHERE business_date = ?", [sample["dates"][-1]])
    assert all(r["met"] is not None for r in last) and any(r["met"] is False for r in last)
