"""Risk marts (DOMAIN §4.1): concentration, limit utilisation, historical VaR and its backtest.

- The VaR tail convention is checked against the Open Source Risk Engine's published example
  (../shared/oracles) by running transforms/risk_var.sql itself, unchanged, on its P&L vector.
- Every mart is checked against an independent computation written in plain Python and numpy
  (tests/oracles/risk.py) from the delivered landing FILES (csv, pyarrow for the Parquet
  prices), never from the project's SQL or core tables: on the shared 8-date sample run, and on
  a small hand-made fixture (a generated landing whose prices crash harder every day, with a
  short VaR window) where the backtest counts an exception a date (no zone before 250 observations).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import hashlib
from collections import defaultdict
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pytest

from conftest import published, REPO, generate_landing
from oracles.risk import (
    quantile, shortfall, _csv, Feeds, independent_var, independent_concentration, independent_limits,
    independent_backtest,
)


ORACLES = REPO.parent / "shared" / "oracles"
TRANSFORMS = REPO / "transforms"


# --- the ORE oracle -------------------------------------------------------------------------------

def _ore_pnl() -> list[tuple[str, str, float]]:
    with (ORACLES / "ore_histsimvar_pnl.csv").open(newline="") as fh:
        return [(r["pl_date1"], r["pl_date2"], float(r["pl_amount"])) for r in csv.DictReader(fh)]


def _ore_expected() -> dict[str, float]:
    lines = [ln for ln in (ORACLES / "ore_histsimvar_expected.csv").read_text().splitlines() if ln.strip()]
    header = lines[0].lstrip("#").split(",")
    return {k: float(v) for k, v in zip(header, lines[1].split(",")) if k.startswith(("Quantile", "Expected"))}


def run_var_sql(vectors: dict[str, list[tuple[str, str, float]]], as_of: str) -> dict[str, dict]:
    """transforms/risk_var.sql, unchanged, on a plain DuckDB whose risk_var_scenarios holds `vectors`."""
    con = duckdb.connect()
    try:
        con.execute("SET VARIABLE as_of_date = CAST(? AS DATE)", [as_of])
        con.execute("CREATE TABLE risk_var_scenarios (as_of_date DATE, portfolio VARCHAR, scenario_set VARCHAR, "
                    "scenario_date DATE, previous_date DATE, pnl_usd DOUBLE, pnl_rank BIGINT)")
        rows = [(as_of, p, "VAR", s, prev, v, None) for p, vec in vectors.items() for prev, s, v in vec]
        con.executemany("INSERT INTO risk_var_scenarios VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        cur = con.execute((TRANSFORMS / "risk_var.sql").read_text())
        cols = [d[0] for d in cur.description]
        return {r[cols.index("portfolio")]: dict(zip(cols, r)) for r in cur.fetchall()}
    finally:
        con.close()


@pytest.mark.skipif(not ORACLES.is_dir(), reason=f"the published oracles are not at {ORACLES}")
def test_the_var_sql_reproduces_the_open_source_risk_engine_example_exactly():
    pnl = _ore_pnl()
    expected = _ore_expected()
    values = [v for _, _, v in pnl]
    assert len(values) == 715
    # The convention itself (README of the oracles), in plain Python, on all eight figures.
    for q in ("0.01", "0.05", "0.95", "0.99"):
        assert quantile(values, q) == pytest.approx(expected[f"Quantile_{q}0000"], abs=1e-6)
        assert shortfall(values, q) == pytest.approx(expected[f"ExpectedShortfall_{q}0000"], abs=1e-6)
    # The mart's SQL on the same vector. The upper quantiles are the lower ones of the opposite
    # position (−P&L): for a non-integer q × N, the k-th smallest with k = ceil(0.95 N) is the
    # negated ceil(0.05 N)-th smallest of −P&L, so the short book's VaR is ORE's upper quantile.
    got = run_var_sql({"ORE": pnl, "ORE_SHORT": [(a, b, -v) for a, b, v in pnl]}, "2019-12-30")
    ore, short = got["ORE"], got["ORE_SHORT"]
    assert ore["n_scenarios"] == 715
    assert -ore["var_99"] == pytest.approx(expected["Quantile_0.010000"], abs=1e-6)
    assert -ore["var_95"] == pytest.approx(expected["Quantile_0.050000"], abs=1e-6)
    assert -ore["es_99"] == pytest.approx(expected["ExpectedShortfall_0.010000"], abs=1e-6)
    assert -ore["es_95"] == pytest.approx(expected["ExpectedShortfall_0.050000"], abs=1e-6)
    assert short["var_95"] == pytest.approx(expected["Quantile_0.950000"], abs=1e-6)
    assert short["var_99"] == pytest.approx(expected["Quantile_0.990000"], abs=1e-6)
    assert ore["worst_scenario_pnl_usd"] == min(values)
    assert str(ore["worst_scenario_date"]) == min(pnl, key=lambda r: r[2])[1]


@pytest.mark.parametrize("n", [20, 40, 100, 200, 250, 400, 1000])
def test_the_tail_size_is_exact_when_q_times_n_is_a_whole_number(n):
    """In floating point (1 − 0.95) × 100 = 5.000000000000004, whose ceiling is 6; the mart's is 5."""
    rng = np.random.default_rng(n)
    day = date(2021, 1, 1).toordinal()
    vec = [(str(date.fromordinal(day + i - 1)), str(date.fromordinal(day + i)), float(x))
           for i, x in enumerate(rng.normal(0, 1e6, n))]
    values = [v for _, _, v in vec]
    row = run_var_sql({"P": vec}, "2024-01-01")["P"]
    assert row["var_95"] == -quantile(values, "0.05")
    assert row["var_99"] == -quantile(values, "0.01")
    assert row["es_975"] == pytest.approx(-shortfall(values, "0.025"), rel=1e-12)
    assert row["es_99"] == pytest.approx(-shortfall(values, "0.01"), rel=1e-12)


