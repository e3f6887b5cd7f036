"""Crashes and readers: a pipeline killed at any point leaves the published warehouse at the
previous or the new audited version, never a mix; a rerun converges; readers never notice.
The published warehouse is the lake (midoffice.lake): a version is a DuckLake snapshot, and a
reader holds one for the length of its transaction.

Real processes: each stage runs in a child Python process (a small driver calling the midoffice
functions, as the Airflow tasks do) that is SIGKILLed after a seeded random delay between 10 %
and 90 % of that stage's measured uninterrupted duration; the rerun, as Airflow's retry, runs
the same functions in the test's process. Real files and real DuckDB: the
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

import pyarrow.parquet as pq
import pytest

from conftest import published, REPO, generate_landing

pytestmark = pytest.mark.slow

START = "2026-04-06"  # a Monday: two business dates, 06 and 07
SEED = int(os.environ.get("MIDOFFICE_CRASH_SEED", "20260406"))
LINEAGE = ("run_id", "loaded_at")
# The run ledger and the publication stamp record *when* and *which run*: they differ by design
# (a retried run has more stage records), and so does build_log's row count of the ledger mart.
NOT_COMPARED = {"pipeline_runs", "publication", "publications", "restatements"}
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
import faulthandler, os, signal, sys, time
faulthandler.register(signal.SIGUSR1, all_threads=True)  # the parent asks for the stacks of a child that stopped talking
landing, home, business_date, run_id, stages, said = sys.argv[1:7]
stepped = len(sys.argv) > 7 and sys.argv[7] == "stepped"  # pause after each stage (the reference run)
stages = stages.split(",")


def say(text):
    # A file opened for each line, not a pipe: what the stages do with this process's descriptors
    # (or a pipe the parent lost) cannot cut the conversation short.
    with open(said, "a") as fh:
        fh.write(text + "\n")


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
say("ready")  # imports done: the crash window starts here
for stage in stages:
    started = time.monotonic()
    if stage == "ingest":
        for feed in ingest_order():
            ingest_feed(settings, business_date, feed, run_id)
    elif stage == "validate":
        for feed in ingest_order():
            validate_and_gate(settings, business_date, feed, run_id)
    elif stage == "build":
        build_warehouse(settings, business_date, run_id)
    elif stage == "publish":
        publish(settings, business_date, run_id)
    if stepped:  # the parent copies the home, then says go on
        say(f"done {stage} {time.monotonic() - started:.3f}")
        while not os.path.exists(f"{said}.go-{stage}"):
            time.sleep(0.05)
say("done")
"""

READER = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[4])
from test_crash import published_counts
from midoffice.lake import reader_for_home
home, out, stop = sys.argv[1:4]
catalog = os.path.join(home, "warehouse", "lake.sqlite")
with open(out, "w") as fh:
    while not os.path.exists(stop):
        started = time.monotonic()
        if not os.path.exists(catalog):
            fh.write(json.dumps({"absent": True}) + "\n")
            time.sleep(0.2)
            continue
        try:
            con = reader_for_home(home)
            try:
                # one transaction reads one snapshot: the lake may commit a new version meanwhile
                con.execute("BEGIN TRANSACTION")
                first = published_counts(con)
                time.sleep(0.05)  # hold the version open while the pipeline may publish the next
                again = published_counts(con)
                con.execute("COMMIT")
            finally:
                con.close()
            if first is None:  # the catalog is being created: no version yet
                fh.write(json.dumps({"absent": True}) + "\n")
            else:
                fh.write(json.dumps({"counts": first, "stable": first == again,
                                     "seconds": time.monotonic() - started}) + "\n")
        except Exception as exc:
            fh.write(json.dumps({"error": repr(exc)}) + "\n")
        fh.flush()
        # Looks close together: at this pace the publication that lost its catalog locks to
        # Python's sqlite3 (midoffice.lake) died of SIGBUS in 2 of 4 runs; at 0.1 s, rarely.
        time.sleep(0.02)
