"""Benchmarks: one business date end to end and per stage, against a plain-DuckDB yardstick.

    .venv/bin/python bench/run.py                       # 100k and 1M trades a day
    .venv/bin/python bench/run.py --trades 10000000     # the big one (needs ~15 GB of disk)
    .venv/bin/python bench/run.py --history 60 --trades 100000   # date 61 against date 1
    .venv/bin/python bench/run.py --history 60 --window 20 --trades 20000  # ... and against date 21
    .venv/bin/python bench/run.py --trades 10000000 --stages-only  # each stage's time and peak RSS
    .venv/bin/python bench/run.py --history 60 --window 20 --trades 20000 --reuse-history --end-to-end
                                                        # ... and each date as `midoffice run`
    .venv/bin/python bench/run.py --range 20 --trades 20000   # what `midoffice run --from --to` runs,
                                                        # 20 dates: Airflow's cost per date in it

Every measurement runs in a fresh subprocess, so peak RSS (ru_maxrss of that child) is the
stage's own. Results are appended to bench/out/results.jsonl and printed as a Markdown table for
bench/RESULTS.md. Nothing here is asserted: numbers are for people, not for tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
# Benchmarks run on generated sample data: they opt in to the development key (midoffice.pseudonym);
# the child processes inherit it.
os.environ.setdefault("MIDOFFICE_DEVELOPMENT_KEY", "1")
START = "2026-01-05"

STAGE_DRIVER = r"""
import json, sys, time
from midoffice.config import settings_from
from midoffice.contracts import ingest_order
from midoffice.ingest import ingest_feed
from midoffice.stages import publish_date, validate_and_gate
from midoffice.warehouse import build_warehouse
from midoffice.report import build_report
landing, home, day, stage = sys.argv[1:5]
s = settings_from(landing, home)
t = time.perf_counter()
if stage == "ingest":
    for f in ingest_order():
        r = ingest_feed(s, day, f, "bench")
        assert r["status"] == "LOADED", r
elif stage == "validate":
    for f in ingest_order():
        g = validate_and_gate(s, day, f, "bench")
        assert g["gate"] == "PASS", g
elif stage == "build":
    built = build_warehouse(s, day, "bench")
    # which mart took the time: one_date() reports the share of the §11 marts (issue 26)
    (s.home / "bench_mart_seconds.json").write_text(json.dumps(built["mart_seconds"]))
elif stage == "publish":
    publish_date(s, day, "bench")
elif stage == "report":
    build_report(s, day, "bench")
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


HISTORY_DRIVER = r"""
import sys
from midoffice.config import settings_from
from midoffice.contracts import ingest_order
from midoffice.ingest import ingest_feed
from midoffice.stages import publish_date, validate_and_gate
from midoffice.warehouse import build_warehouse
landing, home, dates = sys.argv[1], sys.argv[2], sys.argv[3:]
s = settings_from(landing, home)
for day in dates:
    for f in ingest_order():
        assert ingest_feed(s, day, f, "history")["status"] == "LOADED", (day, f)
        assert validate_and_gate(s, day, f, "history")["gate"] == "PASS", (day, f)
    build_warehouse(s, day, "history")
    publish_date(s, day, "history")
"""


def timed_child(args: list[str]) -> tuple[float, float]:
    """Wall time and exact peak RSS of one child via GNU time; a failed child fails the bench
    (a stage that fails fast would otherwise look fast)."""
    t = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *args], capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    peak_kb = int(proc.stderr.strip().splitlines()[-1])
    return wall, peak_kb / 1024


def generate(landing: Path, trades: int, days: int) -> tuple[float, float]:
    if (landing / "_SAMPLE_DATA").exists():
        return 0.0, 0.0
    return timed_child([PY, "-m", "midoffice.cli", "generate", "--out", str(landing), "--start", START,
                        "--days", str(days), "--trades-per-day", str(trades)])


MIGRATE = r"""
import sys
from midoffice.config import settings_from
from midoffice.runner import prepare_airflow
prepare_airflow(settings_from(sys.argv[1], sys.argv[2]))
"""


