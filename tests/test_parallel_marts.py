"""The marts are built on every DuckDB thread, so every mart must give the same rows, bit for bit,
whatever the order in which threads combine partial results (ARCHITECTURE: a rerun gives the same
checksums).

On the sample's small tables DuckDB would not split the work at all, so the parallel evaluations
run under `PRAGMA verify_parallelism`, which splits every pipeline into many small tasks: a DOUBLE
`sum`/`fsum` over a group, or a tie in an order, then gives different bits from run to run (checked
below on a control query, so that this test cannot pass by not running in parallel).
"""

from __future__ import annotations

import shutil

import duckdb
import pytest

from midoffice.config import settings_from
from midoffice.models import load_models
from midoffice.pseudonym import register, resolve_key
from midoffice.warehouse import carry_from_date


def _evaluate_models(db, settings, business_date: str, threads: int, split: bool, tag: str) -> dict[str, int]:
    """Every model's rows for the date into tables `_eval_<model>_<tag>`; their row
    counts. Each model reads the marts as the sample run built them, so both ways see the same
    inputs."""
    con = duckdb.connect(str(db), config={"threads": threads})
    try:
        if split:
            con.execute("PRAGMA verify_parallelism")
        register(con, resolve_key(settings)[0])
        for name, value in [("as_of_date", f"DATE '{business_date}'"), ("reporting_currency", "'USD'"),
                            ("var_scenarios", str(settings.var_scenarios)), ("chunk_count", "1"), ("chunk", "0"),
                            ("quarantine_threshold", str(settings.quarantine_threshold))]:
            con.execute(f"SET VARIABLE {name} = {value}")
        counts = {}
        for model in load_models():
            if model.carries_previous_date:
                con.execute("SET VARIABLE carry_from_date = CAST(? AS DATE)",
                            [carry_from_date(con, model, business_date)])
            con.execute(f"CREATE TABLE _eval_{model.name}_{tag} AS {model.sql}")
            counts[model.name] = con.execute(f"SELECT count(*) FROM _eval_{model.name}_{tag}").fetchone()[0]
        return counts
    finally:
        con.close()


def _differing_rows(db, a: str, b: str) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT (SELECT count(*) FROM (FROM {a} EXCEPT ALL FROM {b})) + "
                           f"(SELECT count(*) FROM (FROM {b} EXCEPT ALL FROM {a}))").fetchone()[0]
    finally:
        con.close()


@pytest.fixture(scope="module")
def evaluated(sample_run, tmp_path_factory):
    settings = settings_from(sample_run["landing"], sample_run["home"])
    db = tmp_path_factory.mktemp("parallel") / "build.duckdb"
    shutil.copy(settings.build_db, db)
    day = sample_run["dates"][-1]
    counts = _evaluate_models(db, settings, day, threads=1, split=False, tag="one")
    for round_ in range(2):
        assert _evaluate_models(db, settings, day, threads=4, split=True, tag=f"split{round_}") == counts
    return db, counts


def test_the_control_query_differs_when_split():
    """verify_parallelism really splits: a DOUBLE sum over groups changes bits with the order in
    which the threads combine their parts. That order depends on scheduling (on a loaded machine
    8 runs once gave the same bits), so this runs until the bits differ, at most 300 times."""
    data = "SELECT range % 3 AS k, ((range * 7919) % 1000003) / 7.0 AS v FROM range(20000)"
    query = "SELECT k, sum(v) FROM t GROUP BY k ORDER BY k"
    one = duckdb.connect(config={"threads": 1})
    one.execute(f"CREATE TABLE t AS {data}")
    sequential = one.execute(query).fetchall()
    one.close()
    con = duckdb.connect(config={"threads": 4})
    con.execute("PRAGMA verify_parallelism")
    con.execute(f"CREATE TABLE t AS {data}")
    differed = any(con.execute(query).fetchall() != sequential for _ in range(300))
    con.close()
    assert differed


def test_every_mart_gives_the_same_rows_on_any_number_of_threads(evaluated):
    db, counts = evaluated
    assert counts["ops_trade_recon"] > 0 and counts["risk_exposure"] > 0
    differing = {}
    for name in counts:
        for r in (0, 1):
            n = _differing_rows(db, f"_eval_{name}_one", f"_eval_{name}_split{r}")
            if n:
                differing[name] = n
    assert differing == {}, f"marts whose rows depend on the threads' order: {differing}"


@pytest.mark.parametrize("records, expected", [
    (0, (1, 2)), (1_000, (1, 2)), (1_250, (1, 2)),   # one chunk, half the chunk size or less: two threads
    (1_251, (2, 2)), (2_500, (2, 2)),                 # more: chunks of half the size on two threads
    (2_501, (3, 2)), (10_000, (8, 2)),                # each thread a chunk size's share at most
])
def test_build_plan_keeps_a_threads_share_within_the_chunk_size(records, expected):
    from dataclasses import replace

    from midoffice.warehouse import build_plan

    recon = next(m for m in load_models() if m.name == "ops_trade_recon")
    model = replace(recon, chunk_rows=2_500)
    con = duckdb.connect()
    con.execute("CREATE SCHEMA core")
    con.execute(f"CREATE TABLE core.{model.chunk_feed} AS SELECT DATE '2026-01-05' AS business_date "
                f"FROM range({records})")
    assert build_plan(con, model, "2026-01-05", threads=2) == expected
    assert build_plan(con, model, "2026-01-06", threads=2) == (1, 2)  # no records that date