# --- reading the marts ----------------------------------------------------------------------------

def mart(db: Path, name: str, key: tuple[str, ...]) -> dict[tuple, dict]:
    con = published(db)
    try:
        cur = con.execute(f"SELECT * FROM {name}")
        cols = [c[0] for c in cur.description]
        rows = [dict(zip(cols, r)) for r in cur.fetchall()]
    finally:
        con.close()
    for r in rows:
        for k, v in r.items():
            if isinstance(v, date):
                r[k] = v.isoformat()
    return {tuple(r[k] for k in key): r for r in rows}


def pseudonym_for(landing: Path, home: Path):
    from midoffice.config import settings_from
    from midoffice.pseudonym import client_key, resolve_key

    key, _ = resolve_key(settings_from(landing, home))
    return lambda client_id: client_key(key, client_id)


def near_boundary(util: float | None, warn: float) -> bool:
    """A status within floating-point noise of a threshold may honestly go either way."""
    return util is not None and (abs(util - 1) < 1e-9 or abs(util - warn) < 1e-9)


def check_var(db: Path, feeds: Feeds, dates: list[str], n: int) -> dict[tuple[str, str], dict]:
    got = mart(db, "risk_var", ("as_of_date", "portfolio"))
    scen = mart(db, "risk_var_scenarios", ("as_of_date", "portfolio", "scenario_set", "scenario_date"))
    expected_all = {}
    for d in dates:
        expected = independent_var(feeds, d, n)
        assert {p for (dd, p) in got if dd == d} == set(expected), d
        for p, e in expected.items():
            row = got[(d, p)]
            expected_all[(d, p)] = e
            assert row["n_scenarios"] == e["n_scenarios"] == n
            assert row["first_scenario_date"] == e["first_scenario_date"]
            assert row["worst_scenario_date"] == e["worst_scenario_date"], (d, p)
            for col in ("var_95", "var_99", "es_95", "es_975", "es_99"):
                assert row[col] == pytest.approx(e[col], rel=1e-9, abs=1e-3), (d, p, col)
            for s, value in e["pnl"].items():
                assert scen[(d, p, "VAR", s)]["pnl_usd"] == pytest.approx(value, rel=1e-9, abs=1e-3), (d, p, s)
        assert sum(1 for (dd, _, ss, _) in scen if dd == d and ss == "VAR") == n * len(expected)
    return expected_all


