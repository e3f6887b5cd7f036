"""Does a date of the §11 marts cost more as the history grows? (issue 26, bench/RESULTS.md)

Takes a built warehouse (e.g. the 3 dates of a small sample run), extends its core feeds to 61
business dates by repeating the last delivered date's partitions (prices and rates moved a little
each day, so every date has its own closes), and times the marts' SQL for date 21 and date 61 on
the same file: risk_var_scenarios (VaR and stressed VaR sets), risk_stress, risk_sensitivities,
risk_liquidity(+profile), fx_net_open_position, best of 3, on a copy of the file.

    .venv/bin/python bench/risk2_history.py <build.duckdb> <last built date>

Nothing is asserted: numbers are for people.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from midoffice.config import Settings
from midoffice.duck import connect


REPO = Path(__file__).resolve().parent.parent
MARTS = ["risk_var_scenarios", "risk_stress", "risk_sensitivities", "risk_liquidity", "risk_liquidity_profile",
         "fx_net_open_position"]
MAIN_INPUTS = ["risk_exposure", "risk_sensitivities", "risk_liquidity"]


def extend(con, last: str, total: int) -> list[str]:
    """Business dates after `last` up to `total` dates in all, each a copy of `last`'s partitions."""
    built = [str(r[0]) for r in con.execute("SELECT DISTINCT business_date FROM core.positions ORDER BY 1").fetchall()]
    days = [str(r[0]) for r in con.execute(
        "SELECT d::DATE FROM range(CAST(? AS DATE) + 1, CAST(? AS DATE) + 200, INTERVAL 1 DAY) t(d) "
        "WHERE isodow(d) <= 5 ORDER BY 1", [last, last]).fetchall()][: total - len(built)]
    for k, d in enumerate(days, start=1):
        for feed, date_col in (("prices", "price_date"), ("fx_rates", "rate_date")):
            value = "close_price" if feed == "prices" else "usd_per_unit"
            cols = [c[0] for c in con.execute(f"DESCRIBE core.{feed}").fetchall()]
            sel = ", ".join(f"CAST('{d}' AS DATE)" if c in ("business_date", date_col)
                            else f"{c} * (1 + 0.001 * sin({k} + hash({cols[2]}) % 7))" if c == value and feed == "prices"
                            else c for c in cols)
            con.execute(f"INSERT INTO core.{feed} SELECT {sel} FROM core.{feed} "
                        f"WHERE business_date = '{last}' AND {date_col} = '{last}'")
        for feed in ("positions", "instruments", "stress_scenarios", "limits", "books"):
            cols = [c[0] for c in con.execute(f"DESCRIBE core.{feed}").fetchall()]
            sel = ", ".join(f"CAST('{d}' AS DATE)" if c == "business_date" else c for c in cols)
            con.execute(f"INSERT INTO core.{feed} SELECT {sel} FROM core.{feed} WHERE business_date = '{last}'")
    return built + days


def time_marts(con, as_of: str, last: str) -> dict[str, float]:
    from midoffice.models import load_models

    models = {m.name: m for m in load_models()}
    con.execute("SET VARIABLE as_of_date = CAST(? AS DATE)", [as_of])
    con.execute("SET VARIABLE var_scenarios = 250")
    for table in MAIN_INPUTS:  # the date's upstream rows, as the build would have them
        cols = [c[0] for c in con.execute(f"DESCRIBE main.{table}").fetchall()]
        sel = ", ".join(f"CAST('{as_of}' AS DATE)" if c == "as_of_date" else c for c in cols)
        con.execute(f"DELETE FROM main.{table} WHERE as_of_date = '{as_of}'")
        con.execute(f"INSERT INTO main.{table} SELECT {sel} FROM main.{table} WHERE as_of_date = '{last}'")
    out = {}
    for name in MARTS:
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            con.execute(f"SELECT count(*) FROM ({models[name].sql})").fetchone()
            best = min(best, time.perf_counter() - t)
        out[name] = best
    return out


def main() -> None:
    src, last = Path(sys.argv[1]), sys.argv[2]
    work = Path(tempfile.mkdtemp(prefix="risk2-history-")) / "build.duckdb"
    shutil.copy(src, work)
    con = connect(Settings(landing=work.parent, home=work.parent), work)  # the project's one door
    try:
        dates = extend(con, last, 61)
        d21, d61 = dates[20], dates[60]
        t21, t61 = time_marts(con, d21, last), time_marts(con, d61, last)
        print(f"| mart | date 21 ({d21}) | date 61 ({d61}) | ratio |")
        print("|---|---|---|---|")
        for name in MARTS:
            print(f"| {name} | {t21[name]:.3f} s | {t61[name]:.3f} s | {t61[name] / t21[name]:.2f}× |")
        a, b = sum(t21.values()), sum(t61.values())
        print(f"| all six | {a:.3f} s | {b:.3f} s | {b / a:.2f}× |")
    finally:
        con.close()
        shutil.rmtree(work.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
