"""End to end through the real DAG (Airflow dag.test()), real Great Expectations, real DuckDB files.

Figures are checked against an independent computation from the feed files in plain Python
(csv, json, pyarrow for the one Parquet feed), never against the project's SQL.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from conftest import published as open_lake, generate_landing, midoffice_here, run_pipeline, run_stages
from oracles.risk import independent_exposure

from midoffice.config import settings_from
from midoffice.contracts import load_contracts

pytestmark = pytest.mark.slow


def published(home: Path) -> duckdb.DuckDBPyConnection:
    return open_lake(home / "warehouse" / "marts.duckdb")


def mart_rows(home: Path, mart: str, lineage=("run_id", "loaded_at")) -> list[tuple]:
    con = published(home)
    try:
        cols = [r[0] for r in con.execute(f"DESCRIBE {mart}").fetchall() if r[0] not in lineage]
        return con.execute(f"SELECT {', '.join(cols)} FROM {mart} ORDER BY ALL").fetchall()
    finally:
        con.close()


def test_clean_run_publishes_the_four_marts_for_every_date(clean_run):
    assert all(o.ok for o in clean_run["outcomes"]), [(o.business_date, o.failed_gates, o.failed_tasks)
                                                      for o in clean_run["outcomes"]]
    con = published(clean_run["home"])
    try:
        for mart, col in [("risk_exposure", "as_of_date"), ("dq_feed_health", "business_date"),
                          ("pipeline_runs", "business_date")]:
            dates = [str(r[0]) for r in con.execute(f"SELECT DISTINCT {col} FROM {mart} ORDER BY 1").fetchall()]
            assert dates == clean_run["dates"], mart
        # the clean sample quarantines nothing: its quarantine mart is published, and empty
        assert con.execute("SELECT count(*) FROM dq_quarantine").fetchone()[0] == 0
        health = con.execute("SELECT business_date, feed, gate, conservation_ok FROM dq_feed_health").fetchall()
        assert len(health) == len(load_contracts()) * len(clean_run["dates"])
        assert all(g == "PASS" and ok for _, _, g, ok in health)
        stages = {r[0] for r in con.execute("SELECT DISTINCT stage FROM pipeline_runs").fetchall()}
        assert {"ingest:trades", "validate:trades", "build"} <= stages
    finally:
        con.close()
    for d in clean_run["dates"]:
        assert (clean_run["home"] / "reports" / d / "index.html").is_file()
        # extracts name the lake version they read; the date's rows are CSV where a spreadsheet takes them
        assert (clean_run["home"] / "reports" / d / "extracts" / "index.json").is_file()
        assert (clean_run["home"] / "reports" / d / "extracts" / "risk_exposure.csv").is_file()


def test_risk_exposure_equals_an_independent_computation_from_the_files(clean_run):
    from midoffice.config import settings_from
    from midoffice.pseudonym import client_key, resolve_key

    secret, _ = resolve_key(settings_from(clean_run["landing"], clean_run["home"]))
    con = published(clean_run["home"])
    try:
        for d in clean_run["dates"]:
            expected = independent_exposure(clean_run["landing"], d, lambda cid: client_key(secret, cid))
            got = dict(((ht, hid), mv) for ht, hid, mv in con.execute(
                "SELECT holder_type, holder_id, sum(market_value_usd) FROM risk_exposure WHERE as_of_date = ? GROUP BY 1, 2",
                [d]).fetchall())
            assert set(got) == set(expected)
            for key, value in expected.items():
                assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-6), key
            firm = sum(v for (ht, _), v in expected.items() if ht == "BOOK")
            assert con.execute(
                "SELECT sum(market_value_usd) FROM risk_exposure WHERE as_of_date = ? AND holder_type = 'BOOK'", [d]
            ).fetchone()[0] == pytest.approx(firm, rel=1e-9)
    finally:
        con.close()


def _record_rerun_reason(home, day: str) -> None:
    from midoffice.config import Settings
    from midoffice.restate import record_reason

    record_reason(Settings(landing=home, home=home), [day], "pipeline test: the date is run again", by="pipeline-test")


def test_rerunning_a_date_leaves_every_mart_with_the_same_rows(clean_run, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(clean_run["home"], home)
    from midoffice.models import mart_names

    before = {m: mart_rows(home, m, lineage=("run_id", "loaded_at")) for m in mart_names() if m != "pipeline_runs"}
    _record_rerun_reason(home, "2026-01-06")  # a rerun of a published date is a restatement: it needs a reason
    outcomes = run_pipeline(clean_run["landing"], home, ["2026-01-06"])
    assert outcomes[0].ok
    after = {m: mart_rows(home, m, lineage=("run_id", "loaded_at")) for m in before}
    for mart in before:
        assert after[mart] == before[mart], mart


def test_a_task_that_fails_once_is_retried_and_its_failed_try_is_in_the_ledger(clean_run, tmp_path):
    """A real transient fault: the page's path is taken by a directory, so the report task fails;
    once its try is in the ledger the obstacle goes (as an operator would clear it), and
    Airflow's retry, 10 s later, writes the pack."""
    import threading
    import time

    home = tmp_path / "home"
    shutil.copytree(clean_run["home"], home)
    day = "2026-01-06"
    _record_rerun_reason(home, day)
    page = home / "reports" / day / "index.html"
    page.unlink()
    (page / "in-the-way").mkdir(parents=True)
    runs = home / "lake" / "control" / "runs" / day
    seen: list[Path] = []
    run_over = threading.Event()

    def clear_once_the_try_is_recorded() -> None:
        while not seen and not run_over.is_set():
            seen.extend(runs.glob("*/task:report:try1.json"))
            time.sleep(0.2)
        shutil.rmtree(page, ignore_errors=True)

    clearer = threading.Thread(target=clear_once_the_try_is_recorded, daemon=True)
    clearer.start()
    try:
        outcome = run_pipeline(clean_run["landing"], home, [day])[0]
    finally:
        run_over.set()
        clearer.join()
    assert seen, "no ledger record of the failed try"
    record = json.loads(seen[0].read_text())
    assert record["status"] == "RETRIED" and record["business_date"] == day
    assert "index.html" in record["message"], record["message"]
    assert outcome.ok, outcome
    assert page.is_file() and f"Daily pack — {day}" in page.read_text()
    report = json.loads((seen[0].parent / "report.json").read_text())
    assert report["status"] == "SUCCESS"


