"""`midoffice query` and `midoffice status`: read-only, readable, streamable, safe while publishing."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from midoffice import lake
from midoffice.contracts import load_contracts

from conftest import published, REPO

pytestmark = pytest.mark.slow


def published_rows(home: Path, sql: str, params=()) -> tuple[list[str], list[tuple]]:
    con = published(home / "warehouse" / "marts.duckdb")
    try:
        cur = con.execute(sql, list(params))
        return [d[0] for d in cur.description], cur.fetchall()
    finally:
        con.close()


def query(sql: str, home: Path, fmt: str = "table") -> tuple[int, str]:
    from midoffice.query import run_query

    out = io.StringIO()
    code = run_query(sql, str(home), fmt, out=out)
    return code, out.getvalue()


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "midoffice.cli", *args], capture_output=True, text=True,
                          cwd=REPO, env=dict(os.environ), **kw)


# --- table output ---------------------------------------------------------------------------------

def test_table_output_is_aligned_numbers_right_text_left_long_text_cut(sample_run):
    home = sample_run["home"]
    sql = ("SELECT feed, loaded_rows, quarantined_share, repeat('x', 100) AS long_text, NULL AS nothing "
           "FROM dq_feed_health WHERE business_date = '2026-01-05' ORDER BY feed")
    code, text = query(sql, home)
    assert code == 0
    lines = text.rstrip("\n").split("\n")
    header, rule, body, footer = lines[0], lines[1], lines[2:-1], lines[-1]

    feeds = len(load_contracts())
    assert footer == f"({feeds} rows)" and len(body) == feeds  # one row a feed
    widths = [len(dash) for dash in rule.split("  ")]
    starts = [sum(widths[:i]) + 2 * i for i in range(len(widths))]
    _, rows = published_rows(home, sql)
    for line, row in zip(body, rows):
        cells = [line[s:s + w] for s, w in zip(starts, widths)]
        assert cells[0].rstrip() == row[0] and cells[0].startswith(row[0])                  # text left
        assert cells[1].lstrip() == f"{row[1]:,}" and cells[1].endswith(f"{row[1]:,}")     # number right
        assert len(cells[3].strip()) == 40 and cells[3].strip().endswith("…")              # cut at 40
        assert line.rstrip().endswith("NULL")
    assert header.split() == ["feed", "loaded_rows", "quarantined_share", "long_text", "nothing"]


def test_csv_and_json_output_equal_the_warehouse(sample_run):
    home = sample_run["home"]
    sql = ("SELECT as_of_date, holder_type, holder_id, instrument_id, market_value_usd FROM risk_exposure "
           "WHERE as_of_date = '2026-01-06' ORDER BY ALL")
    headers, rows = published_rows(home, sql)
    code, text = query(sql, home, "csv")
    assert code == 0
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == headers and len(parsed) == len(rows) + 1
    for got, want in zip(parsed[1:], rows):
        assert got[:4] == [str(v) for v in want[:4]]
        assert (got[4] == "" and want[4] is None) or float(got[4]) == want[4]  # exact: repr round-trips
    code, text = query(sql, home, "json")
    assert code == 0
    objects = json.loads(text)
    assert [list(o) for o in objects[:1]] == [headers]
    assert [(o["as_of_date"], o["holder_id"], o["market_value_usd"]) for o in objects] == \
        [(str(r[0]), r[2], r[4]) for r in rows]


def test_bad_sql_and_missing_warehouse_exit_2_with_a_message(sample_run, tmp_path):
    proc = cli("query", "SELECT nope FROM risk_exposure", "--home", str(sample_run["home"]))
    assert proc.returncode == 2 and "query failed" in proc.stderr and "nope" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = cli("query", "SELECT 1", "--home", str(tmp_path / "empty"))
    assert proc.returncode == 2 and "nothing published yet" in proc.stderr
    proc = cli("status", "--home", str(tmp_path / "empty"))
    assert proc.returncode == 2 and "no run recorded" in proc.stderr


# --- read-only ------------------------------------------------------------------------------------

def _lake_state(home: Path) -> tuple:
    """The published lake as readers see it: its current version and every data file's digest."""
    con = published(home)
    try:
        version = lake.current_version(con)
    finally:
        con.close()
    files = sorted((home / "warehouse" / "lake_data").rglob("*"))
    return version, [(str(f), hashlib.sha256(f.read_bytes()).hexdigest()) for f in files if f.is_file()]


def test_query_cannot_write_or_reach_outside_the_warehouse(sample_run, tmp_path):
    home = sample_run["home"]
    before = _lake_state(home)
    secret = tmp_path / "elsewhere.csv"
    secret.write_text("a\n1\n")
    escape = tmp_path / "out.csv"
    attempts = [
        "CREATE TABLE hack AS SELECT 1 AS x",
        "DELETE FROM risk_exposure",
        "UPDATE dq_feed_health SET gate = 'PASS'",
        f"COPY (SELECT 1) TO '{escape}'",
        f"SELECT * FROM read_csv('{secret}')",
        f"ATTACH '{tmp_path / 'other.duckdb'}' AS other",
        "SET enable_external_access = true",
        "INSTALL httpfs",
    ]
    for sql in attempts:
        code, _ = query(sql, home)
        assert code == 2, sql
    assert not escape.exists() and not (tmp_path / "other.duckdb").exists()
    assert _lake_state(home) == before


