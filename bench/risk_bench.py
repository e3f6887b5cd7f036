"""Benchmark of the risk marts (by hand; never asserted in tests).

Two modes:

  warehouse   time each risk mart's query for one business date on a COPY of a built home's
              build.duckdb (core tables loaded by a real run), with the project's DuckDB limits:
                .venv/bin/python bench/risk_bench.py warehouse --home H --date 2026-01-06

  synthetic   how the cost grows with the instruments held and the number of VaR scenarios: a
              synthetic core (prices and fx history, positions of the books and of clients) is
              made in a scratch DuckDB file with SQL, then risk_exposure and the risk marts are
              built for two dates as the build does (CREATE TEMP TABLE AS query, then insert):
                .venv/bin/python bench/risk_bench.py synthetic --instruments 1000,3000,10000 --scenarios 250,500,1000

Prints one line per mart and configuration: rows and seconds (best of --repeat).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from midoffice.config import DEV_PSEUDONYM_KEY, settings_from
from midoffice.duck import connect
from midoffice.models import load_models
from midoffice.pseudonym import register as register_client_key

RISK_MARTS = [m.name for m in load_models() if m.name.startswith("risk_")]


def _set_variables(con, business_date: str, scenarios: int) -> None:
    con.execute("SET VARIABLE as_of_date = CAST(? AS DATE)", [business_date])
    con.execute("SET VARIABLE var_scenarios = ?", [scenarios])
    con.execute("SET VARIABLE reporting_currency = 'USD'")
    con.execute("SET VARIABLE quarantine_threshold = 0.01")


def build_marts(con, business_date: str, scenarios: int, marts: list[str]) -> dict[str, tuple[int, float]]:
    """What the build does per model: the query into a temp table, then replace the date's rows."""
    models = {m.name: m for m in load_models()}
    _set_variables(con, business_date, scenarios)
    timings = {}
    for name in marts:
        model = models[name]
        t0 = time.perf_counter()
        con.execute(f"CREATE OR REPLACE TEMP TABLE _new AS SELECT *, 'bench' AS run_id, "
                    f"CAST(now() AS TIMESTAMP) AS loaded_at FROM ({model.sql})")
        exists = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = 'main' AND table_name = ?", [name]).fetchone()[0]
        if not exists:
            con.execute(f"CREATE TABLE main.{name} AS SELECT * FROM _new WHERE false")
        con.execute(f"DELETE FROM main.{name} WHERE {model.partition} = ?", [business_date])
        con.execute(f"INSERT INTO main.{name} SELECT * FROM _new")
        rows = con.execute("SELECT count(*) FROM _new").fetchone()[0]
        timings[name] = (rows, time.perf_counter() - t0)
    return timings


def bench_warehouse(home: Path, business_date: str, scenarios: int, repeat: int) -> None:
    settings = settings_from(home / "landing", home)
    with tempfile.TemporaryDirectory(dir=settings.home) as scratch:
        copy = Path(scratch) / "bench.duckdb"
        shutil.copy(settings.build_db, copy)  # the build checkpoints after each date: no WAL to copy
        con = connect(settings, copy)
        register_client_key(con, DEV_PSEUDONYM_KEY.encode())
        best: dict[str, tuple[int, float]] = {}
        for _ in range(repeat):
            for name, (rows, sec) in build_marts(con, business_date, scenarios, RISK_MARTS).items():
                if name not in best or sec < best[name][1]:
                    best[name] = (rows, sec)
        con.close()
    _report({"date": business_date, "scenarios": scenarios}, best)


# --- synthetic core ------------------------------------------------------------------------------

def _weekdays(end: date, n: int) -> list[date]:
    days, d = [], end
    while len(days) < n:
        if d.weekday() < 5:
            days.append(d)
        d -= timedelta(days=1)
    return sorted(days)