# --- faults: every injected defect lands in dq_quarantine under its rule -----------------------

@pytest.mark.long
def test_faults_land_in_quarantine_under_the_right_rule_and_nothing_is_lost(tmp_path, airflow_home):
    # Two dates of 1,500 trades: the generator plants its record faults on the second delivered
    # date (fx_rates' on the first) and the late delivery on the third, or on the last when there
    # are two, so two dates log the same 31 kinds of fault (feed and rule) as three did; below
    # 1,500 trades a day some feeds are too short for every rule (900: 29 kinds).
    landing = generate_landing(tmp_path / "landing", "2026-02-02", 2, 1500, seed=11, faults=True)
    faults = json.loads((landing / "_faults.json").read_text())
    dates = sorted(p.name for p in landing.iterdir() if p.is_dir())
    home = tmp_path / "home"
    run_pipeline(landing, home, dates)
    con = published(home)
    try:
        quarantined = {
            (str(d), f, int(line)): rule
            for d, f, line, rule in con.execute("SELECT business_date, feed, line, rule FROM dq_quarantine").fetchall()
        }
        record_faults = [f for f in faults if f.get("line") is not None]
        assert record_faults, "the generator injected no record-level faults"
        for fault in record_faults:
            key = (fault["business_date"], fault["feed"], int(fault["line"]))
            assert key in quarantined, f"not quarantined: {fault}"
            assert quarantined[key] == fault["rule"], f"{fault}: quarantined as {quarantined[key]}"
        # Conservation for every feed and date, recounted from the files themselves.
        for d in dates:
            manifest = json.loads((landing / d / "_manifest.json").read_text())
            for feed, entry in manifest["feeds"].items():
                received, loaded, q, ok = con.execute(
                    "SELECT received_rows, loaded_rows, quarantined_rows, conservation_ok FROM dq_feed_health "
                    "WHERE business_date = ? AND feed = ?", [d, feed]).fetchone()
                assert received == entry["rows"] == loaded + q and ok, (d, feed)
                n_q = con.execute("SELECT count(*) FROM dq_quarantine WHERE business_date = ? AND feed = ?",
                                  [d, feed]).fetchone()[0]
                assert n_q == q
        # Quarantined records of client-bearing feeds must not leak client ids to analysts.
        from test_clients import assert_no_client_ids

        assert_no_client_ids(home, landing)
        late = [f for f in faults if f["rule"] == "late_delivery"]
        for f in late:
            assert con.execute("SELECT freshness FROM dq_feed_health WHERE business_date = ? AND feed = ?",
                               [f["business_date"], f["feed"]]).fetchone()[0] == "LATE"
    finally:
        con.close()


