"""Crashes and readers: a pipeline killed at any point leaves the published warehouse at the
previous or the new audited version, never a mix; a rerun converges; readers never notice.

Real processes: each stage runs in a child Python process (a small driver calling the midoffice
functions, as the Airflow tasks do) that is SIGKILLed after a seeded random delay between 10 %
and 90 % of that stage's measured uninterrupted duration. Real files and real DuckDB: the
published warehouse is compared by table checksums (md5 over the ordered rows, lineage columns
excluded) with the versions an uninterrupted run publishes.

The seed is fixed so CI is repeatable; set MIDOFFICE_CRASH_SEED to explore other crash points
(the trial's seed, phase and delay are in every assertion message).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from conftest import REPO, generate_landing

pytestmark = pytest.mark.slow

START = "2026-04-06"  # a Monday: two business dates, 06 and 07
SEED = int(os.environ.get("MIDOFFICE_CRASH_SEED", "20260406"))
LINEAGE = ("run_id", "loaded_at")
# The run ledger and the publication stamp record *when* and *which run*: they differ by design
# (a retried run has more stage records), and so does build_log's row count of the ledger mart.
NOT_COMPARED = {"pipeline_runs", "publication"}
STAGE_TIMEOUT = 900  # seconds; a bound on a hung stage, not a performance assertion

# Crash trials: the phase killed, the stages its process runs, the home it starts from, and the
# stages a rerun repeats (an Airflow retry of the killed task and what follows it).
PHASES = {
    "ingest": ("ingest", "after_d1", "ingest,validate,build,publish"),
    "build": ("build,publish", "validated", "build,publish"),
    "publish": ("publish", "built", "publish"),
}
# Five trials: each kills at a random point of its phase (~20 s a trial; the suite's time budget).
TRIALS = ["ingest", "build", "build", "publish", "publish"]

DRIVER = r"""
import sys
landing, home, business_date, run_id, stages = sys.argv[1:6]
stages = stages.split(",")
from midoffice.config import settings_from
from midoffice.contracts import ingest_order
if "ingest" in stages:
    from midoffice.ingest import ingest_feed
if "validate" in stages:
    from midoffice.stages import validate_and_gate
if "build" in stages:
    from midoffice.warehouse import build_warehouse
if "publish" in stages:
    from midoffice.publish import publish
settings = settings_from(landing, home)
print("ready", flush=True)  # imports done: the crash window starts here
if "ingest" in stages:
    for feed in ingest_order():
        ingest_feed(settings, business_date, feed, run_id)
if "validate" in stages:
    for feed in ingest_order():
        validate_and_gate(settings, business_date, feed, run_id)
if "build" in stages:
    build_warehouse(settings, business_date, run_id)
if "publish" in stages:
    publish(settings, business_date, run_id)
print("done", flush=True)
"""

READER = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[4])
from test_crash import published_counts
import duckdb
db, out, stop = sys.argv[1:4]
with open(out, "w") as fh:
    while not os.path.exists(stop):
        started = time.monotonic()
        if not os.path.exists(db):
            fh.write(json.dumps({"absent": True}) + "\n")
            time.sleep(0.2)
            continue
        try:
            con = duckdb.connect(db, read_only=True)
            try:
                first = published_counts(con)
                time.sleep(0.05)  # hold the file open while the pipeline may swap in a new one
                again = published_counts(con)
            finally:
                con.close()
            fh.write(json.dumps({"counts": first, "stable": first == again,
                                 "seconds": time.monotonic() - started}) + "\n")
        except Exception as exc:
            fh.write(json.dumps({"error": repr(exc)}) + "\n")
        fh.flush()
"""


# --- what a published warehouse holds -----------------------------------------------------------

def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _tables(con) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY 1").fetchall()]


def _columns(con, table: str) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'main' AND table_name = ? "
        "ORDER BY column_index", [table]).fetchall()]