def make_synthetic_core(con, instruments: int, scenarios: int, books: int, clients: int, end: date) -> list[str]:
    """Prices and fx for scenarios + 40 weekdays, positions on the last two dates; returns those dates."""
    # the real core schema (contracts/feeds.yaml) and its calendar: no holidays delivered, weekdays
    from midoffice.warehouse import create_schema, refresh_calendar_days

    create_schema(con)
    con.execute("SET VARIABLE as_of_date = CAST(? AS DATE)", [end])
    refresh_calendar_days(con)
    days = _weekdays(end, scenarios + 40)
    con.execute("CREATE TEMP TABLE days AS SELECT unnest(?::DATE[]) AS d", [days])
    ccys = ["USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD"]
    # a random walk per instrument: cumulative sums of daily log returns
    con.execute(f"""
        INSERT INTO core.prices
        SELECT d, d, 'I' || lpad(i::VARCHAR, 7, '0'),
               (50 + i % 100) * exp(sum(0.015 * (random() - 0.5)) OVER (PARTITION BY i ORDER BY d)), 'bench'
        FROM range({instruments}) r(i), days
    """)
    con.execute(f"""
        INSERT INTO core.fx_rates
        SELECT d, d, c, CASE WHEN c = 'USD' THEN 1.0 ELSE 1 + 0.01 * (random() - 0.5) END, 'bench'
        FROM unnest({ccys}) u(c), days
    """)
    last_two = [str(x) for x in days[-2:]]
    for bd in last_two:
        con.execute(f"""
            INSERT INTO core.instruments
            SELECT DATE '{bd}', 'I' || lpad(i::VARCHAR, 7, '0'), 'instrument ' || i,
                   ['EQUITY', 'BOND', 'FUND', 'COMMODITY', 'FX'][1 + i % 5], 'SECTOR' || (i % 11),
                   'ISS' || (i % {max(1, instruments // 4)}), ['US', 'GB', 'DE', 'JP', 'CH', 'CA', 'AU'][1 + i % 7],
                   {ccys}[1 + i % 7], 'bench'
            FROM range({instruments}) r(i)
        """)
        # every instrument held by one book, a third of them by a second book; clients 5 holdings each
        con.execute(f"""
            INSERT INTO core.positions
            SELECT DATE '{bd}', DATE '{bd}', 'BOOK', 'BOOK' || (i % {books}), 'I' || lpad(i::VARCHAR, 7, '0'),
                   round((random() - 0.2) * 100000), 'CUST', 'bench'
            FROM range({instruments}) r(i)
            UNION ALL
            SELECT DATE '{bd}', DATE '{bd}', 'BOOK', 'BOOK' || ((i + 1) % {books}), 'I' || lpad(i::VARCHAR, 7, '0'),
                   round((random() - 0.2) * 100000), 'CUST', 'bench'
            FROM range(0, {instruments}, 3) r(i)
            UNION ALL
            SELECT DATE '{bd}', DATE '{bd}', 'CLIENT', 'C' || lpad(c::VARCHAR, 7, '0'),
                   'I' || lpad(((c * 7 + k * 131) % {instruments})::VARCHAR, 7, '0'), 100, 'CUST', 'bench'
            FROM range({clients}) r(c), range(5) s(k)
        """)
        con.execute(f"""
            INSERT INTO core.limits
            SELECT DATE '{bd}', 'L' || b, 'BOOK', 'BOOK' || b, m, 1e6, NULL, 'bench'
            FROM range({books}) r(b), unnest(['GROSS_EXPOSURE', 'NET_EXPOSURE', 'VAR_99']) u(m)
        """)
    return last_two


def bench_synthetic(instruments: list[int], scenarios: list[int], books: int, clients: int, repeat: int) -> None:
    for n_instr in instruments:
        for n_scen in scenarios:
            with tempfile.TemporaryDirectory() as scratch:
                settings = dataclasses.replace(settings_from(scratch, scratch), var_scenarios=n_scen)
                con = connect(settings, Path(scratch) / "bench.duckdb")
                register_client_key(con, DEV_PSEUDONYM_KEY.encode())
                prev, today = make_synthetic_core(con, n_instr, n_scen, books, clients, date(2026, 1, 14))
                marts = RISK_MARTS  # risk_exposure first (dependency order)
                build_marts(con, prev, n_scen, marts)
                best: dict[str, tuple[int, float]] = {}
                for _ in range(repeat):
                    for name, (rows, sec) in build_marts(con, today, n_scen, marts).items():
                        if name not in best or sec < best[name][1]:
                            best[name] = (rows, sec)
                con.close()
            _report({"instruments": n_instr, "scenarios": n_scen, "books": books, "clients": clients}, best)


def _report(config: dict, timings: dict[str, tuple[int, float]]) -> None:
    head = " ".join(f"{k}={v}" for k, v in config.items())
    risk_total = sum(sec for name, (_, sec) in timings.items() if name != "risk_exposure")
    for name, (rows, sec) in timings.items():
        print(f"{head}  {name:<24} rows={rows:>9}  {sec:8.3f} s")
    print(f"{head}  {'risk marts (excl. exposure)':<24} {'':>14}  {risk_total:8.3f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    w = sub.add_parser("warehouse")
    w.add_argument("--home", type=Path, required=True)
    w.add_argument("--date", required=True)
    w.add_argument("--scenarios", type=int, default=250)
    w.add_argument("--repeat", type=int, default=3)
    s = sub.add_parser("synthetic")
    s.add_argument("--instruments", default="1000,3000,10000,30000")
    s.add_argument("--scenarios", default="250,500,1000")
    s.add_argument("--books", type=int, default=8)
    s.add_argument("--clients", type=int, default=100_000)
    s.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.mode == "warehouse":
        bench_warehouse(args.home.resolve(), args.date, args.scenarios, args.repeat)
    else:
        bench_synthetic([int(x) for x in args.instruments.split(",")], [int(x) for x in args.scenarios.split(",")],
                        args.books, args.clients, args.repeat)


if __name__ == "__main__":
    main()
