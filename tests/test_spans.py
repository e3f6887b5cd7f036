"""Status spans (midoffice.spans) against a plain-Python record of what each date's rows are.

Random writes of dates (forward, reruns, backfills of dates never built, in chunks of trades)
must leave spans that give back every date's rows exactly, in their normal form (no overlap, no
two spans of the same state that meet), and a copy brought up to date by replaying the changed
dates (as the publication does) must hold the same spans.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

import duckdb
import pytest

from midoffice import spans
from midoffice.models import Model

MODEL = Model(
    name="t", description="", grain=("as_of_date", "trade_id"), partition="as_of_date",
    depends_on_feeds=(), depends_on_models=(), sql="", spans=True, per_date_columns=("as_of_date",),
    columns={"as_of_date": "", "trade_id": "", "status": "", "amount": "", "run_id": "", "loaded_at": ""},
)
DAYS = [str(date(2026, 3, 2) + timedelta(days=i)) for i in range(12) if (date(2026, 3, 2) + timedelta(days=i)).weekday() < 5]
TRADES = [f"T{i}" for i in range(6)]


def _schema(con, schema: str) -> None:
    con.execute(f"CREATE TABLE {schema}.t_spans (trade_id VARCHAR, status VARCHAR, amount DOUBLE, "
                "valid_from DATE, valid_to DATE, run_id VARCHAR, loaded_at TIMESTAMP)")
    con.execute(f"CREATE TABLE {schema}.t_dates (as_of_date DATE)")


def _write(con, schema: str, day: str, rows: dict[str, tuple], chunks: int, run: str) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE rows_in (trade_id VARCHAR, status VARCHAR, amount DOUBLE, "
                "run_id VARCHAR, loaded_at TIMESTAMP)")
    if rows:
        con.executemany("INSERT INTO rows_in VALUES (?, ?, ?, ?, TIMESTAMP '2026-03-01')",
                        [[t, s, a, run] for t, (s, a) in rows.items()])
    spans.add_date(con, MODEL, schema, day)
    for chunk in range(chunks):
        in_chunk = "true" if chunks == 1 else f"hash(trade_id) % {chunks} = {chunk}"
        con.execute(f"CREATE OR REPLACE TEMP TABLE rows_chunk AS SELECT * FROM rows_in WHERE {in_chunk}")
        spans.write_date(con, MODEL, schema, day, "rows_chunk", in_chunk)


def _rows_on(con, schema: str, day: str) -> dict[str, tuple]:
    return {t: (s, a) for t, s, a in con.execute(
        f"SELECT trade_id, status, amount FROM {schema}.t_spans "
        f"WHERE valid_from <= ? AND coalesce(valid_to, DATE '9999-12-31') >= ?", [day, day]).fetchall()}


def _spans(con, schema: str) -> list[tuple]:
    return con.execute(f"SELECT trade_id, status, amount, valid_from, valid_to FROM {schema}.t_spans "
                       "ORDER BY ALL").fetchall()


def _check_normal_form(con, schema: str, built: list[str]) -> None:
    by_trade: dict[str, list[tuple]] = {}
    for t, s, a, start, end in _spans(con, schema):
        by_trade.setdefault(t, []).append((str(start), str(end) if end else None, (s, a)))
    for t, runs in by_trade.items():
        runs.sort()
        for start, end, _ in runs:
            assert start in built and (end is None or end in built) and (end is None or start <= end), (t, runs)
        for (s1, e1, v1), (s2, _e2, v2) in zip(runs, runs[1:]):
            assert e1 is not None and e1 < s2, ("overlap", t, runs)
            meets = built[built.index(e1) + 1] == s2
            assert not (meets and v1 == v2), ("two spans of one state meet", t, runs)
        open_end = [r for r in runs if r[1] is None]
        assert len(open_end) <= 1 and (not open_end or open_end[0] == runs[-1]), (t, runs)


@pytest.mark.parametrize("seed", range(8))
def test_random_writes_leave_spans_that_give_back_every_date(seed):
    rng = random.Random(seed)
    con = duckdb.connect()
    con.execute("ATTACH ':memory:' AS pub")
    _schema(con, "main")
    _schema(con, "pub")
    truth: dict[str, dict[str, tuple]] = {}
    unpublished: set[str] = set()
    for step in range(40):
        day = rng.choice(DAYS[:3 + step // 4])  # mostly forward, with reruns and backfills
        previous = truth.get(max([d for d in truth if d < day], default=""), {})
        rows = {}
        for t in TRADES:
            if rng.random() < 0.2:
                continue  # not in the window on that date
            keep = previous.get(t) if rng.random() < 0.7 else None  # most trades keep their state
            rows[t] = keep or (rng.choice(["MATCHED", "QTY_BREAK", "FO_ONLY"]), rng.choice([1.5, 2.0, None]))
        _write(con, "main", day, rows, chunks=rng.choice([1, 1, 2, 3]), run=f"run-{step}")
        truth[day] = rows
        unpublished.add(day)
        built = sorted(truth)
        for d in built:
            assert _rows_on(con, "main", d) == truth[d], (seed, step, d)
        _check_normal_form(con, "main", built)
        if rng.random() < 0.4:  # publish: replay the changed dates, oldest first
            for d in sorted(unpublished):
                spans.replay_date(con, MODEL, "pub", "main", d)
            unpublished.clear()
            assert _spans(con, "pub") == _spans(con, "main"), (seed, step)


def test_a_first_date_goes_straight_in_and_the_next_joins_its_spans():
    con = duckdb.connect()
    _schema(con, "main")
    day1, day2 = DAYS[0], DAYS[1]
    spans.add_date(con, MODEL, "main", day1)
    assert spans.neighbours(con, MODEL, "main", day1) == (None, None)
    con.execute("CREATE TEMP TABLE r1 AS SELECT 'T1' AS trade_id, 'MATCHED' AS status, 1.0 AS amount, "
                "'run-1' AS run_id, TIMESTAMP '2026-03-01' AS loaded_at")
    assert spans.write_only_date(con, MODEL, "main", day1, "r1", []) == 1
    _write(con, "main", day2, {"T1": ("MATCHED", 1.0), "T2": ("FO_ONLY", None)}, chunks=1, run="run-2")
    assert _spans(con, "main") == [
        ("T1", "MATCHED", 1.0, date.fromisoformat(day1), None),   # one span, still open
        ("T2", "FO_ONLY", None, date.fromisoformat(day2), None),
    ]
    assert con.execute("SELECT run_id FROM t_spans WHERE trade_id = 'T1'").fetchone()[0] == "run-1"