# --- file-level failures: exit 1, clear message, other feeds load, published marts kept -------

def _rewrite_manifest(folder: Path, feed: str, **changes) -> None:
    path = folder / "_manifest.json"
    manifest = json.loads(path.read_text())
    manifest["feeds"][feed].update(changes)
    path.write_text(json.dumps(manifest))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_level_failures_fail_their_feed_only_and_keep_the_published_marts(tmp_path, airflow_home, capsys):
    landing = generate_landing(tmp_path / "landing", "2026-03-02", 2, 800, seed=5)
    home = tmp_path / "home"
    # the date before only has to leave published marts behind: its stages run directly (each
    # raises if it fails); the failing date goes through `midoffice run`, the console under test
    run_stages(settings_from(landing, home), "2026-03-02", "file-level-test-2026-03-02")
    exposure_before = mart_rows(home, "risk_exposure")
    assert exposure_before

    day = landing / "2026-03-03"
    (day / "positions.csv").unlink()                                       # missing file
    with (day / "settlements.csv").open("a") as fh:                        # checksum mismatch
        fh.write("\n")
    _rewrite_manifest(day, "gl_entries", rows=json.loads((day / "_manifest.json").read_text())["feeds"]["gl_entries"]["rows"] + 5)  # count
    lines = (day / "client_activity.csv").read_text().split("\n")           # wrong columns
    lines[0] = lines[0].replace("channel", "channel_code")
    (day / "client_activity.csv").write_text("\n".join(lines))
    _rewrite_manifest(day, "client_activity", sha256=_sha(day / "client_activity.csv"))

    proc = midoffice_here(capsys, "run", "--landing", str(landing), "--home", str(home), "--date", "2026-03-03")
    assert proc.returncode == 1, proc.stderr[-3000:]
    err = proc.stderr
    assert "GATE FAILED 2026-03-03 positions" in err and "positions.csv" in err and "file missing" in err
    assert "GATE FAILED 2026-03-03 settlements" in err and "settlements.csv" in err and "checksum mismatch" in err
    assert "GATE FAILED 2026-03-03 gl_entries" in err and "gl_entries.csv" in err and "record count mismatch" in err
    assert "GATE FAILED 2026-03-03 client_activity" in err and "client_activity.csv" in err and "wrong columns" in err

    con = published(home)
    try:
        gates = dict(con.execute(
            "SELECT feed, gate FROM dq_feed_health WHERE business_date = '2026-03-03'").fetchall())
        assert {f for f, g in gates.items() if g == "FAIL"} == {"positions", "settlements", "gl_entries", "client_activity"}
        assert gates["trades"] == gates["clients"] == gates["prices"] == "PASS"
        skipped = {r[0] for r in con.execute(
            "SELECT mart FROM build_log WHERE business_date = '2026-03-03' AND status = 'SKIPPED'").fetchall()}
        assert "risk_exposure" in skipped
    finally:
        con.close()
    assert mart_rows(home, "risk_exposure") == exposure_before


def test_a_run_that_cannot_claim_its_date_ingests_nothing(tmp_path, airflow_home):
    """If the `business_date` task fails (here: the hand-over record cannot be written), no feed
    is ingested and no gate is decided for that run: its date is not built from a run that did
    not claim it. (A failed claim once let a scheduled run ingest a date nobody delivered.)"""
    landing = generate_landing(tmp_path / "landing", "2026-03-02", 1, 200, seed=3)
    home = tmp_path / "home"
    handover = home / "lake" / "control" / "handover"
    handover.parent.mkdir(parents=True)
    handover.write_text("not a folder\n")  # hand_over() cannot create its marker under it

    [outcome] = run_pipeline(landing, home, ["2026-03-02"])
    assert not outcome.ok
    assert "midoffice_ingest.business_date" in outcome.failed_tasks
    assert not (home / "lake" / "staged").exists() or not any((home / "lake" / "staged").rglob("*.parquet"))
    assert not (home / "lake" / "control" / "gate").exists()
    assert any("not started" in t for t in outcome.failed_tasks)