YARDSTICK = r"""
import sys, time, duckdb
from pathlib import Path
from midoffice.config import DEV_PSEUDONYM_KEY
from midoffice.contracts import load_contracts
from midoffice.models import load_models
from midoffice.pseudonym import register, remember_clients
from midoffice.warehouse import create_schema, refresh_calendar_days, refresh_control_parameters
landing, day, db = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
# Plain DuckDB on purpose, not midoffice.duck.connect (the one door of the package): the
# yardstick measures what DuckDB alone does with the machine, without our limits.
con = duckdb.connect(db, config={"memory_limit": "16GB", "threads": 2})  # the machine, not our 4 GB cap
t = time.perf_counter()
create_schema(con)  # the tables and macros the mart SQL reads (calendars, parameters, FX), as the build's
register(con, DEV_PSEUDONYM_KEY.encode())
for feed in load_contracts().values():
    path = str(landing / day / feed.file)
    cols = ", ".join(f'"{c.name}"' for c in feed.columns)
    if feed.format == "csv":
        types = "{" + ", ".join(f"'{c.name}': '{c.type}'" for c in feed.columns) + "}"
        src = f"read_csv('{path}', header=true, columns={types}, auto_detect=false, timestampformat='%Y-%m-%dT%H:%M:%SZ')"
    elif feed.format == "jsonl":
        types = "{" + ", ".join(f"'{c.name}': '{c.type}'" for c in feed.columns) + "}"
        src = f"read_json('{path}', format='newline_delimited', columns={types})"
    else:
        src = f"read_parquet('{path}')"
    con.execute(f"INSERT INTO core.{feed.name} SELECT DATE '{day}' AS business_date, {cols}, NULL::VARCHAR AS run_id "
                f"FROM {src}")
con.execute(f"SET VARIABLE as_of_date = DATE '{day}'")
refresh_calendar_days(con)  # the calendars and control parameters of the date, as the build's
refresh_control_parameters(con)
remember_clients(con, "SELECT client_id FROM core.clients")  # as the build does: keys once, then lookups
con.execute("SET VARIABLE reporting_currency = 'USD'")
con.execute("SET VARIABLE var_scenarios = 250")
con.execute("SET VARIABLE quarantine_threshold = 0.01")
declared = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()}
for m in load_models():
    select = f"SELECT *, NULL::VARCHAR AS run_id_, NULL::TIMESTAMP AS loaded_at FROM ({m.sql})"
    if m.spans:  # its rows straight into its spans, as a first build of a date writes them
        con.execute(f"INSERT INTO main.{m.dates_table} VALUES (DATE '{day}')")
        con.execute(f"INSERT INTO main.{m.spans_table} SELECT *, DATE '{day}', NULL, NULL, NULL FROM ({m.sql})")
    else:
        con.execute(f"INSERT INTO main.{m.name} {select}" if m.name in declared
                    else f"CREATE TABLE main.{m.name} AS {select}")
con.execute("CHECKPOINT")
print(time.perf_counter() - t)
"""