def table_checksums(db: Path) -> dict[str, tuple[int, str]]:
    """(rows, md5 of the ordered rows without lineage) for every compared table."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = {}
        for table in _tables(con):
            if table in NOT_COMPARED:
                continue
            cols = [c for c in _columns(con, table) if c not in LINEAGE]
            row = "CAST(row(" + ", ".join(_q(c) for c in cols) + ") AS VARCHAR)"
            where = "WHERE mart NOT IN ('pipeline_runs')" if table == "build_log" else ""
            out[table] = tuple(con.execute(
                f"SELECT count(*), md5(coalesce(string_agg({row}, chr(10) ORDER BY {row}), '')) FROM {_q(table)} {where}"
            ).fetchone())
        return out
    finally:
        con.close()


def _partitions() -> dict[str, str]:
    from midoffice.models import load_models

    return {m.name: m.partition for m in load_models()} | {"build_log": "business_date"}


def published_counts(con) -> dict:
    """Rows per table and date, and which date the publication is for: a reader's view."""
    partition = _partitions()
    counts = {}
    for table in _tables(con):
        if table == "publication":
            continue
        col = partition.get(table)
        if col:
            counts[table] = {str(d): n for d, n in con.execute(
                f"SELECT {_q(col)}, count(*) FROM {_q(table)} GROUP BY 1 ORDER BY 1").fetchall()}
        else:
            counts[table] = con.execute(f"SELECT count(*) FROM {_q(table)}").fetchone()[0]
    publication = con.execute("SELECT CAST(business_date AS VARCHAR) FROM publication").fetchone()[0]
    return {"publication": publication, "tables": counts}


def leftovers(home: Path) -> list[str]:
    """Temporary files a killed process could leave: none may survive the next run."""
    found = [p for p in (home / "lake").rglob("*") if p.name.startswith(".tmp-") or p.name.endswith(".tmp")]
    found += list((home / "warehouse").glob("marts.next-*"))
    found += list((home / "warehouse").glob("*.wal"))
    return [str(p) for p in found]


def lake_is_readable(home: Path) -> None:
    """Every partition and control record in place is whole (atomic replace, never torn)."""
    for path in (home / "lake").rglob("*.parquet"):
        if not path.name.startswith(".tmp-"):
            pq.read_metadata(path)
    for path in (home / "lake" / "control").rglob("*.json"):
        if not path.name.startswith("."):
            json.loads(path.read_text())


# --- running stages in child processes -----------------------------------------------------------

def _child_env() -> dict:
    env = dict(os.environ)
    env.setdefault("GX_ANALYTICS_ENABLED", "false")
    return env


def start_stages(landing: Path, home: Path, business_date: str, stages: str, log: Path) -> subprocess.Popen:
    """The stages in a child process of their own session (so a kill takes all of it).

    Its log goes to a file, not a pipe: a full pipe would stall the child at a point of its
    own choosing instead of the trial's.
    """
    with log.open("a") as err:
        return subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(landing), str(home), business_date, f"run-{business_date}", stages],
            stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO, env=_child_env(), start_new_session=True,
        )


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-5000:] if log.exists() else ""


def run_stages(landing: Path, home: Path, business_date: str, stages: str) -> float:
    """Run stages to the end; returns the seconds from 'ready' (imports done) to the end."""
    log = home.parent / f"{home.name}.{business_date}.log"
    proc = start_stages(landing, home, business_date, stages, log)
    assert proc.stdout.readline().strip() == "ready", _tail(log)
    started = time.monotonic()
    out, _ = proc.communicate(timeout=STAGE_TIMEOUT)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0 and "done" in out, f"{stages} for {business_date} failed:\n{_tail(log)}"
    return elapsed


