"""The published warehouse as a DuckLake (DOMAIN §10): versions, restatements, sign-off, readers.

Real files: a small generated landing (5 dates, 100 trades a day) run through the stages the DAGs
call (conftest.run_stages); the first three dates make a base home that each test copies. The
oracles are plain Python: the restatement counts are recomputed by comparing the rows of the two
versions read back from the lake, key by key.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from conftest import generate_landing, run_stages

DATES = ["2026-04-06", "2026-04-07", "2026-04-08", "2026-04-09", "2026-04-10"]
LINEAGE = {"run_id", "loaded_at"}
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from midoffice.config import settings_from

    root = tmp_path_factory.mktemp("lake")
    landing = generate_landing(root / "landing", DATES[0], len(DATES), 100, seed=11)
    settings = settings_from(landing, root / "home")
    for i, day in enumerate(DATES[:3], start=1):
        run_stages(settings, day, f"run-{i}")
    return {"landing": landing, "home": root / "home"}


@pytest.fixture
def home(base, tmp_path):
    """A copy of the base home (and landing) of the test's own."""
    from midoffice.config import settings_from

    landing = shutil.copytree(base["landing"], tmp_path / "landing")
    shutil.copytree(base["home"], tmp_path / "home")
    return settings_from(landing, tmp_path / "home")


def rows_by_key(con, model, day: str) -> dict[tuple, tuple]:
    """key -> the other columns (lineage aside) of the mart's rows of the date, read as published."""
    if model.spans:
        sql = (f"SELECT * EXCLUDE (valid_from, valid_to) FROM {model.spans_table} "
               f"WHERE valid_from <= DATE '{day}' AND coalesce(valid_to, DATE '9999-12-31') >= DATE '{day}'")
        keys = ["trade_id"]
    else:
        sql = f"SELECT * FROM {model.name} WHERE {model.partition} = DATE '{day}'"
        keys = list(model.grain)
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    out = {}
    for row in cur.fetchall():
        rec = dict(zip(names, row))
        out[tuple(rec[k] for k in keys)] = tuple(v for c, v in rec.items() if c not in LINEAGE and c not in keys)
    return out


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
    return a == b


def oracle_counts(before: dict, after: dict) -> tuple[int, int, int, int, int]:
    changed = sum(1 for k in before.keys() & after.keys()
                  if not all(same(x, y) for x, y in zip(before[k], after[k])))
    return len(before), len(after), len(after.keys() - before.keys()), len(before.keys() - after.keys()), changed


def redeliver(landing: Path, day: str, feed: str) -> None:
    """The sender's corrected file of the feed for the date: every tenth record's quantity doubled."""
    folder = landing / day
    lines = (folder / f"{feed}.csv").read_text().splitlines()
    qty = lines[0].split(",").index("quantity")
    for i in range(1, len(lines), 10):
        cells = lines[i].split(",")
        cells[qty] = str(int(float(cells[qty]) * 2))
        lines[i] = ",".join(cells)
    (folder / f"{feed}.csv").write_text("\n".join(lines) + "\n")
    manifest = json.loads((folder / "_manifest.json").read_text())
    manifest["feeds"][feed]["sha256"] = hashlib.sha256((folder / f"{feed}.csv").read_bytes()).hexdigest()
    (folder / "_manifest.json").write_text(json.dumps(manifest, indent=1))


def kpi(con, day: str) -> tuple:
    return con.execute("SELECT firm_gross_exposure_usd, open_breaks FROM kpi_daily WHERE business_date = ?",
                       [day]).fetchone()