# --- status ---------------------------------------------------------------------------------------

def test_status_shows_one_line_per_date_and_each_feed_with_rows_as_the_manifests_say(sample_run):
    from midoffice.status import show_status

    out = io.StringIO()
    assert show_status(str(sample_run["home"]), out=out) == 0
    lines = out.getvalue().rstrip("\n").split("\n")
    assert lines[0].split()[:2] == ["business_date", "outcome"]
    body = [line.split() for line in lines[2:] if line[:4].isdigit()]
    # the clean sample: every date published, nothing quarantined, nothing late
    assert [(r[0], r[1], r[2]) for r in body] == [(d, "OK", "0") for d in sample_run["dates"]]
    assert lines[-1] == f"{len(sample_run['dates'])} business dates, {sample_run['dates'][0]} to " \
                        f"{sample_run['dates'][-1]}: {len(sample_run['dates'])} OK"
    # per date: received and loaded equal the sender's manifest, for every feed
    landing, day = sample_run["landing"], sample_run["dates"][-1]
    manifest = json.loads((landing / day / "_manifest.json").read_text())
    out = io.StringIO()
    assert show_status(str(sample_run["home"]), day, out=out) == 0
    rows = {line.split()[0]: line.split() for line in out.getvalue().splitlines()[2:] if line.split()}
    for feed, entry in manifest["feeds"].items():
        assert rows[feed][1:5] == ["PASS", f"{entry['rows']:,}", f"{entry['rows']:,}", "0"], rows[feed]


# --- pipes ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["query", "SELECT * FROM risk_exposure", "--format", "csv"],
    ["query", "SELECT * FROM risk_var_scenarios", "--format", "json"],
    ["query", "SELECT * FROM risk_exposure"],
    ["status"],
])
def test_a_closed_pipe_ends_quietly(sample_run, args):
    """`midoffice query ... | head -1`: no traceback, exit status 0."""
    proc = subprocess.Popen([sys.executable, "-m", "midoffice.cli", *args, "--home", str(sample_run["home"])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=dict(os.environ))
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does after its line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert first and "Traceback" not in err and "BrokenPipe" not in err, err


# --- while the pipeline writes ---------------------------------------------------------------------

WRITER = """
import sys
from midoffice.config import settings_from
from midoffice.publish import publish
from midoffice.restate import record_reason
from midoffice.warehouse import build_warehouse
settings = settings_from(sys.argv[1], sys.argv[2])
for i in range(2):
    run_id = f"concurrent-{i}"
    # the date is published already: each republication is a restatement, with its reason
    record_reason(settings, [sys.argv[3]], "query test: published again while queries run", by="query-test")
    build_warehouse(settings, sys.argv[3], run_id)
    publish(settings, sys.argv[3], run_id)
    print("published", run_id, flush=True)
"""


def test_queries_work_while_another_process_builds_and_publishes(sample_run, tmp_path):
    """A build + publish runs twice in another process while queries run here: every query
    succeeds, sees a complete warehouse, and the queries see the publications change."""
    home = tmp_path / "home"
    # Not the catalog's -shm: SQLite's WAL index belongs to the file it indexes and is rebuilt
    # from the WAL; a copied one can describe another state of it (twice in CI the publication
    # here then read the version before its own commit).
    shutil.copytree(sample_run["home"], home, ignore=shutil.ignore_patterns("reports", "airflow", "tmp", "*-shm"))
    d = sample_run["dates"][-1]
    _, (expected,) = published_rows(home, "SELECT count(*) FROM risk_exposure")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(sample_run["landing"]), str(home), d],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=dict(os.environ))
    seen, queries = [], 0
    try:
        while writer.poll() is None:
            code, text = query("SELECT (SELECT run_id FROM publications ORDER BY version DESC LIMIT 1) AS run_id, "
                               "(SELECT count(*) FROM risk_exposure) AS exposure_rows", home, "json")
            assert code == 0
            row = json.loads(text)[0]
            assert row["exposure_rows"] == expected[0]  # a whole warehouse, never a half-written one
            if not seen or seen[-1] != row["run_id"]:
                seen.append(row["run_id"])
            queries += 1
            time.sleep(0.1)  # a query every tenth of a second: enough to see each publication,
            # and the writer keeps a core (an unpaused loop took one from it and from every other test)
        out, err = writer.communicate(timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.returncode == 0, err[-3000:]
    assert out.count("published") == 2
    code, text = query("SELECT run_id FROM publications ORDER BY version DESC LIMIT 1", home, "json")
    assert json.loads(text)[0]["run_id"] == "concurrent-1"
    # the queries overlapped the writer: they saw the original publication and at least one new one
    assert len(seen) >= 2 and seen[-1] in ("concurrent-0", "concurrent-1"), (seen, queries)
