"""The people's actions store (midoffice.people.store): append-only, ids from the store, readable
by effective date, a writer never fails because a reader holds the file; the same on PostgreSQL.

The PostgreSQL tests use the local server (127.0.0.1:5432, user postgres, trust auth, as the
Celery test does) and a throwaway database; they are skipped, saying why, when it is not there.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from midoffice.config import Settings
from midoffice.duck import connect_scratch
from midoffice.people import store

PG = "postgresql://postgres@127.0.0.1:5432/"


def sqlite_settings(tmp_path: Path) -> Settings:
    return Settings(landing=tmp_path, home=tmp_path / "home", actions_url=None)


@pytest.fixture
def pg_settings(tmp_path):
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(PG + "postgres", connect_timeout=3)
    except psycopg2.OperationalError as e:
        pytest.skip(f"PostgreSQL is not reachable at 127.0.0.1:5432 as postgres ({str(e).strip()})")
    admin.autocommit = True
    name = f"midoffice_people_test_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield Settings(landing=tmp_path, home=tmp_path / "home", actions_url=PG + name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def signoff(day: str, action: str, by: str, version: int, **more) -> dict:
    return {"effective_date": day, "action": action, "by": by, "version": version, **more}


def both(request, tmp_path) -> Settings:
    return sqlite_settings(tmp_path) if request.param == "sqlite" else request.getfixturevalue("pg_settings")


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path):
    return both(request, tmp_path)


def test_append_assigns_ids_and_reads_by_effective_date(settings):
    ids = [store.append(settings, "signoffs", signoff("2026-01-06", "PREPARE", "ann", 3)),
           store.append(settings, "signoffs", signoff("2026-01-05", "PREPARE", "bob", 2, comment="ok")),
           store.append(settings, "signoffs", signoff(dt.date(2026, 1, 7), "SIGN", "cy", 4,
                                                      at="2026-01-07T09:30:00+01:00"))]
    assert ids == sorted(ids) and len(set(ids)) == 3

    every = store.records(settings, "signoffs")
    assert [r["signoff_id"] for r in every] == ids
    assert [r["by"] for r in every] == ["ann", "bob", "cy"]
    assert every[1]["comment"] == "ok" and every[0]["comment"] is None
    assert every[2]["effective_date"] == dt.date(2026, 1, 7)
    assert every[2]["at"] == dt.datetime(2026, 1, 7, 8, 30)  # kept in UTC
    assert isinstance(every[0]["at"], dt.datetime)  # filled by the store
    assert every[0]["version"] == 3

    upto = store.records(settings, "signoffs", up_to_effective_date="2026-01-06")
    # the oracle: the same filter in plain Python over what was appended
    assert [r["signoff_id"] for r in upto] == [r["signoff_id"] for r in every
                                               if r["effective_date"] <= dt.date(2026, 1, 6)]


def test_records_are_checked_before_they_are_kept(settings):
    with pytest.raises(store.StoreError, match="by is required"):
        store.append(settings, "signoffs", signoff("2026-01-06", "PREPARE", " ", 3))
    with pytest.raises(store.StoreError, match="signoff_id is assigned by the store"):
        store.append(settings, "signoffs", {**signoff("2026-01-06", "PREPARE", "ann", 3), "signoff_id": 7})
    with pytest.raises(store.StoreError, match="no column"):
        store.append(settings, "signoffs", {**signoff("2026-01-06", "PREPARE", "ann", 3), "who": "x"})
    with pytest.raises(store.StoreError, match="not a date"):
        store.append(settings, "signoffs", signoff("06/01/2026", "PREPARE", "ann", 3))
    with pytest.raises(store.StoreError, match="unknown kind"):
        store.append(settings, "nothing", {})
    assert store.records(settings, "signoffs") == []


def test_the_database_refuses_update_and_delete_on_sqlite(tmp_path):
    settings = sqlite_settings(tmp_path)
    store.append(settings, "signoffs", signoff("2026-01-06", "PREPARE", "ann", 3))
    with sqlite3.connect(store.sqlite_path(settings)) as con:  # a person with a SQL prompt on the file
        for sql in ('UPDATE signoffs SET "by" = \'mallory\'', "DELETE FROM signoffs"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                con.execute(sql)
    assert [r["by"] for r in store.records(settings, "signoffs")] == ["ann"]


def test_the_database_refuses_update_delete_and_truncate_on_postgresql(pg_settings):
    import psycopg2

    store.append(pg_settings, "signoffs", signoff("2026-01-06", "PREPARE", "ann", 3))
    for sql in ('UPDATE people.signoffs SET "by" = \'mallory\'', "DELETE FROM people.signoffs",
                "TRUNCATE people.signoffs"):
        con = psycopg2.connect(pg_settings.actions_url)
        try:
            with pytest.raises(psycopg2.Error, match="append-only"):
                with con.cursor() as cur:
                    cur.execute(sql)
        finally:
            con.close()
    assert [r["by"] for r in store.records(pg_settings, "signoffs")] == ["ann"]


WRITER = """
import sys
from pathlib import Path
from midoffice.config import Settings
from midoffice.people import store
s = Settings(landing=Path(sys.argv[1]), home=Path(sys.argv[1]) / "home", actions_url=None)
print(store.append(s, "signoffs", {"effective_date": "2026-01-06", "action": "SIGN", "by": "bob", "version": 3}))
"""


def test_a_person_writes_while_a_build_reads(tmp_path):
    """A reader holding a read transaction open (a build reading the store) does not block a
    person appending from another process (WAL), and the reader still sees its own snapshot."""
    settings = sqlite_settings(tmp_path)
    store.append(settings, "signoffs", signoff("2026-01-06", "PREPARE", "ann", 3))
    reader = sqlite3.connect(store.sqlite_path(settings), isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM signoffs").fetchone()[0] == 1
    done = subprocess.run([sys.executable, "-c", WRITER, str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert reader.execute("SELECT count(*) FROM signoffs").fetchone()[0] == 1  # its snapshot
    reader.execute("COMMIT")
    reader.close()
    assert [r["by"] for r in store.records(settings, "signoffs")] == ["ann", "bob"]
    with sqlite3.connect(store.sqlite_path(settings)) as con:  # WAL is a property of the file
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_materialise_gives_a_build_the_records_of_its_date(settings):
    for day, by in (("2026-01-05", "ann"), ("2026-01-06", "bob"), ("2026-01-07", "cy")):
        store.append(settings, "signoffs", signoff(day, "PREPARE", by, 1))
    con = connect_scratch()
    con.execute("CREATE SCHEMA core")
    n = store.materialise(settings, con, "signoffs", up_to_effective_date="2026-01-06", table="core.signoffs")
    assert n == 2
    assert con.execute('SELECT "by", effective_date FROM core.signoffs ORDER BY signoff_id').fetchall() == [
        ("ann", dt.date(2026, 1, 5)), ("bob", dt.date(2026, 1, 6))]
    types = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'signoffs'")
                 .fetchall())
    assert types == dict(store.duckdb_columns("signoffs"))
    # no records yet of a kind still gives the table, typed, empty
    assert store.materialise(settings, con, "signoffs", up_to_effective_date="2025-12-31") == 0
    assert con.execute("SELECT count(*) FROM signoffs").fetchone()[0] == 0


def test_a_kind_is_one_declaration_and_a_new_optional_column_reaches_an_existing_table(tmp_path, monkeypatch):
    settings = sqlite_settings(tmp_path)
    store.append(settings, "signoffs", signoff("2026-01-06", "PREPARE", "ann", 3))
    notes = store.Kind(name="notes", id_column="note_id", columns=(
        store.Column("effective_date", "date"), store.Column("text")))
    grown = store.Kind(name="signoffs", id_column="signoff_id",
                       columns=store.SIGNOFFS.columns + (store.Column("team", required=False),))
    monkeypatch.setitem(store.KINDS, "notes", notes)
    monkeypatch.setitem(store.KINDS, "signoffs", grown)
    assert store.append(settings, "notes", {"effective_date": "2026-01-06", "text": "hello"}) == 1
    store.append(settings, "signoffs", signoff("2026-01-06", "SIGN", "bob", 3, team="MO"))
    assert [(r["by"], r["team"]) for r in store.records(settings, "signoffs")] == [("ann", None), ("bob", "MO")]


def test_backup_is_a_consistent_copy(tmp_path):
    settings = sqlite_settings(tmp_path)
    store.append(settings, "signoffs", signoff("2026-01-06", "PREPARE", "ann", 3))
    copy = store.backup(settings, tmp_path / "backup" / "actions.sqlite")
    restored = Settings(landing=tmp_path, home=tmp_path / "restored", actions_url=None)
    restored.people_dir.mkdir(parents=True)
    copy.rename(store.sqlite_path(restored))
    assert [r["by"] for r in store.records(restored, "signoffs")] == ["ann"]


def test_a_url_that_is_not_postgresql_is_refused(tmp_path):
    settings = Settings(landing=tmp_path, home=tmp_path, actions_url="mysql://x@y/z")
    with pytest.raises(store.StoreError, match="postgresql://"):
        store.records(settings, "signoffs")
