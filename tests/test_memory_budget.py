"""DuckDB's memory limit leaves room for what the process already holds (duck.duckdb_memory_limit).

`midoffice run` executes every task in one process, which by the build holds Airflow, GX and
pandas; a scheduler's task process holds little. Both must stay within the same budget, so a
connection gets the configured limit or what the budget leaves, whichever is smaller.
"""

from __future__ import annotations

import dataclasses

import pytest

from midoffice.config import settings_from
from midoffice.duck import resident_bytes, connect, duckdb_memory_limit, memory_limit_bytes, parse_bytes

MB = 10**6


def _settings(tmp_path, **changes):
    return dataclasses.replace(settings_from(tmp_path / "landing", tmp_path / "home"), **changes)


def test_a_small_process_gets_the_whole_limit_and_a_large_one_what_the_budget_leaves(tmp_path):
    s = _settings(tmp_path, duckdb_memory_limit="3GB", memory_budget="3.5GB")
    assert parse_bytes(duckdb_memory_limit(s, resident=300 * MB)) == 3000 * MB
    assert parse_bytes(duckdb_memory_limit(s, resident=900 * MB)) == 2600 * MB
    # However much the process holds, DuckDB keeps enough to work (spilling), never nothing.
    assert parse_bytes(duckdb_memory_limit(s, resident=5000 * MB)) == 512 * MB


def test_a_configured_limit_below_the_floor_or_no_budget_is_taken_as_it_is(tmp_path):
    assert duckdb_memory_limit(_settings(tmp_path, duckdb_memory_limit="256MB"), resident=5000 * MB) == "256MB"
    assert duckdb_memory_limit(_settings(tmp_path, memory_budget=None), resident=5000 * MB) == "3GB"


def _limit_of_a_new_connection(s) -> tuple[int, int]:
    """(the limit DuckDB reports for a new connection, the limit the budget allows right now)."""
    resident = resident_bytes()
    con = connect(s)
    try:
        return memory_limit_bytes(con), min(3000 * MB, parse_bytes(s.memory_budget) - resident)
    finally:
        con.close()


def test_a_connection_opened_while_the_process_holds_memory_gets_less(tmp_path):
    # A budget 2.5 GB above what this process holds now, whatever else the test session loaded.
    budget = f"{(resident_bytes() + 2500 * MB) // MB}MB"
    s = _settings(tmp_path, duckdb_memory_limit="3GB", memory_budget=budget)
    roomy, allowed_before = _limit_of_a_new_connection(s)
    held = bytearray(1500 * MB)  # resident: bytearray() writes its zeros
    try:
        tight, allowed_after = _limit_of_a_new_connection(s)
    finally:
        del held
    assert allowed_before > 2400 * MB and allowed_after < 1100 * MB, (allowed_before, allowed_after)
    # DuckDB reports its limit to a tenth of a GiB, cut down (3000MB is '2.7 GiB').
    assert 0 <= allowed_before - roomy < 0.1 * 2**30, (roomy, allowed_before)
    assert 0 <= allowed_after - tight < 0.1 * 2**30, (tight, allowed_after)


def test_a_deployment_sets_the_limits_for_its_machine_in_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MIDOFFICE_DUCKDB_MEMORY_LIMIT", "12GB")
    monkeypatch.setenv("MIDOFFICE_MEMORY_BUDGET", "none")
    monkeypatch.setenv("MIDOFFICE_DUCKDB_THREADS", "8")
    s = settings_from(tmp_path / "landing", tmp_path / "home")
    assert (s.duckdb_memory_limit, s.memory_budget, s.duckdb_threads) == ("12GB", None, 8)
    assert duckdb_memory_limit(s, resident=5000 * MB) == "12GB"
    monkeypatch.setenv("MIDOFFICE_DUCKDB_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match="MIDOFFICE_DUCKDB_MEMORY_LIMIT='lots' is not a valid duckdb_memory_limit"):
        settings_from(tmp_path / "landing", tmp_path / "home")
