"""Attacks on `midoffice query` as an analyst could make them (issue 22): each must do no harm.

The published warehouse here is a real lake on disk (midoffice.lake: the SQLite catalog and its
Parquet data files) with one small mart, committed the way publication commits; the query path
under attack is the product's own. "No harm" is checked on every file of the home: none changed,
none added.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from conftest import REPO


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    from midoffice import lake
    from midoffice.config import Settings

    home = tmp_path / "home"
    settings = Settings(landing=home, home=home)
    con = duckdb.connect()
    lake.attach(con, settings)
    con.execute("BEGIN TRANSACTION")
    con.execute(f"CREATE TABLE {lake.LAKE}.risk_exposure AS "
                "SELECT range AS n, range * 1.5 AS market_value_usd FROM range(100)")
    con.execute(f"CALL {lake.LAKE}.set_commit_message(?, 'publish', extra_info => '{{}}')", [lake.AUTHOR])
    con.execute("COMMIT")
    con.close()
    lake.reader(settings).close()  # as in any live home, a reader has opened the catalog (its -wal, -shm)
    return home


def files(home: Path) -> dict[Path, str]:
    """Every file of the home (the catalog, its WAL, the data files) and its content's hash. Not
    the catalog's -shm: SQLite's shared-memory index of the WAL, which every reader updates and
    which holds no data."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(home.rglob("*"))
            if p.is_file() and not p.name.endswith("-shm")}


def catalog(home: Path) -> Path:
    return home / "warehouse" / "lake.sqlite"


def data_files(home: Path) -> list[Path]:
    return sorted((home / "warehouse").rglob("*.parquet"))


def query(sql: str, home: Path, fmt: str = "table", **bounds) -> tuple[int, str]:
    from midoffice.query import run_query

    out = io.StringIO()
    return run_query(sql, str(home), fmt, out=out, **bounds), out.getvalue()


def test_copy_over_the_catalog_its_wal_and_a_data_file_is_refused(home, capsys):
    before = files(home)
    assert catalog(home) in before and data_files(home)
    for target in (catalog(home), Path(str(catalog(home)) + "-wal"), data_files(home)[0]):
        code, _ = query(f"COPY (SELECT 'pwned' AS x) TO '{target}' (FORMAT csv, USE_TMP_FILE false)", home)
        assert code == 2
        assert "not COPY" in capsys.readouterr().err
    assert files(home) == before
    assert query("SELECT count(*) AS n FROM risk_exposure", home, "csv") == (0, "n\n100\n")


@pytest.mark.parametrize("sql", [
    "CREATE TABLE hack AS SELECT 1 AS x",
    "INSERT INTO risk_exposure VALUES (1, 1)",
    "SELECT 1; COPY (SELECT 1) TO 'x.csv'",            # a second statement behind a harmless one
    "/* SELECT */ copy (select 1) to 'x.csv'",          # a comment and lower case
    "ATTACH 'other.duckdb' AS other",
    "SET temp_directory = '/tmp'",
    "PRAGMA force_checkpoint",
    "CHECKPOINT",
    "CALL pragma_version()",
    "EXPORT DATABASE 'dump'",
    "LOAD httpfs",
    "INSTALL httpfs",
    "PREPARE p AS SELECT 1",
    "BEGIN TRANSACTION",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO 'x.csv'",      # DuckDB calls it an EXPLAIN, and runs the COPY
    "EXPLAIN ANALYZE CREATE TABLE hack AS SELECT 1",
    "EXPLAIN SELECT 1",
])
def test_every_statement_that_is_not_a_single_select_is_refused_before_it_runs(home, sql, capsys):
    before = files(home)
    code, out = query(sql, home)
    assert (code, out) == (2, "")
    assert "query refused" in capsys.readouterr().err
    assert files(home) == before  # nothing changed, nothing added


@pytest.mark.parametrize("sql", ["SELECT 42 AS answer", "SUMMARIZE risk_exposure",
                                 "DESCRIBE risk_exposure", "SHOW TABLES", "FROM risk_exposure LIMIT 1"])
def test_reading_statements_still_work(home, sql):
    code, out = query(sql, home)
    assert code == 0 and out


def test_the_pipelines_spill_directory_cannot_be_read_and_the_querys_own_is_removed(home, capsys):
    # What the build spills (or a file someone planted there) is not the analyst's to read.
    shared_spill = home / "tmp" / "duckdb_spill"
    shared_spill.mkdir(parents=True)
    (shared_spill / "planted.csv").write_text("secret\n42\n")
    code, _ = query(f"SELECT * FROM read_csv('{shared_spill / 'planted.csv'}')", home)
    assert code == 2
    assert "Permission Error" in capsys.readouterr().err
    code, out = query("SELECT current_setting('temp_directory') AS d", home, "csv")
    own = Path(out.splitlines()[1])
    assert code == 0 and own.name.startswith("midoffice-query-") and shared_spill not in own.parents
    assert not own.exists()  # removed when the query ended


def test_a_runaway_query_is_stopped_by_the_timeout(home, capsys):
    code, _ = query("SELECT count(*) FROM range(10000000000000::BIGINT)", home, timeout=1)
    assert code == 2
    assert "stopped after 1 s (--timeout)" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_huge_result_is_bounded_and_says_so(home, fmt, capsys):
    code, out = query("SELECT * FROM range(25000) ORDER BY 1", home, fmt, max_rows=12_345)
    assert code == 2
    assert "more than 12,345 rows (--max-rows)" in capsys.readouterr().err
    lines = [x for x in out.splitlines() if x.strip() not in ("[", "]")]
    assert len(lines) == 12_345 + (1 if fmt == "csv" else 0)
    code, out = query("SELECT * FROM range(25000)", home, "csv", max_rows=None)
    assert code == 0 and len(out.splitlines()) == 25_001


def test_the_command_line_takes_the_bounds(home):
    run = subprocess.run([sys.executable, "-m", "midoffice.cli", "query", "SELECT * FROM range(50)",
                          "--home", str(home), "--format", "csv", "--max-rows", "7"],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 2 and len(run.stdout.splitlines()) == 8
    assert "--max-rows" in run.stderr and "Traceback" not in run.stderr


def test_the_duckdb_command_the_readme_gives_is_installed_and_reads_the_warehouse(home):
    """Issue 21: the README told analysts to run `duckdb -readonly ...`, and no duckdb command was
    installed. The pinned duckdb-cli package installs it beside the product's own command."""
    duckdb_cli = Path(sys.executable).with_name("duckdb")
    assert duckdb_cli.is_file(), "duckdb-cli is not installed in this environment (pyproject dependency)"
    readme = (REPO / "README.md").read_text()
    assert '.venv/bin/duckdb -cmd "$(.venv/bin/midoffice versions --attach' in readme
    attach = subprocess.run([sys.executable, "-m", "midoffice.cli", "versions", "--attach", "--home", str(home)],
                            capture_output=True, text=True, cwd=REPO, check=True).stdout  # the README's one-liner
    run = subprocess.run([str(duckdb_cli), "-csv", "-cmd", attach, "-c", "SELECT count(*) AS n FROM risk_exposure"],
                         capture_output=True, text=True)
    assert (run.returncode, run.stdout) == (0, "n\n100\n"), run.stderr
    assert duckdb.__version__ in subprocess.run([str(duckdb_cli), "-version"], capture_output=True, text=True).stdout