# --- the shared sample run ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample(sample_run):
    assert all(o.ok for o in sample_run["outcomes"]), "the sample run must pass every gate"
    return {**sample_run, "db": sample_run["home"] / "warehouse" / "marts.duckdb",
            "feeds": Feeds(sample_run["landing"]),
            "pseudonym": pseudonym_for(sample_run["landing"], sample_run["home"])}


@pytest.mark.slow
def test_risk_var_and_its_scenarios_equal_a_numpy_historical_simulation(sample):
    expected = check_var(sample["db"], sample["feeds"], sample["dates"], 250)
    # 250 scenarios: k = 3 for 99 % (2.5 rounded up), 13 for 95 % (12.5), 7 for 97.5 %.
    firm = expected[(sample["dates"][0], "FIRM")]
    assert firm["var_99"] == -sorted(firm["pnl"].values())[2]


@pytest.mark.slow
def test_risk_concentration_equals_an_independent_computation(sample):
    got = mart(sample["db"], "risk_concentration", ("as_of_date", "dimension", "member"))
    for d in sample["dates"]:
        expected = independent_concentration(sample["feeds"], d, sample["pseudonym"])
        assert {(dim, mem) for (dd, dim, mem) in got if dd == d} == set(expected), d
        for (dim, member), e in expected.items():
            row = got[(d, dim, member)]
            assert row["n_positions"] == e["n_positions"]
            for col in ("gross_usd", "net_usd"):
                assert row[col] == pytest.approx(e[col], rel=1e-9, abs=1e-3), (d, dim, member, col)
            for col in ("share", "hhi", "effective_n"):
                assert row[col] == pytest.approx(e[col], rel=1e-9), (d, dim, member, col)
    dims = {dim for (_, dim, _) in got}
    assert dims == {"book", "client", "issuer", "country", "asset_class", "sector"}
    # no client id reaches the mart: the client dimension's members are pseudonyms
    client_ids = {hid for d in sample["dates"] for (ht, hid, _) in sample["feeds"].holdings(d) if ht == "CLIENT"}
    assert not client_ids & {mem for (_, dim, mem) in got if dim == "client"}


@pytest.mark.slow
def test_limit_utilisation_equals_an_independent_computation_and_a_breach_comes_and_goes(sample):
    dates = sample["dates"]
    got = mart(sample["db"], "risk_limit_utilisation", ("as_of_date", "limit_id"))
    expected = independent_limits(sample["feeds"], dates, 250, sample["pseudonym"])
    assert set(got) == set(expected)
    for key, e in expected.items():
        row = got[key]
        assert row["scope_id"] == e["scope_id"]
        assert row["limit_value"] == e["limit_value"] and row["warning_pct"] == e["warning_pct"]
        assert row["exposure"] == pytest.approx(e["exposure"], rel=1e-9, abs=1e-3), key
        # the exposure's own tolerance carried over: a DV01 is a sum of micro-dollar-rounded terms
        assert row["utilisation"] == pytest.approx(e["utilisation"], rel=1e-9, abs=1e-3 / e["limit_value"]), key
        if not near_boundary(e["utilisation"], e["warning_pct"]):
            assert row["status"] == e["status"], key
            assert row["consecutive_breach_days"] == e["consecutive_breach_days"], key
        assert (row["breach_since"] is None) == (row["consecutive_breach_days"] == 0)
    # Some limit is in breach for a few days and then back within its limit (the generator
    # calibrates limits on the first day's exposure; it raises one book's gross limit mid-period).
    by_limit: dict[str, list[str]] = defaultdict(list)
    for d in dates:
        for (dd, lim), row in got.items():
            if dd == d:
                by_limit[lim].append(row["status"])
    in_and_out = [lim for lim, st in by_limit.items()
                  if "BREACH" in st and st.index("BREACH") < len(st) - 1 and any(
                      s != "BREACH" for s in st[st.index("BREACH"):])]
    assert in_and_out, by_limit
    for lim in in_and_out:
        runs = [got[(d, lim)]["consecutive_breach_days"] for d in dates]
        first = runs.index(1)
        end = next(i for i in range(first, len(runs)) if runs[i] == 0)
        assert runs[first:end] == list(range(1, end - first + 1)), (lim, runs)
    statuses = {row["status"] for row in got.values()}
    assert {"OK", "WARNING", "BREACH"} <= statuses
    # risk_limit_status is the same measurement without the run
    status = mart(sample["db"], "risk_limit_status", ("as_of_date", "limit_id"))
    assert {k: v["status"] for k, v in status.items()} == {k: v["status"] for k, v in got.items()}


