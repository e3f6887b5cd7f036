"""Publication without copying the history: the previous published file brought up to date.

Real files and DuckDB: a home of the shared sample (8 dates, each published through the DAG) is
copied, a date rebuilt and published again, and the published tables compared by checksum with a
publication that copies every mart whole. A reader that still holds the previous file (a child
process with a read-only connection) makes the publication copy the current file instead, and
keeps reading its own version.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from test_crash import table_checksums

pytestmark = pytest.mark.slow

READER = r"""
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print(con.execute("SELECT business_date FROM publication").fetchone()[0], flush=True)
sys.stdin.readline()  # hold the file until told
print(con.execute("SELECT count(*) FROM ops_trade_recon").fetchone()[0], flush=True)
"""


@pytest.fixture
def home(sample_run, tmp_path):
    from midoffice.config import settings_from

    home = tmp_path / "home"
    shutil.copytree(sample_run["home"], home)
    return settings_from(sample_run["landing"], home)


def _publish_again(settings, day: str) -> dict:
    from midoffice.publish import publish
    from midoffice.warehouse import build_warehouse

    build_warehouse(settings, day, f"test_publish__{day}")
    return publish(settings, day, f"test_publish__{day}")


def test_a_publication_brings_the_previous_file_up_to_date_instead_of_copying(home, sample_run):
    from midoffice.publish import publish

    previous = home.warehouse_dir / "marts.previous.duckdb"
    assert previous.is_file()  # the sample's daily publications left the one before the last
    day = sample_run["dates"][3]
    summary = _publish_again(home, day)
    assert summary["mode"] == "previous"
    # the previous file lacked the last date's publication and the rebuilt date
    assert summary["dates_replaced"] == sorted({day, sample_run["dates"][-1]})
    assert previous.is_file() and not previous.samefile(home.published_db)
    assert not list(home.warehouse_dir.glob("marts.next-*"))
    brought_up_to_date = table_checksums(home.published_db)

    previous.unlink()
    home.published_db.unlink()
    whole = publish(home, day, "test_publish__whole")
    assert whole["mode"] == "whole"
    assert table_checksums(home.published_db) == brought_up_to_date


def test_a_reader_holding_the_previous_file_makes_the_publication_copy(home, sample_run):
    previous = home.warehouse_dir / "marts.previous.duckdb"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(previous)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        held_date = reader.stdout.readline().strip()
        assert held_date == sample_run["dates"][-2]
        summary = _publish_again(home, sample_run["dates"][-1])
        assert summary["mode"] == "copy"
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert int(reader.stdout.readline()) > 0  # its version is still whole and readable
    finally:
        reader.stdin.close()
        reader.wait(timeout=60)
    assert reader.returncode == 0
    # nobody holds the file published before this one: the next publication starts from it
    assert _publish_again(home, sample_run["dates"][-1])["mode"] == "previous"


def test_a_previous_file_that_is_the_published_one_is_never_written(home, sample_run):
    """A publication killed between linking the current file as previous and replacing it."""
    previous = home.warehouse_dir / "marts.previous.duckdb"
    previous.unlink()
    os.link(home.published_db, previous)
    before = table_checksums(home.published_db)
    summary = _publish_again(home, sample_run["dates"][-1])
    assert "marts.previous.duckdb" in summary["removed_leftovers"] and summary["mode"] == "copy"
    assert table_checksums(home.published_db) == before
