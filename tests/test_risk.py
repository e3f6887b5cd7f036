"""Risk marts (DOMAIN §4.1): concentration, limit utilisation, historical VaR and its backtest.

- The VaR tail convention is checked against the Open Source Risk Engine's published example
  (../shared/oracles) by running transforms/risk_var.sql itself, unchanged, on its P&L vector.
- Every mart is checked against an independent computation written here in plain Python and
  numpy from the delivered landing FILES (csv, pyarrow for the Parquet prices), never from the
  project's SQL or core tables: on the shared 8-date sample run, and on a small hand-made
  fixture (a generated landing whose prices crash harder every day, with a short VaR window)
  where the backtest is forced from GREEN into YELLOW.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import io
import json
import hashlib
import math
from collections import defaultdict
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path

import duckdb
import numpy as np
import pytest

from conftest import REPO, generate_landing

from midoffice import calendar

ORACLES = REPO.parent / "shared" / "oracles"
TRANSFORMS = REPO / "transforms"
BASEL_WINDOW = 250


# --- the tail convention, written independently of the SQL ---------------------------------------

def tail_size(q: str | Decimal, n: int) -> int:
    """k = ceil(q × N) in exact decimal arithmetic (q given as a decimal string)."""
    return max(1, math.ceil(Decimal(q) * n))


def quantile(pnl: list[float], q: str) -> float:
    return sorted(pnl)[tail_size(q, len(pnl)) - 1]


def shortfall(pnl: list[float], q: str) -> float:
    k = tail_size(q, len(pnl))
    return float(np.mean(sorted(pnl)[:k]))


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
        con.execute("CREATE TABLE risk_var_scenarios (as_of_date DATE, portfolio VARCHAR, scenario_date DATE, "
                    "previous_date DATE, pnl_usd DOUBLE, pnl_rank BIGINT)")
        rows = [(as_of, p, s, prev, v, None) for p, vec in vectors.items() for prev, s, v in vec]
        con.executemany("INSERT INTO risk_var_scenarios VALUES (?, ?, ?, ?, ?, ?)", rows)
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


# --- an independent model of the feeds and the risk figures -----------------------------------------

def _csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@cache
def _prices_file(path: Path) -> list[tuple[str, str, float]]:
    import pyarrow.parquet as pq

    t = pq.read_table(path).to_pydict()
    return [(str(d), i, p) for d, i, p in zip(t["price_date"], t["instrument_id"], t["close_price"])]


@cache
def _fx_file(path: Path) -> list[tuple[str, str, float]]:
    return [(r["rate_date"], r["currency"], float(r["usd_per_unit"])) for r in _csv(path)]


class Feeds:
    """What the senders delivered, as of a business date: the landing files and nothing else."""

    def __init__(self, landing: Path):
        self.landing = landing
        self.deliveries = sorted(p.name for p in landing.iterdir() if p.is_dir())

    def upto(self, as_of: str) -> list[str]:
        return [d for d in self.deliveries if d <= as_of]

    def latest(self, feed_file: str, as_of: str) -> list[dict]:
        return _csv(self.landing / self.upto(as_of)[-1] / feed_file)

    @cache
    def market(self, as_of: str) -> "Market":
        closes: dict[tuple[str, str], float] = {}
        rates: dict[tuple[str, str], float] = {}
        for d in self.upto(as_of):  # a later delivery of the same (date, key) wins
            for pd_, inst, px in _prices_file(self.landing / d / "prices.parquet"):
                if pd_ <= as_of:
                    closes[(inst, pd_)] = px
            for rd, ccy, rate in _fx_file(self.landing / d / "fx_rates.csv"):
                if rd <= as_of:
                    rates[(ccy, rd)] = rate
        currency = {r["instrument_id"]: r["currency"] for r in self.latest("instruments.csv", as_of)}
        return Market(closes, rates, currency, calendar.landing_holidays(self.landing, date.fromisoformat(as_of)))

    @cache
    def attributes(self, as_of: str) -> dict[str, dict]:
        return {r["instrument_id"]: r for r in self.latest("instruments.csv", as_of)}

    @cache
    def holdings(self, as_of: str) -> dict[tuple[str, str, str], float]:
        """(holder_type, holder_id, instrument) → market value in USD, summed over custodians."""
        qty: dict[tuple[str, str, str], float] = defaultdict(float)
        for r in _csv(self.landing / as_of / "positions.csv"):
            qty[(r["holder_type"], r["holder_id"], r["instrument_id"])] += float(r["quantity"])
        m = self.market(as_of)
        return {k: q * m.unit_value(k[2], as_of) for k, q in qty.items()}


class Market:
    def __init__(self, closes, rates, currency, holidays: frozenset = frozenset()):
        self.currency = currency
        self.closes = self._series(closes)
        self.rates = self._series(rates)
        # the FIRM business dates with closes (delivered holidays: midoffice.calendar)
        self.calendar = sorted({d for (_, d) in closes if calendar.is_business_day(date.fromisoformat(d), holidays)})

    @staticmethod
    def _series(points: dict[tuple[str, str], float]) -> dict[str, tuple[list[str], list[float]]]:
        by_key: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for (key, d), v in sorted(points.items()):
            by_key[key].append((d, v))
        return {k: ([d for d, _ in pts], [v for _, v in pts]) for k, pts in by_key.items()}

    @staticmethod
    def _last(series: tuple[list[str], list[float]] | None, day: str) -> float | None:
        """The last value on or before the day (carried forward), None before the first."""
        if series is None:
            return None
        i = bisect.bisect_right(series[0], day)
        return series[1][i - 1] if i else None

    def unit_value(self, inst: str, day: str) -> float | None:
        """USD value of one unit: the last close and the last rate on or before the day."""
        px = self._last(self.closes.get(inst), day)
        fx = self._last(self.rates.get(self.currency.get(inst)), day)
        return None if px is None or fx is None else px * fx


def book_pnl_vectors(feeds: Feeds, as_of: str, n: int) -> tuple[list[str], dict[str, np.ndarray]]:
    """Scenario dates and P&L per book and FIRM: Σ MV × r_s, r the USD return of one unit."""
    m = feeds.market(as_of)
    cal = m.calendar[-(n + 1):]
    scen = cal[1:]
    pnl: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(scen)))
    for (ht, book, inst), mv in feeds.holdings(as_of).items():
        if ht != "BOOK" or mv is None:
            continue
        v = np.array([m.unit_value(inst, d) or np.nan for d in cal])
        r = np.nan_to_num(v[1:] / v[:-1] - 1)
        pnl[book] = pnl[book] + mv * r
        pnl["FIRM"] = pnl["FIRM"] + mv * r
    return scen, dict(pnl)


@cache
def independent_var(feeds: Feeds, as_of: str, n: int) -> dict[str, dict]:
    scen, pnl = book_pnl_vectors(feeds, as_of, n)
    out = {}
    for p, vec in pnl.items():
        values = list(vec)
        out[p] = {
            "n_scenarios": len(values), "first_scenario_date": scen[0],
            "var_95": -quantile(values, "0.05"), "var_99": -quantile(values, "0.01"),
            "es_95": -shortfall(values, "0.05"), "es_975": -shortfall(values, "0.025"),
            "es_99": -shortfall(values, "0.01"),
            "worst_scenario_date": scen[int(np.argmin(vec))], "pnl": dict(zip(scen, values)),
        }
    return out


DIMENSIONS = {"book": None, "issuer": "issuer_id", "country": "issuer_country",
              "asset_class": "asset_class", "sector": "sector"}


@cache
def independent_concentration(feeds: Feeds, as_of: str, pseudonym) -> dict[tuple[str, str], dict]:
    attrs = feeds.attributes(as_of)
    sums: dict[tuple[str, str], list] = defaultdict(lambda: [0, 0.0, 0.0])
    for (ht, hid, inst), mv in feeds.holdings(as_of).items():
        if ht == "BOOK":
            keys = [(dim, hid if col is None else attrs[inst][col]) for dim, col in DIMENSIONS.items()]
        else:
            keys = [("client", pseudonym(hid))]
        for key in keys:
            s = sums[key]
            s[0] += 1
            s[1] += abs(mv)
            s[2] += mv
    totals: dict[str, float] = defaultdict(float)
    for (dim, _), s in sums.items():
        totals[dim] += s[1]
    out = {key: {"n_positions": s[0], "gross_usd": s[1], "net_usd": s[2], "share": s[1] / totals[key[0]]}
           for key, s in sums.items()}
    hhi: dict[str, float] = defaultdict(float)
    for (dim, _), row in out.items():
        hhi[dim] += row["share"] ** 2
    for (dim, _), row in out.items():
        row["hhi"], row["effective_n"] = hhi[dim], 1 / hhi[dim]
    return out


def independent_limits(feeds: Feeds, dates: list[str], n: int, pseudonym) -> dict[tuple[str, str], dict]:
    """Every limit on every date, with the breach run counted by walking the dates in order."""
    out: dict[tuple[str, str], dict] = {}
    run: dict[str, int] = defaultdict(int)
    for d in dates:
        conc = independent_concentration(feeds, d, pseudonym)
        var = independent_var(feeds, d, n)
        book_mv = [mv for (ht, _, _), mv in feeds.holdings(d).items() if ht == "BOOK"]
        today = set()
        for lim in feeds.latest("limits.csv", d):
            st, sid, metric = lim["scope_type"], lim["scope_id"], lim["metric"]
            member = pseudonym(sid) if st == "CLIENT" else sid
            c = conc.get((st.lower(), member), {"gross_usd": 0.0, "net_usd": 0.0, "share": 0.0})
            if st == "FIRM":
                c = {"gross_usd": sum(abs(x) for x in book_mv), "net_usd": sum(book_mv), "share": None}
            exposure = {
                "GROSS_EXPOSURE": c["gross_usd"], "NET_EXPOSURE": c["net_usd"], "CONCENTRATION_SHARE": c["share"],
                "VAR_99": var.get("FIRM" if st == "FIRM" else sid, {"var_99": 0.0})["var_99"]
                if st in ("FIRM", "BOOK") else None,
            }[metric]
            limit_value = float(lim["limit_value"])
            warn = float(lim["warning_pct"]) if lim["warning_pct"] else 0.8
            util = None if exposure is None else abs(exposure) / limit_value if metric == "NET_EXPOSURE" \
                else exposure / limit_value
            status = ("NOT_APPLICABLE" if util is None else "BREACH" if util > 1
                      else "WARNING" if util >= warn else "OK")
            run[lim["limit_id"]] = run[lim["limit_id"]] + 1 if status == "BREACH" else 0
            today.add(lim["limit_id"])
            out[(d, lim["limit_id"])] = {"scope_id": member, "exposure": exposure, "limit_value": limit_value,
                                         "warning_pct": warn, "utilisation": util, "status": status,
                                         "consecutive_breach_days": run[lim["limit_id"]]}
        for gone in set(run) - today:  # a limit missing from the feed breaks its run
            run[gone] = 0
    return out


def independent_backtest(feeds: Feeds, dates: list[str], n: int) -> dict[tuple[str, str], dict]:
    """Hypothetical P&L of yesterday's book holdings at today's prices, against yesterday's var_99."""
    out: dict[tuple[str, str], dict] = {}
    history: dict[str, list[bool | None]] = defaultdict(list)
    evaluated: list[str] = []
    for d in dates:
        m = feeds.market(d)
        prev = m.calendar[m.calendar.index(d) - 1]
        if prev not in dates:  # the warehouse holds no holdings for it
            continue
        var_prev = independent_var(feeds, prev, n)
        pnl: dict[str, float] = defaultdict(float)
        for (ht, book, inst), mv in feeds.holdings(prev).items():
            if ht != "BOOK":
                continue
            v0, v1 = m.unit_value(inst, prev), m.unit_value(inst, d)
            r = v1 / v0 - 1 if v0 and v1 else 0.0
            pnl[book] += mv * r
            pnl["FIRM"] += mv * r
        evaluated.append(d)
        for p, value in pnl.items():
            var = var_prev.get(p, {}).get("var_99")
            exc = None if var is None else -value > var
            history[p].append((d, exc))
            window = set(evaluated[-BASEL_WINDOW:])
            excs = [e for dd, e in history[p] if dd in window and e is not None]
            k = sum(excs)
            out[(d, p)] = {"previous_date": prev, "hypothetical_pnl_usd": value, "var_99": var, "exception": exc,
                           "observations": len(excs), "exceptions_250": k,
                           "zone": "RED" if k >= 10 else "YELLOW" if k >= 5 else "GREEN"}
    return out


