"""One task decides every feed's gate of a date (`midoffice.stages.decide_gates`, the ingest DAG's
`feeds` task): each feed is still its own unit. A feed whose ingest breaks (a fault, not bad data)
leaves its gate undecided and stops the feeds that depend on it, not the others; the task then
fails so that Airflow retries it, and the retry (same run) redoes only the undecided feeds.

Real files, real DuckDB, real Great Expectations; the fault is a real one (a file stands where
the feed's quarantine folder must go), as in tests/test_crash.py. No Airflow: the DAG task is
this one call (tests/test_dags.py checks the wiring, the sample run the whole DAG).
"""

from __future__ import annotations

import pytest

from conftest import generate_landing

DAY = "2026-03-02"
RUN = "manual__try"


@pytest.fixture
def date_home(tmp_path):
    from midoffice.config import settings_from

    landing = generate_landing(tmp_path / "landing", DAY, 1, 150, seed=8)
    return settings_from(landing, tmp_path / "home")


def _ledger_rows(settings, run_id: str) -> dict[str, bytes]:
    folder = settings.control / "runs" / DAY / run_id
    return {p.stem: p.read_bytes() for p in folder.glob("*.json")}


def test_a_broken_feed_stops_its_dependants_not_the_others_and_a_retry_redoes_only_them(date_home):
    from midoffice.contracts import get_feed, ingest_order
    from midoffice.stages import GatesUndecided, decide_gates, decided_by, failed_gates

    settings = date_home
    broken = "instruments"
    dependants = {f for f in ingest_order() if broken in get_feed(f).depends_on}
    assert dependants, "the contract has no feed that depends on instruments: pick another"
    # An infrastructure fault: the feed's quarantine folder cannot be made (a file is in the way).
    held = settings.quarantine_partition(broken, DAY).parent
    held.parent.mkdir(parents=True)
    held.write_text("in the way")

    with pytest.raises(GatesUndecided) as failure:
        decide_gates(settings, DAY, RUN)
    message = str(failure.value)
    assert f"{broken} (" in message and all(f"{f} (not run: {broken}" in message for f in dependants), message
    undecided = {broken} | dependants
    for feed in ingest_order():
        gate = decided_by(settings, DAY, feed, RUN)
        if feed in undecided:
            assert gate is None, feed
        else:  # the independent feeds went on and were decided by this run
            assert gate is not None and gate["gate"] == "PASS", (feed, gate)
    kept = _ledger_rows(settings, RUN)
    assert f"ingest:{broken}" in kept and not any(f"ingest:{f}" in kept for f in dependants)

    # The obstacle goes (as an operator would clear it); Airflow retries the task: same run id.
    held.unlink()
    outcome = decide_gates(settings, DAY, RUN)
    assert set(outcome.gates) == set(ingest_order()) and outcome.undecided == {} and outcome.failed == {}
    assert failed_gates(settings, DAY, RUN) == {}
    again = _ledger_rows(settings, RUN)
    for stage, row in kept.items():  # what the first try decided was kept, not done again
        if stage.split(":")[1] not in undecided:
            assert again[stage] == row, stage
    assert {f"ingest:{f}" for f in undecided} | {f"validate:{f}" for f in undecided} <= set(again)


def test_a_failed_gate_is_decided_and_named_with_its_reason(date_home):
    from midoffice.contracts import ingest_order
    from midoffice.stages import decide_gates, failed_gates

    settings = date_home
    (settings.landing / DAY / "positions.csv").unlink()  # bad delivery: a FAIL gate, not a fault
    outcome = decide_gates(settings, DAY, RUN)
    assert set(outcome.gates) == set(ingest_order()) and outcome.undecided == {}
    assert set(outcome.failed) == {"positions"} and "file missing" in outcome.failed["positions"]
    assert failed_gates(settings, DAY, RUN) == outcome.failed
    assert failed_gates(settings, DAY, "another-run") == {}  # only what this run decided counts
    summary = outcome.summary()
    assert summary["gates"]["positions"] == "FAIL" and summary["gates"]["trades"] == "PASS"