def _snapshot(home: Path, dst: Path) -> Path:
    shutil.copytree(home, dst, symlinks=True)
    return dst


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """Two dates run stage by stage without interruption, a reader querying all along.

    Keeps a copy of the home after each stage of the second date (where crash trials start),
    the published checksums after each date (the only two versions a crash may leave), and the
    stage durations (the baselines the crash delays are drawn from).
    """
    root = tmp_path_factory.mktemp("crash")
    landing = generate_landing(root / "landing", START, 2, 300, seed=17)
    d1, d2 = sorted(p.name for p in landing.iterdir() if p.is_dir())
    home = root / "reference"
    stop = root / "reader.stop"
    with (root / "reader.err").open("w") as reader_err:
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, str(home / "warehouse" / "marts.duckdb"), str(root / "reader.jsonl"),
             str(stop), str(Path(__file__).parent)],
            cwd=REPO, env=_child_env(), stderr=reader_err, text=True,
        )
    views = []  # what a reader may see: each publication's view, in order
    try:
        snaps, seconds = {}, {}
        run_stages(landing, home, d1, "ingest,validate,build,publish")
        views.append(_view(home))
        snaps["after_d1"] = _snapshot(home, root / "after_d1")
        seconds["ingest"] = run_stages(landing, home, d2, "ingest")
        run_stages(landing, home, d2, "validate")
        snaps["validated"] = _snapshot(home, root / "validated")
        seconds["build"] = run_stages(landing, home, d2, "build")
        snaps["built"] = _snapshot(home, root / "built")
        seconds["publish"] = run_stages(landing, home, d2, "publish")
        views.append(_view(home))
        v2_first = table_checksums(home / "warehouse" / "marts.duckdb")
        # The build trials run build then publish in one process. The first build of a date is
        # also the coldest: time a rerun too (same marts, a longer run ledger) and take the
        # faster, so that a trial's delay falls inside the work rather than after it.
        seconds["build"] = min(seconds["build"] + seconds["publish"], run_stages(landing, home, d2, "build,publish"))
        views.append(_view(home))
    finally:
        stop.touch()
        try:
            reader.wait(timeout=60)
        except subprocess.TimeoutExpired:
            reader.kill()
    seen = [json.loads(line) for line in (root / "reader.jsonl").read_text().splitlines() if line.strip()]
    return {
        "landing": landing, "dates": (d1, d2), "snaps": snaps, "seconds": seconds, "home": home,
        "v1": table_checksums(snaps["after_d1"] / "warehouse" / "marts.duckdb"),
        "v2": table_checksums(home / "warehouse" / "marts.duckdb"), "v2_first": v2_first,
        "reader_views": seen, "reader_stderr": (root / "reader.err").read_text(), "published_views": views,
    }


def _view(home: Path) -> dict:
    con = duckdb.connect(str(home / "warehouse" / "marts.duckdb"), read_only=True)
    try:
        return published_counts(con)
    finally:
        con.close()


# --- the tests ---------------------------------------------------------------------------------

def test_the_uninterrupted_run_publishes_two_distinct_versions_and_leaves_nothing_behind(reference):
    assert reference["v1"] != reference["v2"]
    assert reference["v2_first"] == reference["v2"]  # building and publishing a date again changes nothing
    assert set(reference["v1"]) <= set(reference["v2"])
    assert leftovers(reference["home"]) == []


@pytest.mark.parametrize("trial", range(len(TRIALS)), ids=[f"{i}-{p}" for i, p in enumerate(TRIALS)])
def test_a_pipeline_killed_at_a_random_point_leaves_a_whole_version_and_a_rerun_converges(reference, tmp_path, trial):
    phase = TRIALS[trial]
    stages, start_from, rerun = PHASES[phase]
    rng = random.Random(f"{SEED}-{trial}")
    delay = rng.uniform(0.1, 0.9) * reference["seconds"][phase]
    where = f"seed {SEED}, trial {trial}: {phase} killed {delay:.2f}s after its start"
    landing, (_, d2) = reference["landing"], reference["dates"]
    home = _snapshot(reference["snaps"][start_from], tmp_path / "home")

    log = tmp_path / "killed.log"
    proc = start_stages(landing, home, d2, stages, log)
    assert proc.stdout.readline().strip() == "ready", _tail(log)
    try:
        proc.wait(timeout=delay)
        finished = True  # faster than the baseline this time: nothing to kill, still a valid trial
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # no handler, no cleanup: a power cut for the process
        proc.wait()
        finished = False
    proc.stdout.close()
    where += " (finished before the kill)" if finished else " (killed)"

    # Right after the crash: the published warehouse opens and is one whole audited version.
    published = table_checksums(home / "warehouse" / "marts.duckdb")
    allowed = {"ingest": [reference["v1"]], "build": [reference["v1"], reference["v2"]],
               "publish": [reference["v1"], reference["v2"]]}[phase]
    if finished:
        allowed = [reference["v1"] if phase == "ingest" else reference["v2"]]
    assert published in allowed, f"{where}: the published warehouse is neither version: " + ", ".join(
        t for t in published if all(published[t] != v.get(t) for v in allowed))
    lake_is_readable(home)

    # The rerun converges on exactly what the uninterrupted run published, and cleans up.
    run_stages(landing, home, d2, rerun)
    assert table_checksums(home / "warehouse" / "marts.duckdb") == reference["v2"], where
    assert leftovers(home) == [], where