@pytest.mark.slow
def test_var_backtest_equals_an_independent_computation(sample):
    dates = sample["dates"]
    got = mart(sample["db"], "risk_var_backtest", ("business_date", "portfolio"))
    expected = independent_backtest(sample["feeds"], dates, 250)
    assert set(got) == set(expected)
    assert {d for d, _ in got} == set(dates[1:])  # the first date has no previous holdings
    for key, e in expected.items():
        row = got[key]
        assert row["previous_date"] == e["previous_date"]
        assert row["hypothetical_pnl_usd"] == pytest.approx(e["hypothetical_pnl_usd"], rel=1e-9, abs=1e-3), key
        # exact decimal sums of micro-dollar terms: a small inventory's VaR carries a few 1e-6 of them
        assert row["var_99"] == pytest.approx(e["var_99"], rel=1e-9, abs=1e-4), key
        if abs(-e["hypothetical_pnl_usd"] - e["var_99"]) > 1e-6 * e["var_99"]:
            assert row["exception"] == e["exception"], key
            assert (row["observations"], row["exceptions_250"], row["zone"]) == \
                (e["observations"], e["exceptions_250"], e["zone"]), key


# --- a hand-made crash: the backtest turns YELLOW ----------------------------------------------------

CRASH_START = "2026-03-02"
CRASH_DAYS = 6           # the first date, then five dates on which prices fall harder each day
CRASH_SCENARIOS = 20     # a short VaR window (Settings.var_scenarios)
RISK_FEEDS = ["books", "instruments", "prices", "fx_rates", "limits", "clients", "positions", "control_parameters",
              "stress_scenarios"]


def _rewrite_prices(landing: Path, day: str, table) -> None:
    """Write a date's prices.parquet and fix its manifest entry (rows, checksum)."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy")
    (landing / day / "prices.parquet").write_bytes(buf.getvalue())
    manifest = json.loads((landing / day / "_manifest.json").read_text())
    manifest["feeds"]["prices"].update(rows=table.num_rows, sha256=hashlib.sha256(buf.getvalue()).hexdigest())
    (landing / day / "_manifest.json").write_text(json.dumps(manifest, indent=1))


def make_crash(landing: Path) -> list[str]:
    """Day j after the first falls by 6 j % on top of the generated move: every day worse than the last.

    Also leaves gaps to carry forward: three instruments the books hold have no close on three
    recent history dates (first delivery) and on the third date. Returns those instruments.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    days = sorted(p.name for p in landing.iterdir() if p.is_dir())
    held = sorted({r["instrument_id"] for r in _csv(landing / days[0] / "positions.csv") if r["holder_type"] == "BOOK"})
    gappy = held[:3]
    first = pq.read_table(landing / days[0] / "prices.parquet")
    history = sorted({str(d) for d in first["price_date"].to_pylist()})
    holes = pc.and_(pc.is_in(first["instrument_id"], pa.array(gappy)),
                    pc.is_in(pc.cast(first["price_date"], pa.string()), pa.array(history[-8:-2:2])))
    _rewrite_prices(landing, days[0], first.filter(pc.invert(holes)))
    level = 1.0
    for j, d in enumerate(days[1:], start=1):
        level *= 1 - 0.06 * j
        table = pq.read_table(landing / d / "prices.parquet")
        table = table.set_column(table.schema.get_field_index("close_price"), "close_price",
                                 pa.array([p * level for p in table["close_price"].to_pylist()], pa.float64()))
        if j == 2:
            table = table.filter(pc.invert(pc.is_in(table["instrument_id"], pa.array(gappy))))
        _rewrite_prices(landing, d, table)
    return gappy


def build_dates(settings, dates: list[str], feeds: list[str]) -> None:
    """The DAG's steps without Airflow: ingest, validate and gate the feeds, then build."""
    from midoffice.ingest import ingest_feed
    from midoffice.stages import validate_and_gate
    from midoffice.warehouse import build_warehouse

    for d in dates:
        run_id = f"test_risk__{d}"
        for feed in feeds:
            ingest_feed(settings, d, feed, run_id)
            validate_and_gate(settings, d, feed, run_id)
        build_warehouse(settings, d, run_id)


