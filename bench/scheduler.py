"""One business date through the real scheduler (LocalExecutor) against `midoffice run`.

    .venv/bin/python bench/scheduler.py [--trades 400] [--days 2]

Starts the deployment tests/test_scheduler.py starts (scheduler, API server, DAG processor,
triggerer; SQLite), drops the dates into the landing folder, waits until the landing watcher's
ingest runs and the asset-triggered warehouse runs are done, and reads every task instance's
times from Airflow's REST API. Then runs `midoffice run` (dag.test(), in-process, no scheduler)
on the same files. Prints where the scheduler's extra time goes. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Benchmarks run on generated sample data: they opt in to the development key (midoffice.pseudonym);
# the scheduler's processes inherit it.
os.environ.setdefault("MIDOFFICE_DEVELOPMENT_KEY", "1")
sys.path.insert(0, str(REPO / "tests"))

from airflow_cluster import AirflowCluster  # noqa: E402

INGEST, WAREHOUSE = "midoffice_ingest", "midoffice_warehouse"


def _t(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _runs(cluster: AirflowCluster, dag_id: str) -> list[dict]:
    try:
        return cluster.api(f"/api/v2/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]
    except Exception:
        return []


def _analyse(cluster: AirflowCluster, dag_id: str, run: dict) -> dict:
    tis = cluster.api(f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances?limit=100")["task_instances"]
    upstream: dict[str, list[str]] = {}
    for t in cluster.api(f"/api/v2/dags/{dag_id}/tasks")["tasks"]:
        for down in t.get("downstream_task_ids") or []:
            upstream.setdefault(down, []).append(t["task_id"])
    ends = {ti["task_id"]: _t(ti["end_date"]) for ti in tis}
    ran = [ti for ti in tis if ti["start_date"] and ti["state"] == "success"]
    kinds: dict[str, list[float]] = {}
    for ti in ran:
        kind = ti["task_id"]
        kinds.setdefault(kind, []).append(float(ti["duration"] or 0))
    busy = sum(float(ti["duration"] or 0) for ti in ran)
    wait_sched = wait_queue = 0.0
    for ti in ran:
        ups = [ends[u] for u in upstream.get(ti["task_id"], []) if ends.get(u)]
        ready = max(ups) if ups else _t(run["start_date"])
        queued, start = _t(ti["queued_when"]), _t(ti["start_date"])
        if queued and ready:
            wait_sched += max(0.0, (queued - ready).total_seconds())
        if queued and start:
            wait_queue += max(0.0, (start - queued).total_seconds())
    first = min(_t(ti["start_date"]) for ti in ran)
    last = max(_t(ti["end_date"]) for ti in ran)
    return {"run": (_t(run["end_date"]) - _t(run["start_date"])).total_seconds(),
            "first_to_last_task": (last - first).total_seconds(), "tasks": len(ran), "busy": busy,
            "ready_to_queued": wait_sched, "queued_to_start": wait_queue,
            "start": _t(run["start_date"]), "end": _t(run["end_date"]), "queued_at": _t(run.get("queued_at")),
            "kinds": {k: (len(v), sum(v) / len(v), max(v)) for k, v in kinds.items()}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trades", type=int, default=400)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--start", default="2026-04-06")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="midoffice-bench-scheduler-"))
    py = sys.executable
    outbox = root / "outbox"
    subprocess.run([py, "-m", "midoffice.cli", "generate", "--out", str(outbox), "--start", args.start,
                    "--days", str(args.days), "--trades-per-day", str(args.trades), "--seed", "21"],
                   check=True, cwd=REPO, capture_output=True)
    # the generated business dates: weekdays without the FIRM holidays (its calendars feed)
    dates = sorted(p.name for p in outbox.iterdir() if p.is_dir())
    landing = root / "landing"
    shutil.copytree(outbox, landing)

    # 1. midoffice run: dag.test() of both DAGs, in-process.
    t0 = time.monotonic()
    proc = subprocess.run([py, "-m", "midoffice.cli", "run", "--landing", str(landing), "--home", str(root / "cli-home"),
                           "--from", dates[0], "--to", dates[-1]], cwd=REPO, capture_output=True, text=True)
    cli_total = time.monotonic() - t0
    per_date = dict(re.findall(r"\] (\d{4}-\d\d-\d\d): \w+ in (\S+)", proc.stdout + proc.stderr))
    print(f"midoffice run: exit {proc.returncode}, {cli_total:.0f}s for {len(dates)} dates (incl. start-up); "
          f"per date: {per_date}")

    # 2. The real scheduler, LocalExecutor on SQLite, dates already delivered at start.
    cluster = AirflowCluster(root=root / "cluster", landing=landing, home=root / "home")
    t0 = time.monotonic()
    try:
        cluster.start()
        up = time.monotonic() - t0
        deadline = time.time() + 1800
        while time.time() < deadline:
            runs = [r for r in _runs(cluster, WAREHOUSE) if r["partition_key"] in dates]
            if len(runs) == len(dates) and all(r["state"] in ("success", "failed") for r in runs):
                break
            time.sleep(2)
        total = time.monotonic() - t0
        print(f"scheduler: cluster up (API answering) after {up:.0f}s; all dates published after {total:.0f}s")
        ingest = {(r.get("conf") or {}).get("business_date"): r for r in _runs(cluster, INGEST)}
        warehouse = {r["partition_key"]: r for r in _runs(cluster, WAREHOUSE)}
        print("| date | ingest run s | warehouse run s | ingest end → warehouse start s | date wall s "
              "| tasks | task busy s | ready→queued s (sum) | queued→running s (sum) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for d in dates:
            a, b = _analyse(cluster, INGEST, ingest[d]), _analyse(cluster, WAREHOUSE, warehouse[d])
            gap = (b["start"] - a["end"]).total_seconds()
            wall = (b["end"] - a["start"]).total_seconds()
            print(f"| {d} | {a['run']:.0f} | {b['run']:.0f} | {gap:.1f} | {wall:.0f} | {a['tasks'] + b['tasks']} "
                  f"| {a['busy'] + b['busy']:.0f} | {a['ready_to_queued'] + b['ready_to_queued']:.0f} "
                  f"| {a['queued_to_start'] + b['queued_to_start']:.0f} |")
            detail = {**a["kinds"], **b["kinds"]}
            print("    task durations (n, mean s, max s): " + ", ".join(
                f"{k} ({n}, {mean:.1f}, {top:.1f})" for k, (n, mean, top) in detail.items()))
    finally:
        cluster.stop()
    print(f"(work folder: {root})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