def test_readers_during_publication_never_fail_never_block_and_never_see_a_partial_mart(reference):
    views = reference["reader_views"]
    errors = [v["error"] for v in views if "error" in v]
    assert not errors, errors[:5]
    assert reference["reader_stderr"].strip() == "", reference["reader_stderr"][-2000:]
    seen = [v for v in views if "counts" in v]
    published = reference["published_views"]  # the first date's version, then the second's (twice)
    assert published[0] != published[1]
    order = []
    for view in seen:
        assert view["stable"], "a connection's view changed while it was open"
        assert view["counts"] in published, "a reader saw a warehouse that is no published version"
        order.append(published.index(view["counts"]))
    # The reader really was there before, between and after the publications, in that order.
    assert any("absent" in v for v in views)
    assert 0 in order and 1 in order, order
    assert order == sorted(order), "a reader saw an older version after a newer one"


def test_temporary_files_of_a_killed_ingest_are_removed_by_the_next_ingest(reference, tmp_path):
    from midoffice.config import settings_from
    from midoffice.ingest import ingest_feed

    home = _snapshot(reference["snaps"]["after_d1"], tmp_path / "home")
    settings = settings_from(reference["landing"], home)
    d1 = reference["dates"][0]
    partition = settings.staged_partition("books", d1).parent
    torn = [partition / ".tmp-4242-data.parquet", settings.quarantine_partition("books", d1).parent / ".tmp-4242-data.parquet"]
    for path in torn:
        path.write_bytes(b"PAR1 torn by SIGKILL")
    assert ingest_feed(settings, d1, "books", "rerun")["status"] == "LOADED"
    assert not any(p.exists() for p in torn)


def test_an_ingest_that_dies_half_way_leaves_no_gate_and_no_half_replaced_partition(reference, tmp_path):
    """A rerun's ingest withdraws the earlier gate first, and on a failure it did not expect it
    removes what it half wrote: the build can then neither pass nor load half-replaced data."""
    from midoffice.config import settings_from
    from midoffice.ingest import ingest_feed

    home = _snapshot(reference["snaps"]["validated"], tmp_path / "home")
    settings = settings_from(reference["landing"], home)
    d2 = reference["dates"][1]
    assert json.loads(settings.control_file("gate", "trades", d2).read_text())["gate"] == "PASS"
    # An infrastructure fault after the staged partition is replaced: the quarantine's folder
    # cannot be created (a file stands where it should be).
    held = settings.quarantine_partition("trades", d2).parent
    shutil.rmtree(held)
    held.write_text("in the way")
    with pytest.raises(OSError):
        ingest_feed(settings, d2, "trades", "rerun")
    assert not settings.control_file("gate", "trades", d2).exists()
    record = json.loads(settings.control_file("ingest", "trades", d2).read_text())
    assert record["status"] == "FAILED" and "ingest stopped" in record["error"] and d2 in record["error"]
    assert not settings.staged_partition("trades", d2).exists()
    assert not [p for p in settings.lake.rglob(".tmp-*")]


def test_a_control_record_torn_by_a_kill_does_not_block_the_next_build(reference, tmp_path):
    from midoffice.config import settings_from
    from midoffice.warehouse import build_warehouse

    home = _snapshot(reference["snaps"]["validated"], tmp_path / "home")
    settings = settings_from(reference["landing"], home)
    d2 = reference["dates"][1]
    # What a SIGKILL between mkstemp() and os.replace() in control.write_json_atomic leaves.
    (settings.control / "runs" / d2 / f"run-{d2}" / ".tmp-killed.json").write_text("")
    build_warehouse(settings, d2, f"run-{d2}")