"""


# --- what a published warehouse holds -----------------------------------------------------------

def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _tables(con) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main' "
        "ORDER BY 1").fetchall()]


def _columns(con) -> dict[str, list[str]]:
    """Every table of main -> its columns in order, in one catalog query (a query on the lake
    costs a catalog read: one a table made the checks slow)."""
    out: dict[str, list[str]] = {}
    for table, column in con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = 'main' ORDER BY table_name, column_index").fetchall():
        out.setdefault(table, []).append(column)
    return out


def table_checksums(home: Path) -> dict[str, tuple[int, str]]:
    """(rows, md5 of the ordered rows without lineage) for every compared table of the home's
    published lake (its current version)."""
    con = published(home)
    try:
        out = {}
        columns = _columns(con)
        for table in _tables(con):
            if table in NOT_COMPARED:
                continue
            cols = [c for c in columns[table] if c not in LINEAGE]
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


def published_counts(con) -> dict | None:
    """Rows per table and date, and which version and date the publication is for: a reader's
    view (None: nothing published yet)."""
    tables = _tables(con)
    if "publications" not in tables:
        return None
    partition = _partitions()
    counts = {}
    for table in tables:
        if table == "publications":
            continue
        col = partition.get(table)
        if col:
            counts[table] = {str(d): n for d, n in con.execute(
                f"SELECT {_q(col)}, count(*) FROM {_q(table)} GROUP BY 1 ORDER BY 1").fetchall()}
        else:
            counts[table] = con.execute(f"SELECT count(*) FROM {_q(table)}").fetchone()[0]
    version, publication = con.execute(
        "SELECT version, CAST(business_date AS VARCHAR) FROM publications ORDER BY version DESC LIMIT 1").fetchone()
    return {"version": version, "publication": publication, "tables": counts}


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
    # A child that dies of a signal (not SIGKILL) leaves its stack in the log the assertion shows.
    env["PYTHONFAULTHANDLER"] = "1"
    return env


def start_stages(landing: Path, home: Path, business_date: str, stages: str, log: Path,
                 stepped: bool = False) -> subprocess.Popen:
    """The stages in a child process of their own session (so a kill takes all of it).

    What it prints goes to a log file, not a pipe: a full pipe would stall the child at a point
    of its own choosing instead of the trial's. It says how far it got in `said_file(log)`.
    """
    said_file(log).unlink(missing_ok=True)
    with log.open("a") as err:
        return subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(landing), str(home), business_date, f"run-{business_date}", stages,
             str(said_file(log)), *(["stepped"] if stepped else [])],
            stdin=subprocess.DEVNULL, stdout=err, stderr=err, text=True,
            cwd=REPO, env=_child_env(), start_new_session=True,
        )


def said_file(log: Path) -> Path:
    return log.with_name(log.name + ".said")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-5000:] if log.exists() else ""


def _stopped_talking(proc: subprocess.Popen, log: Path) -> str:
    """What a child that stopped talking was doing: its exit code, or its open files and stacks."""
    code = proc.poll()
    if code is not None:
        return f"exit code {code}"
    try:
        files = {fd: os.readlink(f"/proc/{proc.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{proc.pid}/fd")}
    except OSError as exc:
        files = {"?": repr(exc)}
    proc.send_signal(signal.SIGUSR1)  # faulthandler writes every thread's stack to the log
    time.sleep(2)
    return f"still running, open files {files}"


def hear(proc: subprocess.Popen, log: Path, lines: int, timeout: float = STAGE_TIMEOUT) -> str:
    """The child's `lines`-th line, once it has said it; "" if it ended (or timed out) first."""
    deadline = time.monotonic() + timeout
    while True:
        said = said_file(log).read_text().splitlines() if said_file(log).exists() else []
        if len(said) >= lines:
            return said[lines - 1]
        if proc.poll() is not None or time.monotonic() > deadline:
            said = said_file(log).read_text().splitlines() if said_file(log).exists() else []
            return said[lines - 1] if len(said) >= lines else ""
        time.sleep(0.05)


def run_stages(landing: Path, home: Path, business_date: str, stages: str, after_each=None) -> dict[str, float]:
    """Run stages to the end in one child process; returns each stage's seconds (imports not
    counted). With `after_each(stage)`, the child waits after each stage until it has run (the
    reference run copies the home there)."""
    log = home.parent / f"{home.name}.{business_date}.log"
    proc = start_stages(landing, home, business_date, stages, log, stepped=True)
    heard = 1
    assert hear(proc, log, heard) == "ready", f"{_stopped_talking(proc, log)}\n{_tail(log)}"
    seconds = {}
    for stage in stages.split(","):
        heard += 1
        line = hear(proc, log, heard).split()
        if line[:2] != ["done", stage]:  # the child ended or said something else: say how
            pytest.fail(f"{stages} for {business_date} failed at {stage} (child said {line!r}, "
                        f"{_stopped_talking(proc, log)}):\n{_tail(log)}")
        seconds[stage] = float(line[2])
        if after_each:
            after_each(stage)
        Path(f"{said_file(log)}.go-{stage}").touch()
    code = proc.wait(timeout=STAGE_TIMEOUT)
    assert code == 0 and hear(proc, log, heard + 1) == "done", f"{stages} for {business_date} failed:\n{_tail(log)}"
    return seconds