# --- reading the marts ----------------------------------------------------------------------------

def mart(db: Path, name: str, key: tuple[str, ...]) -> dict[tuple, dict]:
    con = duckdb.connect(str(db), read_only=True)
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
    scen = mart(db, "risk_var_scenarios", ("as_of_date", "portfolio", "scenario_date"))
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
                assert scen[(d, p, s)]["pnl_usd"] == pytest.approx(value, rel=1e-9, abs=1e-3), (d, p, s)
        assert sum(1 for (dd, _, _) in scen if dd == d) == n * len(expected)
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
        assert row["utilisation"] == pytest.approx(e["utilisation"], rel=1e-9), key
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
        assert row["var_99"] == pytest.approx(e["var_99"], rel=1e-9), key
        if abs(-e["hypothetical_pnl_usd"] - e["var_99"]) > 1e-6 * e["var_99"]:
            assert row["exception"] == e["exception"], key
            assert (row["observations"], row["exceptions_250"], row["zone"]) == \
                (e["observations"], e["exceptions_250"], e["zone"]), key


# --- a hand-made crash: the backtest turns YELLOW ----------------------------------------------------

CRASH_START = "2026-03-02"
CRASH_DAYS = 6           # the first date, then five dates on which prices fall harder each day
CRASH_SCENARIOS = 20     # a short VaR window (Settings.var_scenarios)
RISK_FEEDS = ["books", "instruments", "prices", "fx_rates", "limits", "clients", "positions"]


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
def test_a_crash_turns_the_backtest_yellow(crash):
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
        assert row["var_99"] == pytest.approx(e["var_99"], rel=1e-9), key
        assert (row["exception"], row["observations"], row["exceptions_250"], row["zone"]) == \
            (e["exception"], e["observations"], e["exceptions_250"], e["zone"]), key
    firm = [got[(d, "FIRM")] for d in dates[1:]]
    assert all(r["exception"] for r in firm), firm
    assert [r["exceptions_250"] for r in firm] == [1, 2, 3, 4, 5]
    assert [r["zone"] for r in firm] == ["GREEN"] * 4 + ["YELLOW"]


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