def test_a_restatement_keeps_the_version_before_and_says_what_changed(home, capsys):
    from midoffice import lake, restate
    from midoffice.cli import main
    from midoffice.models import published_models
    from midoffice.report import build_report
    from midoffice.signoff import SUPERSEDED, SignoffRefused, current_state, sign_off

    day = DATES[1]
    assert [v.version for v in lake.versions(lake.reader(home))] == [1, 2, 3]
    # the pack of the date, prepared and signed by two people on the version that published it
    assert sign_off(home, day, "ann").state == "PREPARED"
    with pytest.raises(SignoffRefused, match="different person"):
        sign_off(home, day, "ann")
    signed = sign_off(home, day, "bob", comment="checked")
    assert (signed.state, signed.version, signed.prepared_by, signed.signed_by) == ("SIGNED", 2, "ann", "bob")

    v3 = lake.reader(home)
    before_kpi = kpi(v3, day)
    models = published_models()
    before = {m.name: rows_by_key(v3, m, day) for m in models}
    v3.close()

    redeliver(home.landing, day, "trades")
    redeliver(home.landing, day, "positions")
    # a rerun of a published date without a reason: refused before anything runs, in one line
    code = main(["run", "--landing", str(home.landing), "--home", str(home.home), "--date", day])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"{day} was published in version 2" in err[0] and "--reason" in err[0]
    # the publication itself refuses too (a scheduler's rerun with no reason recorded)
    with pytest.raises(restate.RestatementRefused, match="needs a reason"):
        run_stages(home, day, "rerun-no-reason")
    restate.record_reason(home, [day], "trades redelivered: quantities corrected", by="carol")
    run_stages(home, day, "rerun-1")

    now = lake.reader(home)
    versions = lake.versions(now)
    assert [v.version for v in versions] == [1, 2, 3, 4]
    assert versions[-1].restated == (day,) and "quantities corrected (carol)" in versions[-1].reason
    # version 3 still gives what it gave; the current version differs
    assert kpi(lake.reader(home, version=3), day) == before_kpi
    assert kpi(now, day)[0] != before_kpi[0]

    # restatements: each mart's counts equal the plain-Python comparison of the two versions
    table = {r[0]: r[1:] for r in now.execute(
        "SELECT mart, rows_before, rows_after, rows_added, rows_removed, rows_changed FROM restatements "
        "WHERE version = 4 AND as_of_date = ?", [day]).fetchall()}
    assert set(table) == {m.name for m in models}
    for m in models:
        assert table[m.name] == oracle_counts(before[m.name], rows_by_key(now, m, day)), m.name
    assert table["risk_exposure"][4] > 0  # the doubled quantities changed exposures
    figures = now.execute("SELECT DISTINCT firm_exposure_before, firm_exposure_after FROM restatements "
                          "WHERE version = 4").fetchall()
    assert figures == [(before_kpi[0], kpi(now, day)[0])]

    # the sign-off made on version 2 is superseded, and the build alerted it
    assert current_state(home, day).state == SUPERSEDED
    alert = now.execute("SELECT severity, message FROM alerts WHERE business_date = ? AND alert_type = "
                        "'SIGNOFF_SUPERSEDED'", [day]).fetchall()
    assert len(alert) == 1 and alert[0][0] == "CRITICAL" and "bob" in alert[0][1]
    # the pack of the date says it was restated, and its sign-off state
    build_report(home, day, "report-1")
    page = (home.reports / day / "index.html").read_text()
    assert "Restated in version 4" in page and "quantities corrected" in page and "SUPERSEDED" in page
    # `midoffice query --as-of-version` and `versions` on the command line
    assert main(["query", "SELECT count(*) AS n FROM publications", "--home", str(home.home),
                 "--as-of-version", "3", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "3"]
    assert main(["versions", "--home", str(home.home), "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [v["version"] for v in listed] == [1, 2, 3, 4] and listed[-1]["restated"] == day


READER = r"""
import sys
from pathlib import Path
from midoffice.config import Settings
from midoffice import lake
h = Path(sys.argv[1]); con = lake.reader(Settings(landing=h, home=h))
con.execute("BEGIN TRANSACTION")
print(con.execute("SELECT max(version), count(*) FROM publications").fetchone(), flush=True)
for line in sys.stdin:  # hold the lake open; read again each time the parent says so
    print(con.execute("SELECT max(version), count(*) FROM publications").fetchone(), flush=True)
con.execute("COMMIT")
print(con.execute("SELECT max(version), count(*) FROM publications").fetchone(), flush=True)
"""


def lake_fingerprint(settings) -> dict[str, str]:
    """Every data file's bytes and the catalog's content (its rows: SQLite may checkpoint its WAL
    into the file when a reader closes, which moves bytes, not content)."""
    files = sorted(p for p in settings.lake_data_path.rglob("*") if p.is_file())
    found = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    # in a child: Python's sqlite3 closing the catalog here would drop this process's DuckDB locks
    dump = ("import sqlite3, sys; c = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True); "
            "sys.stdout.write(chr(10).join(c.iterdump())); c.close()")
    found["catalog"] = hashlib.sha256(subprocess.run([sys.executable, "-c", dump, str(settings.lake_catalog_file)],
                                                     check=True, capture_output=True).stdout).hexdigest()
    return found


def test_a_reader_is_never_blocked_and_query_cannot_write(home):
    from midoffice.cli import main

    reader = subprocess.Popen([sys.executable, "-c", READER, str(home.home)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "(3, 3)"
        for i, day in enumerate(DATES[3:], start=4):  # two publications while it holds the lake
            run_stages(home, day, f"run-{i}")  # returns: the reader does not block the commit
            reader.stdin.write("again\n")
            reader.stdin.flush()
            assert reader.stdout.readline().strip() == "(3, 3)"  # its own snapshot, whole
        reader.stdin.close()
        assert reader.stdout.readline().strip() == "(5, 5)"  # a new transaction sees both
        assert reader.wait(timeout=60) == 0
    finally:
        reader.kill()

    before = lake_fingerprint(home)
    attempts = [
        "INSERT INTO kpi_daily SELECT * FROM kpi_daily",
        "DELETE FROM kpi_daily",
        "UPDATE kpi_daily SET firm_gross_exposure_usd = 1",
        "ATTACH 'x.db' AS x",
        "CALL lake.merge_adjacent_files()",
        "SELECT * FROM lake.merge_adjacent_files()",
        "SELECT * FROM ducklake_rewrite_data_files('lake')",
        "SELECT * FROM ducklake_expire_snapshots('lake', older_than => now())",
        "SELECT * FROM ducklake_cleanup_old_files('lake', cleanup_all => true)",
        "SELECT * FROM ducklake_delete_orphaned_files('lake', cleanup_all => true)",
        "SELECT * FROM lake.set_commit_message('x', 'y')",
        f"SELECT * FROM sqlite_query('{home.lake_catalog_file}', 'DELETE FROM ducklake_snapshot')",
        "COPY (SELECT 1) TO 'out.parquet'",
    ]
    for sql in attempts:
        code = subprocess.run([str(REPO / ".venv" / "bin" / "midoffice"), "query", sql, "--home", str(home.home)],
                              capture_output=True, text=True, timeout=120)
        assert code.returncode == 2, (sql, code.stdout)
        assert code.stderr.startswith("midoffice: query refused") or "read-only" in code.stderr, (sql, code.stderr)
    assert main(["query", "SELECT count(*) FROM kpi_daily", "--home", str(home.home)]) == 0
    assert lake_fingerprint(home) == before


def test_a_data_file_edited_behind_the_catalog_is_not_carried_forward(home):
    from midoffice import lake
    from midoffice.duck import connect
    from midoffice.status import date_statuses

    con = lake.reader(home)
    truth = kpi(con, DATES[0])[0]
    target = con.execute("SELECT data_file FROM ducklake_list_files('lake', 'kpi_daily') ORDER BY data_file").fetchall()
    con.close()
    # someone rewrites the Parquet files of kpi_daily with DuckDB, behind the catalog's back
    scratch = connect(home)
    for (path,) in target:
        scratch.execute(f"COPY (SELECT * REPLACE (1.0 AS firm_gross_exposure_usd) FROM read_parquet('{path}')) "
                        f"TO '{path}.edited' (FORMAT parquet)")
        Path(f"{path}.edited").replace(path)
    scratch.close()
    run_stages(home, DATES[3], "run-4")
    con = lake.reader(home)
    assert kpi(con, DATES[0])[0] == truth  # the new version reads the build's rows, not the edit
    publish = next(r for r in {s.business_date: s for s in date_statuses(home)}[DATES[3]].stages
                   if r.stage == "publish")
    assert "kpi_daily" in publish.message and "not carried forward" in publish.message
    assert con.execute("SELECT rewritten_marts FROM publications WHERE version = 4").fetchone()[0] == ["kpi_daily"]


def test_the_publication_lists_the_lake_files_as_ducklake_does(home):
    """publish reads the current version's data and delete files from DuckLake's catalog tables in
    one query (its trust check); DuckLake's own ducklake_list_files, table by table, is the truth."""
    from midoffice import lake
    from midoffice.publish import _lake_files

    con = lake.reader(home)
    try:
        tables = [t for (t,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'lake' AND schema_name = 'main'").fetchall()]
        listed = []
        for table in tables:
            for data, size, delete, delete_size in con.execute(
                    "SELECT data_file, data_file_size_bytes, delete_file, delete_file_size_bytes "
                    "FROM ducklake_list_files('lake', ?)", [table]).fetchall():
                listed += [(table, data, size)] + ([(table, delete, delete_size)] if delete else [])
        ours = _lake_files(con, tables)
    finally:
        con.close()
    assert len(tables) > 30 and len(ours) >= len(tables)
    assert sorted(set(ours)) == sorted(set(listed))


def test_a_calendar_that_changed_in_the_build_is_published_again(home):
    """The publication copies the build's business calendars into the lake only when they differ
    (compared by a fingerprint of their rows): one business day turned holiday is a difference."""
    from midoffice import lake
    from midoffice.duck import connect
    from midoffice.publish import _copy_calendar

    con = connect(home, home.build_db)
    try:
        lake.attach(con, home)
        differ = ("SELECT count(*) FROM ((SELECT * FROM core.calendar_days EXCEPT ALL SELECT * FROM lake.core.calendar_days) "
                  "UNION ALL (SELECT * FROM lake.core.calendar_days EXCEPT ALL SELECT * FROM core.calendar_days))")
        assert con.execute(differ).fetchone()[0] == 0
        con.execute("UPDATE core.calendar_days SET is_business = false "
                    "WHERE calendar_id = 'FIRM' AND day = DATE '2026-03-10'")
        assert con.execute(differ).fetchone()[0] == 2
        con.execute("BEGIN TRANSACTION")
        _copy_calendar(con)
        con.execute("COMMIT")
        assert con.execute(differ).fetchone()[0] == 0
    finally:
        con.close()


def marts_without_lineage(con) -> dict[str, list]:
    from midoffice.models import published_models

    out = {}
    # the run ledger (pipeline_runs) holds each run's own times: not compared
    for m in (m for m in published_models() if m.name != "pipeline_runs"):
        for table in m.stored_tables:
            cols = [c for (c,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
                "AND table_name = ? ORDER BY column_index", [table]).fetchall() if c not in LINEAGE]
            row = "CAST(row(" + ", ".join(f'"{c}"' for c in cols) + ") AS VARCHAR)"
            out[table] = con.execute(f"SELECT {row} AS r FROM {table} ORDER BY r").fetchall()
    return out


def test_a_postgresql_catalog_gives_the_same_marts(base, tmp_path):
    psycopg2 = pytest.importorskip("psycopg2")
    import dataclasses
    import uuid

    from midoffice import lake
    from midoffice.config import settings_from

    try:
        admin = psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=3)
    except psycopg2.OperationalError as e:
        pytest.skip(f"PostgreSQL is not reachable at 127.0.0.1:5432 as postgres ({str(e).strip()})")
    admin.autocommit = True
    name = f"midoffice_lake_test_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        settings = dataclasses.replace(settings_from(base["landing"], tmp_path / "home"), lake_catalog=url,
                                       lake_data=str(tmp_path / "shared" / "lake"), actions_url=url)
        for i, day in enumerate(DATES[:3], start=1):
            run_stages(settings, day, f"run-{i}")
        assert not settings.lake_catalog_file.exists()  # the catalog is in PostgreSQL
        assert list((tmp_path / "shared" / "lake").rglob("*.parquet"))
        with closing(lake.reader(settings)) as on_pg, \
                closing(lake.reader(settings_from(base["landing"], base["home"]))) as embedded:
            assert [v.version for v in lake.versions(on_pg)] == [1, 2, 3]
            assert marts_without_lineage(on_pg) == marts_without_lineage(embedded)
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def test_extension_signatures_are_checked_once_a_process_and_again_for_a_changed_file(tmp_path):
    """DuckDB hashes an extension's whole file at every LOAD (0.25 s a reader for the lake's
    two); midoffice lets it skip that for a file it already checked in this process, and only
    while the file is the same: a file changed since is checked again, and a tampered one refused.
    In a process of its own: it loads copies of the extensions, which must not meet the real ones
    loaded in this one."""
    code = f"""
import shutil, duckdb
from pathlib import Path
from midoffice import lake
from midoffice.config import Settings
from midoffice.duck import restrict_to

tmp = Path({str(tmp_path)!r})
settings = Settings(landing=tmp, home=tmp / "home")
copies = {{}}
for name in lake.extensions_for(settings):  # copies this test may tamper with
    copies[name] = tmp / f"{{name}}.duckdb_extension"
    shutil.copyfile(lake.extension_file(name), copies[name])
other = shutil.copyfile(lake.extension_file("postgres_scanner"), tmp / "other.duckdb_extension")
lake.extension_file = lambda name: copies[name]

def unsigned_allowed(con):
    return con.execute("SELECT current_setting('allow_unsigned_extensions')").fetchone()[0]

assert not lake.signatures_checked(settings)
con = lake.connect_for_lake(settings)  # the first of the process: DuckDB checks the signatures
assert unsigned_allowed(con) is False
lake.load_extensions(con, settings)
con.close()
assert lake.signatures_checked(settings)

con = lake.connect_for_lake(settings)  # the same files: not hashed again
assert unsigned_allowed(con) is True
lake.load_extensions(con, settings)
restrict_to(con, tmp)  # as every reader is: no other file can be loaded through it
try:
    con.execute(f"LOAD '{{other}}'")
    raise AssertionError("an extension was loaded with external access off")
except duckdb.Error as exc:
    assert "Loading external extensions is disabled" in str(exc), exc
con.close()

# A tampered file, written beside and moved over the one checked (the loaded file stays intact)
data = bytearray(copies["ducklake"].read_bytes())
data[len(data) // 2] ^= 0xFF
(tmp / "tampered").write_bytes(bytes(data))
(tmp / "tampered").replace(copies["ducklake"])
assert not lake.signatures_checked(settings)  # changed since it was checked
con = lake.connect_for_lake(settings)
assert unsigned_allowed(con) is False
try:
    lake.load_extensions(con, settings)
    raise AssertionError("a tampered extension was loaded")
except duckdb.Error as exc:
    assert "signature" in str(exc).lower(), exc
assert not lake.signatures_checked(settings)
print("CHECKED")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and "CHECKED" in done.stdout, done.stderr[-3000:]


def test_a_reader_tries_again_when_sqlite_answers_locking_protocol_while_the_catalog_commits(home, monkeypatch):
    """CI saw a query fail to open the lake with SQLite's "locking protocol" while another process
    published (a query every tenth of a second). The answer is transient: the reader tries again
    on a new connection; any other failure to open is said at once."""
    import duckdb

    from midoffice import lake

    real_attach, calls = lake.attach, []

    def attach(con, *args, **kwargs):
        calls.append(1)
        if len(calls) <= 2:
            raise duckdb.IOException('Failed to probe DuckLake metadata: Failed to prepare query "SELECT type FROM '
                                     'sqlite_master": locking protocol')
        return real_attach(con, *args, **kwargs)

    monkeypatch.setattr(lake, "attach", attach)
    con = lake.reader(home)
    assert con.execute("SELECT count(*) FROM publications").fetchone()[0] >= 1
    con.close()
    assert len(calls) == 3

    calls.clear()

    def broken(con, *args, **kwargs):
        calls.append(1)
        raise duckdb.IOException("Catalog Error: not a DuckLake catalog")

    monkeypatch.setattr(lake, "attach", broken)
    with pytest.raises(lake.LakeError, match="not a DuckLake catalog"):
        lake.reader(home)
    assert len(calls) == 1


def test_a_query_tries_its_statement_again_when_sqlite_answers_locking_protocol(home, monkeypatch):
    """CI saw `midoffice query` fail at its statement, after the lake was open: DuckLake reads the
    latest snapshot from the catalog as each transaction starts, and SQLite answered "locking
    protocol" while a publication committed. The read-only statement is run again; an error of
    the SQL itself is said at once, and a catalog that keeps answering so fails after five tries."""
    import io

    import duckdb

    from midoffice import lake, query

    class Connection:  # the real reader; its execute of the analyst's statement answers as SQLite did
        def __init__(self, con, failures):
            self.con, self.failures, self.tries = con, failures, 0

        def execute(self, sql, *args):
            if sql == STATEMENT:
                self.tries += 1
                if self.tries <= self.failures:
                    raise duckdb.IOException('Failed to query most recent snapshot for DuckLake: Failed to prepare '
                                             'query "SELECT type FROM sqlite_master": locking protocol')
            return self.con.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.con, name)

    STATEMENT = "SELECT count(*) AS n FROM publications"
    opened = []
    real_open = query.open_published

    def open_published(*args, failures=2, **kwargs):
        opened.append(Connection(real_open(*args, **kwargs), failures))
        return opened[-1]

    monkeypatch.setattr(lake, "CATALOG_ATTEMPTS", 5)
    monkeypatch.setattr(query, "open_published", open_published)
    out = io.StringIO()
    assert query.run_query(STATEMENT, str(home.home), fmt="csv", out=out) == 0
    assert opened[-1].tries == 3 and int(out.getvalue().splitlines()[1]) >= 1

    monkeypatch.setattr(query, "open_published", lambda *a, **k: open_published(*a, failures=99, **k))
    assert query.run_query(STATEMENT, str(home.home), fmt="csv", out=io.StringIO()) == 2
    assert opened[-1].tries == 5

    calls = []
    assert lake.tried_again_on_transient_catalog_errors(lambda: calls.append(1) or "done") == "done"
    with pytest.raises(duckdb.CatalogException):
        lake.tried_again_on_transient_catalog_errors(
            lambda: calls.append(1) or (_ for _ in ()).throw(duckdb.CatalogException("no table x")))
    assert len(calls) == 2  # a real error of the SQL is not tried again


def _locks_on(paths: list[Path]) -> list[str]:
    """This process's POSIX locks on these files, as the kernel lists them (/proc/locks)."""
    import os

    inodes = {f"{os.major(s.st_dev):02x}:{os.minor(s.st_dev):02x}:{s.st_ino}": p.name
              for p in paths if p.exists() for s in [p.stat()]}
    pid = str(os.getpid())
    return sorted(f"{inodes[f[5]]} {f[3]} {f[6]}-{f[7]}" for f in (line.split() for line in
                  Path("/proc/locks").read_text().splitlines()) if f[4] == pid and f[5] in inodes)


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="reads the kernel's table of locks (Linux)")
def test_opening_the_lake_again_keeps_the_locks_the_process_holds_on_its_catalog(home):
    """CI's publication died of SIGBUS in COMMIT: the process had let go of its locks on the
    catalog without knowing it. Python's sqlite3 had opened the catalog beside DuckDB's SQLite to
    check its journal mode, and closing a file drops every lock the process holds on it; another
    process then took the catalog's shared memory for free and truncated it. Here a publication
    holds the catalog open while the same process opens the lake again, read-write and read-only,
    and collects its garbage (where an unclosed sqlite3 connection closed): its locks stay."""
    import gc

    from midoffice import lake

    catalog = home.lake_catalog_file
    files = [catalog, catalog.with_name(catalog.name + "-shm")]
    writer = lake.connect_for_lake(home)
    try:
        lake.attach(writer, home)
        writer.execute("BEGIN TRANSACTION")
        writer.execute(f"SELECT count(*) FROM {lake.LAKE}.publications").fetchone()
        held = _locks_on(files)
        assert any(h.startswith(catalog.name + "-shm") for h in held), held  # the test sees SQLite's locks

        again = lake.connect_for_lake(home)
        lake.attach(again, home)
        again.close()
        lake.reader(home).close()
        assert lake.published_dates(home)
        gc.collect()
        assert _locks_on(files) == held

        writer.execute(f"INSERT INTO {lake.LAKE}.publications SELECT * FROM {lake.LAKE}.publications LIMIT 0")
        writer.execute("COMMIT")
    finally:
        writer.close()


def test_a_new_catalog_is_created_in_wal_mode(tmp_path):
    """Readers never wait for the publication's commit: the catalog's journal is SQLite's WAL,
    set when the catalog is created, and a catalog copied in rollback mode is put in WAL."""
    import sqlite3
    from contextlib import closing

    from midoffice import lake
    from midoffice.config import Settings

    settings = Settings(landing=tmp_path, home=tmp_path)
    for step in ("new", "rollback copy"):
        con = lake.connect_for_lake(settings)
        lake.attach(con, settings)
        con.execute(f"CREATE TABLE IF NOT EXISTS {lake.LAKE}.t AS SELECT 1 AS x")
        con.close()
        with closing(sqlite3.connect(settings.lake_catalog_file)) as check:  # no DuckDB here any more
            assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal", step
            check.execute("PRAGMA journal_mode = DELETE")  # as a copy made in rollback mode would be


PUBLISH_TWICE = r"""
import sys
from midoffice.config import settings_from
from midoffice.publish import publish
settings = settings_from(sys.argv[1], sys.argv[2])
for attempt in (1, 2):
    try:
        publish(settings, sys.argv[3], "run-held")
        print(f"{attempt} PUBLISHED", flush=True)
    except Exception as exc:
        print(f"{attempt} {type(exc).__name__}: {' '.join(str(exc).split())}", flush=True)
"""


def test_a_commit_refused_by_a_locked_catalog_fails_clearly_and_the_process_does_not_hang_after_it(home):
    """Another process holds the catalog's write lock when the publication commits: the commit
    fails, naming the date, the catalog and the lock. DuckLake keeps the failed commit's database
    open, and DuckDB would wait forever to open build.duckdb again in that process (a
    `midoffice run` retrying, or building its next date): the process says so at once instead.
    A new process publishes the date."""
    from midoffice import lake
    from midoffice.contracts import ingest_order
    from midoffice.ingest import ingest_feed
    from midoffice.stages import publish_date, validate_and_gate
    from midoffice.warehouse import build_warehouse

    day = DATES[3]
    for feed in ingest_order():
        ingest_feed(home, day, feed, "run-held")
    for feed in ingest_order():
        validate_and_gate(home, day, feed, "run-held")
    build_warehouse(home, day, "run-held")
    before = lake.published_dates(home)

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
         "c.execute('BEGIN IMMEDIATE'); print('held', flush=True); sys.stdin.read()", str(home.lake_catalog_file)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        tried = subprocess.run([sys.executable, "-c", PUBLISH_TWICE, str(home.landing), str(home.home), day],
                               capture_output=True, text=True, cwd=REPO, timeout=300)
    finally:
        holder.communicate("")  # ends its transaction and the process
    said = tried.stdout.splitlines()
    assert tried.returncode == 0 and len(said) == 2, tried.stdout + tried.stderr[-3000:]
    assert said[0].startswith("1 RuntimeError: publishing " + day), said[0]
    assert str(home.lake_catalog_file) in said[0] and "another process holds the catalog's write lock" in said[0]
    assert said[1].startswith(f"2 DatabaseHeldError: {home.build_db} cannot be opened again in this process"), said[1]
    assert "run the command again" in said[1]
    assert lake.published_dates(home) == before  # nothing half-published

    publish_date(home, day, "run-held")  # this process is a new one for the build file
    assert lake.published_dates(home)[day] == max(before.values()) + 1