def rerun_stages(landing: Path, home: Path, business_date: str, stages: str) -> None:
    """What a retry after the crash runs, in this process (the test's, not the killed one's): the
    same functions, the same run id."""
    from midoffice.config import settings_from
    from midoffice.contracts import ingest_order

    settings, run_id = settings_from(landing, home), f"run-{business_date}"
    for stage in stages.split(","):
        if stage == "ingest":
            from midoffice.ingest import ingest_feed

            for feed in ingest_order():
                ingest_feed(settings, business_date, feed, run_id)
        elif stage == "validate":
            from midoffice.stages import validate_and_gate

            for feed in ingest_order():
                validate_and_gate(settings, business_date, feed, run_id)
        elif stage == "build":
            from midoffice.warehouse import build_warehouse

            build_warehouse(settings, business_date, run_id)
        elif stage == "publish":
            from midoffice.publish import publish

            publish(settings, business_date, run_id)


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
            [sys.executable, "-c", READER, str(home), str(root / "reader.jsonl"),
             str(stop), str(Path(__file__).parent)],
            cwd=REPO, env=_child_env(), stderr=reader_err, text=True,
        )
    views = []  # what a reader may see: each publication's view, in order
    try:
        snaps = {}
        run_stages(landing, home, d1, "ingest,validate,build,publish")
        views.append(_view(home))
        snaps["after_d1"] = _snapshot(home, root / "after_d1")

        def after(stage: str) -> None:  # the second date, one child paused after each stage
            name = {"validate": "validated", "build": "built"}.get(stage)
            if name:
                snaps[name] = _snapshot(home, root / name)
            if stage == "publish":
                views.append(_view(home))

        seconds = run_stages(landing, home, d2, "ingest,validate,build,publish", after_each=after)
        v2_first = table_checksums(home)
        # Publishing d2 again is a restatement: its reason is recorded first, as the rule asks.
        restate_with_reason(home, d2)
        # The build trials run build then publish in one process. The first build of a date is
        # also the coldest: time a rerun too (same marts, a longer run ledger) and take the
        # faster, so that a trial's delay falls inside the work rather than after it.
        again = run_stages(landing, home, d2, "build,publish")
        seconds["build"] = min(seconds["build"] + seconds["publish"], again["build"] + again["publish"])
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
        "v1": table_checksums(snaps["after_d1"]),
        "v2": table_checksums(home), "v2_first": v2_first,
        "reader_views": seen, "reader_stderr": (root / "reader.err").read_text(), "published_views": views,
    }


def restate_with_reason(home: Path, day: str) -> None:
    """Record the reason a rerun of a published date needs (midoffice restate's function)."""
    from midoffice.config import Settings
    from midoffice.restate import record_reason

    record_reason(Settings(landing=Path(home), home=Path(home)), [day], "crash test: the date is published again", by="crash-test")


def _view(home: Path) -> dict:
    con = published(home)
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
    assert hear(proc, log, 1) == "ready", f"{_stopped_talking(proc, log)}\n{_tail(log)}"
    try:
        proc.wait(timeout=delay)
        finished = True  # faster than the baseline this time: nothing to kill, still a valid trial
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # no handler, no cleanup: a power cut for the process
        proc.wait()
        finished = False
    where += " (finished before the kill)" if finished else " (killed)"

    # Right after the crash: the published warehouse opens and is one whole audited version.
    published = table_checksums(home)
    allowed = {"ingest": [reference["v1"]], "build": [reference["v1"], reference["v2"]],
               "publish": [reference["v1"], reference["v2"]]}[phase]
    if finished:
        allowed = [reference["v1"] if phase == "ingest" else reference["v2"]]
    assert published in allowed, f"{where}: the published warehouse is neither version: " + ", ".join(
        t for t in published if all(published[t] != v.get(t) for v in allowed))
    lake_is_readable(home)

    # The rerun converges on exactly what the uninterrupted run published, and cleans up. If the
    # killed publication had committed d2, the rerun publishes it again: a restatement, with a reason.
    from midoffice.config import Settings
    from midoffice.lake import published_dates

    if d2 in published_dates(Settings(landing=home, home=home)):
        restate_with_reason(home, d2)
    rerun_stages(landing, home, d2, rerun)
    assert table_checksums(home) == reference["v2"], where
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