@pytest.fixture(scope="module")
def crash(tmp_path_factory):
    """Only the feeds the risk marts read are delivered (the other marts are skipped, by design)."""
    from midoffice.config import settings_from
    from midoffice.contracts import ingest_order

    root = tmp_path_factory.mktemp("crash")
    landing = generate_landing(root / "landing", CRASH_START, CRASH_DAYS, 200, seed=5)
    gappy = make_crash(landing)
    settings = dataclasses.replace(settings_from(landing, root / "home"), var_scenarios=CRASH_SCENARIOS)
    dates = sorted(p.name for p in landing.iterdir() if p.is_dir())
    build_dates(settings, dates, [f for f in ingest_order() if f in RISK_FEEDS])
    return {"landing": landing, "settings": settings, "dates": dates, "feeds": Feeds(landing), "gappy": gappy,
            "db": settings.build_db, "pseudonym": pseudonym_for(landing, settings.home)}


@pytest.mark.slow
def test_a_crash_counts_backtest_exceptions_with_no_zone_before_250_observations(crash):
    dates, feeds = crash["dates"], crash["feeds"]
    # the gaps were real: on the third date the books value those instruments at an older close
    exposure = mart(crash["db"], "risk_exposure", ("as_of_date", "holder_type", "holder_id", "instrument_id"))
    stale = {k[3] for k, r in exposure.items() if k[0] == dates[2] and r["price_date"] < dates[2]}
    assert stale == set(crash["gappy"])
    check_var(crash["db"], feeds, dates, CRASH_SCENARIOS)
    got = mart(crash["db"], "risk_var_backtest", ("business_date", "portfolio"))
    expected = independent_backtest(feeds, dates, CRASH_SCENARIOS)
    assert set(got) == set(expected)
    for key, e in expected.items():
        row = got[key]
        assert row["hypothetical_pnl_usd"] == pytest.approx(e["hypothetical_pnl_usd"], rel=1e-9, abs=1e-3), key
        # exact decimal sums of micro-dollar terms: a small inventory's VaR carries a few 1e-6 of them
        assert row["var_99"] == pytest.approx(e["var_99"], rel=1e-9, abs=1e-4), key
        assert (row["exception"], row["observations"], row["exceptions_250"], row["zone"]) == \
            (e["exception"], e["observations"], e["exceptions_250"], e["zone"]), key
    firm = [got[(d, "FIRM")] for d in dates[1:]]
    assert all(r["exception"] for r in firm), firm
    assert [r["exceptions_250"] for r in firm] == [1, 2, 3, 4, 5]
    # five exceptions would be YELLOW on 250 observations; on these few there is no zone yet (DOMAIN §12)
    assert [(r["zone"], r["observations"]) for r in firm] == [("INSUFFICIENT_HISTORY", n) for n in range(1, 6)]


@pytest.mark.slow
def test_rebuilding_an_earlier_date_gives_the_same_risk_rows(crash):
    """A backfill of a middle date (later dates already built) reproduces the daily run's rows."""
    from midoffice.warehouse import build_warehouse

    marts = {"risk_limit_utilisation": ("as_of_date", "limit_id"), "risk_var_backtest": ("business_date", "portfolio"),
             "risk_var": ("as_of_date", "portfolio"), "risk_concentration": ("as_of_date", "dimension", "member")}
    lineage = {"run_id", "loaded_at"}

    def snapshot():
        return {m: {k: {c: v for c, v in r.items() if c not in lineage} for k, r in mart(crash["db"], m, key).items()}
                for m, key in marts.items()}

    before = snapshot()
    limits = independent_limits(crash["feeds"], crash["dates"], CRASH_SCENARIOS, crash["pseudonym"])
    for (d, lim), e in limits.items():
        row = before["risk_limit_utilisation"][(d, lim)]
        if not near_boundary(e["utilisation"], e["warning_pct"]):
            assert (row["status"], row["consecutive_breach_days"]) == (e["status"], e["consecutive_breach_days"])
    build_warehouse(crash["settings"], crash["dates"][3], "test_risk__rebuild")
    assert snapshot() == before