def yardstick(landing: Path, day: str, work: Path) -> float:
    """What the hardware can do: the same feeds loaded straight into DuckDB with their types and
    the same mart SQL (transforms/) run over them in one connection on both cores and with 16 GB
    (at 10M trades a day these marts do not fit in 4 GB on two threads); no landing checks,
    quarantine, validation, gate, audits, publication, report or orchestration."""
    db = work / "yardstick.duckdb"
    db.unlink(missing_ok=True)
    proc = subprocess.run([PY, "-c", YARDSTICK, str(landing), day, str(db)], capture_output=True, text=True,
                          cwd=REPO)
    if proc.returncode:
        raise RuntimeError(f"yardstick failed:\n{proc.stderr[-3000:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def task_kind(dag_id: str, task_id: str) -> str:
    """What a task does: ingest_trades -> ingest (before issue 21 the ingest DAG had four tasks a
    feed, counted by kind, for the old code's figures); business_date, feeds, gates as they are."""
    if dag_id == "midoffice_ingest":
        for kind in ("wait", "ingest", "validate", "decided"):
            if task_id.startswith(kind + "_"):
                return kind
    return task_id


def orchestration_split(airflow_db: Path, wall: float) -> dict:
    """Where one date's `midoffice run` went, read from Airflow's own metadata DB (the latest run
    of each DAG): seconds in task instances by kind (the stage's work plus the task runner's
    cost per task), between them, and outside them (process start, importing Airflow, parsing
    the DAGs, dag.test()'s set-up of each run). The first task, business_date, also starts
    Airflow's in-process execution API."""
    import sqlite3

    con = sqlite3.connect(airflow_db)
    try:
        rows = con.execute("""
            SELECT ti.dag_id, ti.task_id, ti.start_date, ti.end_date, ti.duration FROM task_instance ti
            JOIN (SELECT dag_id, max(start_date) AS started FROM dag_run GROUP BY dag_id) last
              ON last.dag_id = ti.dag_id
            JOIN dag_run r ON r.dag_id = ti.dag_id AND r.run_id = ti.run_id AND r.start_date = last.started
            WHERE ti.start_date IS NOT NULL AND ti.end_date IS NOT NULL""").fetchall()
    finally:
        con.close()
    if not rows:
        return {}
    from datetime import datetime

    by_kind: dict[str, float] = {}
    for dag_id, task_id, _start, _end, duration in rows:
        kind = task_kind(dag_id, task_id)
        by_kind[kind] = round(by_kind.get(kind, 0.0) + duration, 2)
    first = min(datetime.fromisoformat(r[2]) for r in rows)
    last = max(datetime.fromisoformat(r[3]) for r in rows)
    span = (last - first).total_seconds()
    in_tasks = sum(r[4] for r in rows)
    return {"task_instances": len(rows), "in_tasks_s": by_kind, "between_tasks_s": round(span - in_tasks, 2),
            "outside_tasks_s": round(wall - span, 2)}


# The marts of risk beyond one VaR (DOMAIN §11, issue 26); the stressed VaR is the SVAR set inside
# risk_var_scenarios (one simulation for both sets), so that mart is shown beside them, not in them.
RISK_BEYOND_VAR = ("risk_sensitivities", "fx_net_open_position", "risk_stress", "risk_liquidity",
                   "risk_liquidity_profile")


def risk_beyond_var_share(home: Path) -> dict:
    """Seconds of each mart in the build stage (build_warehouse's mart_seconds), and the share of
    the build's mart time the §11 marts take."""
    path = home / "bench_mart_seconds.json"
    if not path.is_file():
        return {}
    seconds = json.loads(path.read_text())
    total = sum(seconds.values())
    risk2 = sum(v for k, v in seconds.items() if k in RISK_BEYOND_VAR)
    slowest = dict(sorted(seconds.items(), key=lambda kv: -kv[1])[:8])
    return {"marts_s": round(total, 2), "risk_beyond_var_marts_s": round(risk2, 2),
            "risk_beyond_var_share_of_marts": round(risk2 / total, 3) if total else None,
            "risk_var_scenarios_s": seconds.get("risk_var_scenarios"), "slowest_marts_s": slowest}


def one_date(trades: int, out: Path, stages_only: bool = False) -> dict:
    root = out / f"t{trades}"
    landing, work = root / "landing", root / "work"
    work.mkdir(parents=True, exist_ok=True)
    gen_s, gen_mb = generate(landing, trades, 1)
    result = {"trades_per_day": trades, "generate_s": round(gen_s, 2), "generate_peak_mb": round(gen_mb)}
    # Per stage, each in its own process, in a new home (a first build of the date, not a rerun).
    home = root / "home_stages"
    shutil.rmtree(home, ignore_errors=True)
    for stage in ["ingest", "validate", "build", "publish", "report"]:
        wall, mb = timed_child([PY, "-c", STAGE_DRIVER, str(landing), str(home), START, stage])
        result[f"{stage}_s"], result[f"{stage}_peak_mb"] = round(wall, 2), round(mb)
    result.update(risk_beyond_var_share(home))
    if result.get("risk_beyond_var_marts_s") is not None:  # what they add to the build stage
        added = result["risk_beyond_var_marts_s"]
        result["risk_beyond_var_added_to_build"] = round(added / (result["build_s"] - added), 3)
    if stages_only:  # e.g. at 10M, where end to end and the yardstick take another ~10 minutes
        return result
    # End to end through the DAG (dag.test()), as a user runs it.
    home_e2e = root / "home_e2e"
    shutil.rmtree(home_e2e, ignore_errors=True)
    os.environ["AIRFLOW_HOME"] = str(root / "airflow")
    # Airflow's metadata DB is migrated once, before the timing: a set-up step (as on a
    # scheduler), not a cost of each business date.
    subprocess.run([PY, "-c", MIGRATE, str(landing), str(home_e2e)], check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall, mb = timed_child(midoffice_run(landing, home_e2e, START))
    result["end_to_end_s"], result["end_to_end_peak_mb"] = round(wall, 2), round(mb)
    result["end_to_end_split"] = orchestration_split(root / "airflow" / "airflow.db", wall)
    result["yardstick_s"] = round(yardstick(landing, START, work), 2)
    result["ratio_to_yardstick"] = round(result["end_to_end_s"] / result["yardstick_s"], 2)
    # The yardstick's own scope (load and marts): our ingest and build stages, each timed in a
    # fresh process (so with their imports), against it. The target is the end-to-end ratio.
    result["ingest_build_ratio"] = round((result["ingest_s"] + result["build_s"]) / result["yardstick_s"], 2)
    return result


RANGE_DRIVER = r"""
import json, os, sys, time
t_process = time.perf_counter()
landing, home, dates = sys.argv[1], sys.argv[2], sys.argv[3:]
# What `midoffice run --from D1 --to DN` runs once its arguments are checked (midoffice.cli:
# prepare Airflow, resolve the key, run_dates), with the stage functions the DAG tasks call
# timed: wall and CPU (this process, all threads) inside them is the work; the rest of a
# date is Airflow's (orchestration).
from midoffice import alerts, ingest, stages, warehouse
from midoffice.report import pack
WORK = {"ingest": (ingest, "ingest_feed"), "validate": (stages, "validate_and_gate"),
        "build": (warehouse, "build_warehouse"), "publish": (stages, "publish_date"),
        "report": (pack, "build_report"), "notify": (alerts, "notify")}
spent = {k: [0.0, 0.0] for k in WORK}
def timed(kind, f):
    def run(*a, **kw):
        w, c = time.perf_counter(), time.process_time()
        try:
            return f(*a, **kw)
        finally:
            spent[kind][0] += time.perf_counter() - w
            spent[kind][1] += time.process_time() - c
    return run
for kind, (module, name) in WORK.items():
    setattr(module, name, timed(kind, getattr(module, name)))
import midoffice.report
midoffice.report.build_report = pack.build_report  # the DAG imports it from midoffice.report
from midoffice.config import settings_from
from midoffice.pseudonym import resolve_key
from midoffice.runner import prepare_airflow, run_dates
settings = settings_from(landing, home)
prepare_airflow(settings)
import airflow.sdk
resolve_key(settings)
per_date, mark = [], {}
def progress(text):
    now = (time.perf_counter(), time.process_time(), {k: list(v) for k, v in spent.items()})
    if text.endswith("…"):
        mark["start"] = now
        return
    (w0, c0, s0), (w1, c1, s1) = mark["start"], now
    work = {k: [round(s1[k][0] - s0[k][0], 3), round(s1[k][1] - s0[k][1], 3)] for k in WORK}
    per_date.append({"line": text, "wall_s": round(w1 - w0, 3), "cpu_s": round(c1 - c0, 3), "work": work})
t_ready = time.perf_counter()
outcomes = run_dates(settings, dates, progress=progress)
print(json.dumps({"start_up_s": round(t_ready - t_process, 2), "ok": [o.ok for o in outcomes],
                  "dates": dates, "per_date": per_date}))
"""


def date_range(trades: int, days: int, out: Path) -> dict:
    """What `midoffice run --from D1 --to DN` runs (midoffice.runner.run_dates in one process,
    `RANGE_DRIVER`) over `days` generated dates at `trades` a day, in a new home (Airflow's
    metadata DB migrated before, as a set-up step). For each date: its wall and CPU seconds, the
    part of them inside the stage functions the tasks call (ingest_feed, validate_and_gate,
    build_warehouse, publish_date, build_report, notify: the work), and the rest, which is
    Airflow's: orchestration. CPU seconds are the process's (every thread), less disturbed than
    wall seconds when others share the machine. The first date also pays what a process pays once
    (the execution API's start, importing GX); the process's start-up before it is apart."""
    import statistics

    root = out / f"range{trades}x{days}"
    landing, home = root / "landing", root / "home"
    generate(landing, trades, days)
    dates = sorted(p.name for p in landing.iterdir() if p.is_dir())[:days]
    shutil.rmtree(home, ignore_errors=True)
    os.environ.pop("AIRFLOW_HOME", None)  # the run's own: <home>/airflow
    subprocess.run([PY, "-c", MIGRATE, str(landing), str(home)], check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    load_before = os.getloadavg()
    started = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", PY, "-c", RANGE_DRIVER, str(landing), str(home), *dates],
                          capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"range driver failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    peak_kb, user, system = proc.stderr.strip().splitlines()[-1].split()
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    per_date = []
    for d, row in zip(dates, found["per_date"]):
        work_wall = sum(w for w, _ in row["work"].values())
        work_cpu = sum(c for _, c in row["work"].values())
        per_date.append({"date": d, "line": row["line"], "wall_s": row["wall_s"], "cpu_s": row["cpu_s"],
                         "work_wall_s": round(work_wall, 2), "work_cpu_s": round(work_cpu, 2),
                         "orchestration_wall_s": round(row["wall_s"] - work_wall, 2),
                         "orchestration_cpu_s": round(row["cpu_s"] - work_cpu, 2), "work": row["work"]})
    later = per_date[1:] or per_date

    def stats(key: str) -> dict:
        values = [d[key] for d in later]
        return {"median": round(statistics.median(values), 2), "mean": round(statistics.mean(values), 2),
                "min": min(values), "max": max(values)}

    return {"trades_per_day": trades, "dates": days, "all_ok": all(found["ok"]), "wall_s": round(wall, 1),
            "user_s": float(user), "system_s": float(system), "peak_mb": round(int(peak_kb) / 1024),
            "load_before": [round(x, 1) for x in load_before], "load_after": [round(x, 1) for x in os.getloadavg()],
            "start_up_s": found["start_up_s"],
            "date_1": {k: per_date[0][k] for k in ("wall_s", "cpu_s", "orchestration_wall_s", "orchestration_cpu_s")},
            "dates_2_on": {k: stats(k) for k in ("wall_s", "cpu_s", "work_wall_s", "work_cpu_s",
                                                  "orchestration_wall_s", "orchestration_cpu_s")},
            "per_date": per_date,
            "last_date_split": orchestration_split(home / "airflow" / "airflow.db", per_date[-1]["wall_s"])}


def midoffice_run(landing: Path, home: Path, day: str) -> list[str]:
    """One business date as a user runs it: both DAGs through dag.test(), report included."""
    return [PY, "-m", "midoffice.cli", "run", "--landing", str(landing), "--home", str(home), "--date", day]


def _reset_home(home: Path, start: Path | None) -> None:
    """The home a timed round starts from: a copy of `start`, or empty (None)."""
    shutil.rmtree(home, ignore_errors=True)
    if start is not None:
        shutil.copytree(start, home)


def _time_dates(labelled: list[tuple[str, str, Path, Path | None]], landing: Path,
                repeats: int) -> dict[str, dict[str, float]]:
    """Each (label, date, home, start) timed stage by stage in fresh processes, back to back so
    that all see the same machine, `repeats` times; the best time of each stage counts. Before
    each round the home is made a copy of `start` (None: an empty home), so that every round is the
    date's first build after the same history, as the nightly run is. A rerun of a date costs
    more: it deletes the date's rows first, and the checkpoint then rewrites the row groups they
    were in (0.35 s of a 20,000-trade date at 60 dates)."""
    times: dict[str, dict[str, float]] = {}
    for _ in range(repeats):  # the best of a few rounds: the machine's noise is ~10% a stage
        for label, d, h, start in labelled:
            _reset_home(h, start)
            for stage in ["ingest", "validate", "build", "publish"]:
                wall, _ = timed_child([PY, "-c", STAGE_DRIVER, str(landing), str(h), d, stage])
                best = times.setdefault(label, {}).get(stage, float("inf"))
                times[label][stage] = round(min(best, wall), 2)
                if stage == "build":  # the §11 marts' own seconds in that build (issue 26)
                    share = risk_beyond_var_share(h)
                    key = "risk_beyond_var_marts"
                    if share and share["risk_beyond_var_marts_s"] < times[label].get(key, float("inf")):
                        times[label][key] = share["risk_beyond_var_marts_s"]
    return times


def _time_end_to_end(labelled: list[tuple[str, str, Path, Path | None]], landing: Path,
                     repeats: int) -> dict[str, float]:
    """Each (label, date, home, start) as a user runs it, `midoffice run --date` (both DAGs,
    report included), in a copy of `start` made before the timing; best of `repeats`."""
    best: dict[str, float] = {}
    for _ in range(repeats):
        for label, d, h, start in labelled:
            _reset_home(h, start)
            wall, _ = timed_child(midoffice_run(landing, h, d))
            best[label] = round(min(best.get(label, float("inf")), wall), 2)
    return best


def history(trades: int, days: int, out: Path, reuse: bool = False, repeats: int = 3,
            window: int = 0, end_to_end: bool = False) -> dict:
    """Date 1 against date days+1 after `days` dates of history, same volume.

    The history is made by the stage functions the DAG tasks call (ingest, validate, build,
    publish), date by date in one process: the same warehouse as `midoffice run` makes, in about
    half its time (no Airflow task runner, no report). Date days+1 is then timed in copies of
    that home, date 1 in a fresh home (`_time_dates`).

    With `window` = K (0 < K < days), date K+1 is also timed after K dates, in copies of the home
    as it was then: a mart whose grain is a window of dates (the recon: every trade of the last
    20 business dates) grows until the window is full and must stay flat after it, so date
    days+1 against date K+1 says whether the cost follows the history or only the window.
    """
    root = out / f"hist{trades}x{days}"
    landing = root / "landing"
    generate(landing, trades, days + 1)
    dates = sorted(p.name for p in landing.iterdir() if p.is_dir())
    home, at_window, scratch = root / "home", root / f"home_after_{window}", root / "home_timed"
    made = root / "history.json"  # what the homes hold, for --reuse-history
    os.environ["AIRFLOW_HOME"] = str(root / "airflow")
    history_s = None
    wanted = {"dates": days, "window": window}
    if not (reuse and made.exists() and json.loads(made.read_text()) == wanted):
        made.unlink(missing_ok=True)
        for h in (home, at_window, scratch):
            shutil.rmtree(h, ignore_errors=True)
        if 0 < window < days:
            history_s, _ = timed_child([PY, "-c", HISTORY_DRIVER, str(landing), str(home), *dates[:window]])
            shutil.copytree(home, at_window)
            more_s, _ = timed_child([PY, "-c", HISTORY_DRIVER, str(landing), str(home), *dates[window:-1]])
            history_s += more_s
        else:
            history_s, _ = timed_child([PY, "-c", HISTORY_DRIVER, str(landing), str(home), *dates[:-1]])
        made.write_text(json.dumps(wanted))
    labelled = [("last", dates[-1], scratch, home), ("first", dates[0], root / "home_date1", None)]
    if 0 < window < days:
        labelled.append(("window", dates[window], scratch, at_window))
    times = _time_dates(labelled, landing, repeats)
    stages = ("ingest", "validate", "build", "publish")
    first, last = (round(sum(times[k][st] for st in stages), 2) for k in ("first", "last"))
    result = {"trades_per_day": trades, "history_dates": days,
              "history_run_s": round(history_s, 1) if history_s is not None else "reused",
              "date_1_s": first, f"date_{days + 1}_s": last, "ratio": round(last / first, 2),
              "date_1_stages": times["first"], f"date_{days + 1}_stages": times["last"]}
    if "window" in times:
        at_k = round(sum(times["window"][st] for st in stages), 2)
        result.update({f"date_{window + 1}_s": at_k, f"date_{window + 1}_stages": times["window"],
                       f"ratio_to_date_{window + 1}": round(last / at_k, 2)})
    if end_to_end:
        # What a user waits for: the stages above plus the report and Airflow's fixed cost of a
        # date (~18 s, bench/RESULTS.md), which is in both dates; the report grows with the window.
        subprocess.run([PY, "-c", MIGRATE, str(landing), str(scratch)], check=True, cwd=REPO,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        e2e = _time_end_to_end(labelled, landing, repeats)
        result.update({"end_to_end_s": e2e,
                       "end_to_end_ratio": round(e2e["last"] / e2e["first"], 2)})
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--trades", default="100000,1000000")
    p.add_argument("--history", type=int, default=0, help="also time date N+1 after N dates")
    p.add_argument("--window", type=int, default=0,
                   help="with --history: also time date K+1 after K dates (e.g. 20: the recon's window full)")
    p.add_argument("--out", default=str(REPO / "bench" / "out"))
    p.add_argument("--reuse-history", action="store_true",
                   help="keep the history an earlier run made with the same --history and --window")
    p.add_argument("--end-to-end", action="store_true",
                   help="with --history: also time each date as `midoffice run --date` (report and Airflow included)")
    p.add_argument("--range", type=int, default=0,
                   help="one `midoffice run --from --to` over N dates: orchestration per date")
    p.add_argument("--stages-only", action="store_true",
                   help="one date: time the stages only (no end to end, no yardstick)")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
               "date": date.today().isoformat()}
    rows = []
    for trades in [int(x) for x in args.trades.split(",")]:
        if args.range:
            r = date_range(trades, args.range, out)
        elif args.history:
            r = history(trades, args.history, out, reuse=args.reuse_history, window=args.window,
                        end_to_end=args.end_to_end)
        else:
            r = one_date(trades, out, stages_only=args.stages_only)
        r.update(machine)
        rows.append(r)
        with (out / "results.jsonl").open("a") as fh:
            fh.write(json.dumps(r) + "\n")
        print(json.dumps(r), flush=True)
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
