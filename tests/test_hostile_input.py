"""Hostile input: every malformed, drifted, oversized or malicious delivery is refused or
quarantined with a clear message, within the memory limit, and the other feeds still load.

Real files, real DuckDB, the real `ingest_feed` on a hand-made landing (no Airflow): each case
copies one generated business date, breaks one thing in it the way a sender (or an attacker)
would, and checks what ingest made of it against what was done to the file. Every case runs with
a 256 MB DuckDB memory limit. Nothing here is mocked.

What each case proves is listed in docs/RELIABILITY.md.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REPO, generate_landing

DAY = "2026-03-02"
MEMORY_LIMIT = "256MB"
REFERENCE_FEEDS = ("books", "instruments", "clients")  # what the other feeds' references need
RULE_NAMES_EXTRA = {"malformed_record", "duplicate_key"}
SQL_VALUES = (
    "'); DROP TABLE core.trades; --",
    "x' OR '1'='1",
    "\"; ATTACH '/etc/passwd' AS p; --",
    "$$; COPY core.trades TO '/tmp/stolen.csv'; $$",
    "Robert'); DELETE FROM main.risk_exposure WHERE (''='",
)


# --- a landing date to break, one copy per case ------------------------------------------------

def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Delivery:
    """One business date in a landing folder of its own, and a home to ingest it into."""

    landing: Path
    home: Path
    business_date: str = DAY

    @property
    def folder(self) -> Path:
        return self.landing / self.business_date

    @property
    def settings(self):
        from midoffice.config import settings_from

        return dataclasses.replace(settings_from(self.landing, self.home), duckdb_memory_limit=MEMORY_LIMIT)

    def file(self, feed: str) -> Path:
        from midoffice.contracts import get_feed

        return self.folder / get_feed(feed).file

    def manifest(self) -> dict:
        return json.loads((self.folder / "_manifest.json").read_text())

    def save_manifest(self, manifest: dict) -> None:
        (self.folder / "_manifest.json").write_text(json.dumps(manifest))

    def set_entry(self, feed: str, **fields) -> None:
        manifest = self.manifest()
        manifest["feeds"][feed].update(fields)
        self.save_manifest(manifest)

    def deliver(self, feed: str, data: bytes, rows: int) -> None:
        """Replace a feed's file as the sender would: the manifest matches the new file."""
        self.file(feed).write_bytes(data)
        self.set_entry(feed, rows=rows, sha256=_sha(self.file(feed)))

    def ingest(self, feed: str) -> dict:
        from midoffice.ingest import ingest_feed

        return ingest_feed(self.settings, self.business_date, feed, "hostile-test")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    """One generated date (300 trades) and a home where its reference feeds are loaded."""
    root = tmp_path_factory.mktemp("hostile")
    landing = generate_landing(root / "landing", DAY, 1, 300, seed=21)
    first = Delivery(landing, root / "home")
    for feed in REFERENCE_FEEDS:
        assert first.ingest(feed)["status"] == "LOADED"
    return {"landing": landing, "home": root / "home"}


def _copy(base: dict, root: Path, with_references: bool = True) -> Delivery:
    landing = root / "landing"
    landing.mkdir(parents=True)
    shutil.copytree(base["landing"] / DAY, landing / DAY)
    shutil.copy(base["landing"] / "_SAMPLE_DATA", landing / "_SAMPLE_DATA")
    home = root / "home"
    if with_references:
        shutil.copytree(base["home"] / "lake", home / "lake")
    return Delivery(landing, home)


@pytest.fixture
def delivery(base, tmp_path) -> Delivery:
    return _copy(base, tmp_path)


# --- reading the files back, independently of the pipeline ----------------------------------

def csv_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")


def csv_records(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def typed(feed_name: str, record: dict) -> dict:
    """A record as the contract types it, parsed here in plain Python."""
    from midoffice.contracts import get_feed

    out = {}
    for col in get_feed(feed_name).columns:
        v = record[col.name]
        if v in ("", None):
            out[col.name] = None
        elif col.type == "DOUBLE":
            out[col.name] = float(v)
        elif col.type == "BIGINT":
            out[col.name] = int(v)
        elif col.type == "DATE":
            out[col.name] = v if isinstance(v, date) else date.fromisoformat(v)
        elif col.type == "TIMESTAMP":
            out[col.name] = datetime.strptime(v, "%Y-%m-%dT%H:%M:%SZ")
        else:
            out[col.name] = v
    return out


def staged_rows(settings, feed: str) -> list[dict]:
    return pq.read_table(settings.staged_partition(feed, DAY)).to_pylist()


def quarantined(settings, feed: str) -> list[dict]:
    path = settings.quarantine_partition(feed, DAY)
    return pq.read_table(path).to_pylist() if path.exists() else []


def assert_accounted(settings, result: dict) -> None:
    """Nothing lost: a read file's records are loaded or quarantined; a refused file leaves nothing."""
    from midoffice.contracts import get_feed

    feed = result["feed"]
    staged = settings.staged_partition(feed, result["business_date"])
    held = settings.quarantine_partition(feed, result["business_date"])
    if result["status"] == "LOADED":
        assert result["received_rows"] == result["expected_rows"], result
        assert result["received_rows"] == result["loaded_rows"] + result["quarantined_rows"], result
        assert result["conservation_ok"]
        assert pq.read_metadata(staged).num_rows == result["loaded_rows"]
        assert pq.read_metadata(held).num_rows == result["quarantined_rows"]
        rules = {r["rule"] for r in quarantined(settings, feed)}
        names = {f"{c.name}:{k}" for c in get_feed(feed).columns
                 for k in ("type", "required", "values", "range", "pattern", "ref")}
        names |= RULE_NAMES_EXTRA | {r.name for r in get_feed(feed).rules}
        assert rules <= names, rules - names
    else:
        assert result["status"] == "FAILED"
        # Refused whole: nothing received into the pipeline, nothing loaded, nothing quarantined.
        assert result["received_rows"] is None
        assert result["loaded_rows"] == result["quarantined_rows"] == 0
        assert not staged.exists() and not held.exists(), "a refused file left a partition behind"
        message = result["error"]  # names the date, the feed (or its manifest), the file and the cause
        assert result["business_date"] in message and (feed in message or "_manifest" in message), message
    assert not [p for p in settings.lake.rglob(".tmp-*")], "temporary files left in the lake"


def refused(result: dict, *fragments: str) -> None:
    assert result["status"] == "FAILED", result
    for fragment in fragments:
        assert fragment in result["error"], (fragment, result["error"])


# --- malformed CSV ----------------------------------------------------------------------------

def test_unterminated_quote_mid_file_fails_the_file_and_says_which_line(delivery):
    lines = csv_lines(delivery.file("trades"))
    parts = lines[5].split(",")
    parts[14] = '"' + parts[14]  # physical line 6: the venue opens a quote that never closes
    lines[5] = ",".join(parts)
    delivery.deliver("trades", "\n".join(lines).encode(), rows=len(lines) - 2)
    result = delivery.ingest("trades")
    # The reader cannot tell where the sender meant the value to end: refusing beats guessing.
    refused(result, "trades.csv", "record count mismatch", "unterminated quote on line 6")
    assert_accounted(delivery.settings, result)


def test_unterminated_quote_on_the_last_line_quarantines_that_line(delivery):
    lines = csv_lines(delivery.file("trades"))
    last = len(lines) - 2  # the file ends with a newline
    parts = lines[last].split(",")
    parts[14] = '"' + parts[14]
    lines[last] = ",".join(parts)
    delivery.deliver("trades", "\n".join(lines).encode(), rows=last)
    result = delivery.ingest("trades")
    assert result["status"] == "LOADED"
    q = quarantined(delivery.settings, "trades")
    assert [(r["line"], r["rule"]) for r in q] == [(last + 1, "malformed_record")]
    assert "unterminated quote" in q[0]["detail"]
    assert_accounted(delivery.settings, result)


def test_wrong_field_counts_quarantine_exactly_those_lines(delivery):
    lines = csv_lines(delivery.file("trades"))
    lines[3] += ",an extra field"                      # physical line 4
    lines[7] = ",".join(lines[7].split(",")[:-2])      # physical line 8
    delivery.deliver("trades", "\n".join(lines).encode(), rows=len(lines) - 2)
    result = delivery.ingest("trades")
    assert result["status"] == "LOADED"
    q = quarantined(delivery.settings, "trades")
    assert [(r["line"], r["rule"]) for r in q] == [(4, "malformed_record"), (8, "malformed_record")]
    assert "TOO MANY COLUMNS" in q[0]["detail"] and "MISSING COLUMNS" in q[1]["detail"]
    assert q[0]["raw_record"] == lines[3]
    # Everything else loads, value for value as the file says.
    expected = [typed("trades", r) for i, r in enumerate(csv_records("\n".join(lines)), start=2) if i not in (4, 8)]
    assert staged_rows(delivery.settings, "trades") == expected
    assert_accounted(delivery.settings, result)


def test_a_10_mb_line_is_quarantined_and_the_rest_loads(delivery):
    lines = csv_lines(delivery.file("trades"))
    parts = lines[4].split(",")
    parts[14] = "V" * 10_000_000
    lines[4] = ",".join(parts)
    delivery.deliver("trades", "\n".join(lines).encode(), rows=len(lines) - 2)
    result = delivery.ingest("trades")
    assert result["status"] == "LOADED" and result["loaded_rows"] == result["expected_rows"] - 1
    q = quarantined(delivery.settings, "trades")
    assert [(r["line"], r["rule"]) for r in q] == [(5, "malformed_record")]
    assert "LINE SIZE OVER MAXIMUM" in q[0]["detail"]
    assert len(q[0]["raw_record"]) <= 100_000  # the raw record is kept, cut to a bounded size
    assert_accounted(delivery.settings, result)


def test_invalid_utf8_in_a_record_quarantines_that_record(delivery):
    raw = delivery.file("settlements").read_bytes().split(b"\n")
    parts = raw[6].split(b",")
    parts[-1] = b"CUST\xff\xfeODIAN"  # physical line 7: bytes that are not UTF-8
    raw[6] = b",".join(parts)
    delivery.deliver("settlements", b"\n".join(raw), rows=len(raw) - 2)
    result = delivery.ingest("settlements")
    assert result["status"] == "LOADED"
    q = quarantined(delivery.settings, "settlements")
    assert [(r["line"], r["rule"]) for r in q] == [(7, "malformed_record")]
    assert "INVALID ENCODING" in q[0]["detail"]
    assert_accounted(delivery.settings, result)


def test_invalid_utf8_in_the_header_fails_the_file(delivery):
    raw = delivery.file("settlements").read_bytes()
    delivery.deliver("settlements", b"settlement_\xffid" + raw[len(b"settlement_id"):], rows=delivery.manifest()["feeds"]["settlements"]["rows"])
    result = delivery.ingest("settlements")
    refused(result, "settlements.csv", "header is not valid UTF-8")
    assert_accounted(delivery.settings, result)


def test_a_nul_byte_in_a_record_quarantines_it(delivery):
    raw = delivery.file("trades").read_bytes().split(b"\n")
    parts = raw[9].split(b",")
    parts[14] = b"X\x00PAR"
    raw[9] = b",".join(parts)
    delivery.deliver("trades", b"\n".join(raw), rows=len(raw) - 2)
    result = delivery.ingest("trades")
    assert result["status"] == "LOADED"
    q = quarantined(delivery.settings, "trades")
    assert [(r["line"], r["rule"], r["detail"]) for r in q] == [(10, "malformed_record", "NUL character in the record")]
    assert_accounted(delivery.settings, result)


@pytest.mark.parametrize("content, rows, cause", [
    (b"", 0, "empty file"),
    (b"\n\n", 0, "empty file"),
])
def test_an_empty_file_fails_the_feed(delivery, content, rows, cause):
    delivery.deliver("gl_entries", content, rows=rows)
    result = delivery.ingest("gl_entries")
    refused(result, "gl_entries.csv", cause)
    assert_accounted(delivery.settings, result)


def test_a_header_only_file_is_an_empty_delivery_not_an_error(delivery):
    header = csv_lines(delivery.file("gl_entries"))[0]
    delivery.deliver("gl_entries", (header + "\n").encode(), rows=0)
    result = delivery.ingest("gl_entries")
    assert result["status"] == "LOADED" and result["received_rows"] == 0
    assert_accounted(delivery.settings, result)


# --- JSON Lines ----------------------------------------------------------------------------------

def test_json_lines_with_nested_garbage_quarantine_each_bad_line(delivery):
    lines = csv_lines(delivery.file("clients"))
    good = json.loads(lines[3])
    broken = {
        4: json.dumps({**good, "segment": {"nested": [1, {"x": None}]}}),   # object where text is due
        5: "[1, 2, 3]",                                                       # not an object
        6: '{"client_id": "C1", "legal_name": ',                              # truncated
        7: "null",
        8: json.dumps({**good, "extra": 1}),                                  # a key the contract lacks
        9: json.dumps({**good, "legal_name": "x" * 3_000_000}),               # over the line limit
        10: "[" * 200_000 + "]" * 200_000,                                    # deep nesting
        11: '{"client_id":' + "[" * 100_000 + "]" * 100_000 + "}",
        12: json.dumps({**good, "country": ["U", "S"]}),
    }
    for line, text in broken.items():
        lines[line - 1] = text
    delivery.deliver("clients", "\n".join(lines).encode(), rows=len(lines) - 1)
    result = delivery.ingest("clients")
    assert result["status"] == "LOADED"
    q = {r["line"]: r for r in quarantined(delivery.settings, "clients")}
    assert set(q) == set(broken), sorted(q)
    assert q[4]["rule"] == "segment:type" and q[12]["rule"] == "country:type"
    assert all(q[n]["rule"] == "malformed_record" for n in (5, 6, 7, 8, 9, 10, 11))
    assert "extra" in q[8]["detail"] and "LINE SIZE OVER MAXIMUM" in q[9]["detail"]
    assert_accounted(delivery.settings, result)


# --- Parquet ----------------------------------------------------------------------------------

def test_a_truncated_parquet_file_fails_the_feed(delivery):
    data = delivery.file("prices").read_bytes()
    delivery.deliver("prices", data[: len(data) // 2], rows=delivery.manifest()["feeds"]["prices"]["rows"])
    result = delivery.ingest("prices")
    refused(result, "prices.parquet", "unreadable Parquet")
    assert_accounted(delivery.settings, result)


def _write_bomb(path: Path, records: int, width: int) -> None:
    """Millions of one long string, dictionary-encoded: a few hundred KB that decode to GB."""
    import numpy as np

    value = pa.array(["BOMB" + "Z" * width])
    day = (date.fromisoformat(DAY) - date(1970, 1, 1)).days
    chunk = 1_000_000
    writer = None
    try:
        for start in range(0, records, chunk):
            n = min(chunk, records - start)
            table = pa.table({
                "price_date": pa.array(np.full(n, day, dtype="int32")).cast(pa.date32()),
                "instrument_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype="int32")), value),
                "close_price": pa.array(np.full(n, 1.5)),
            })
            writer = writer or pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


BOMB_DRIVER = r"""
import dataclasses, json, resource, sys
from midoffice.config import settings_from
from midoffice.ingest import ingest_feed
landing, home, day, limit = sys.argv[1:5]
settings = dataclasses.replace(settings_from(landing, home), duckdb_memory_limit=limit)
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
results, peaks = [], [peak()]
for feed in ("instruments", "prices", "fx_rates"):
    results.append(ingest_feed(settings, day, feed, "bomb-test"))
    peaks.append(peak())
print(json.dumps({"results": results, "peak_rss_kb": peaks}))
"""


def test_a_parquet_decompression_bomb_is_refused_within_the_memory_limit(base, tmp_path):
    delivery = _copy(base, tmp_path, with_references=False)
    records, width = 3_000_000, 1_000
    _write_bomb(delivery.file("prices"), records, width)
    delivery.set_entry("prices", rows=records, sha256=_sha(delivery.file("prices")))
    assert delivery.file("prices").stat().st_size < 5_000_000  # a few MB on disk, ~3 GB decoded
    # A process of its own, so that its peak memory is its own; the timeout bounds its time.
    proc = subprocess.run(
        [sys.executable, "-c", BOMB_DRIVER, str(delivery.landing), str(delivery.home), DAY, MEMORY_LIMIT],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MIDOFFICE"))},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    instruments, prices, fx_rates = out["results"]
    refused(prices, "prices.parquet", "refused unread", "decode to")
    assert instruments["status"] == fx_rates["status"] == "LOADED"  # the other feeds still load
    for result in out["results"]:
        assert_accounted(delivery.settings, result)
    # The process's peak while the bomb was examined grew by no more than the DuckDB memory limit
    # plus slack (Python, pyarrow and DuckDB themselves are already loaded before it): its 3 GB
    # never came near memory. Peaks are high-water marks: [start, after instruments, after
    # prices, after fx_rates].
    peaks = out["peak_rss_kb"]
    assert peaks[2] - peaks[1] < 512 * 1024, f"peak RSS grew from {peaks[1]} to {peaks[2]} KB on the bomb: {peaks}"


def test_a_file_that_needs_more_than_the_memory_limit_fails_with_a_message(delivery):
    # DuckDB's out-of-memory error, wherever it strikes, is a file-level failure with its cause,
    # never a crashed task (here an ordinary positions file and a 16 MB limit).
    from midoffice.ingest import ingest_feed

    tight = dataclasses.replace(delivery.settings, duckdb_memory_limit="16MB")
    result = ingest_feed(tight, DAY, "positions", "hostile-test")
    refused(result, "positions.csv", "cannot be processed within the ingest's memory limit (15.2 MiB)", "Out of Memory")
    assert_accounted(tight, result)


def _rewrite_parquet(delivery: Delivery, table: pa.Table) -> None:
    pq.write_table(table, delivery.file("prices"))
    delivery.set_entry("prices", rows=table.num_rows, sha256=_sha(delivery.file("prices")))


@pytest.mark.parametrize("column, new_type", [
    ("close_price", pa.string()),   # numbers as text
    ("close_price", pa.float32()),  # a silent loss of precision
    ("price_date", pa.timestamp("us")),
])
def test_a_retyped_parquet_column_fails_the_file(delivery, column, new_type):
    table = pq.read_table(delivery.file("prices"))
    i = table.schema.get_field_index(column)
    _rewrite_parquet(delivery, table.set_column(i, column, table[column].cast(new_type)))
    result = delivery.ingest("prices")
    refused(result, "prices.parquet", "retyped columns", f"{column} is {new_type}")
    assert_accounted(delivery.settings, result)


def test_a_parquet_column_of_whole_numbers_is_refused_not_read_as_prices(delivery):
    # Prices sent as integer cents: every value would parse, and every value would be wrong.
    table = pq.read_table(delivery.file("prices"))
    cents = pa.array([round(v * 100) for v in table["close_price"].to_pylist()], pa.int64())
    _rewrite_parquet(delivery, table.set_column(2, "close_price", cents))
    result = delivery.ingest("prices")
    refused(result, "retyped columns", "close_price is int64")
    assert_accounted(delivery.settings, result)


def test_a_nested_parquet_column_fails_the_file(delivery):
    table = pq.read_table(delivery.file("prices"))
    nested = pa.array([{"id": v} for v in table["instrument_id"].to_pylist()])
    _rewrite_parquet(delivery, table.set_column(1, "instrument_id", nested))
    refused(delivery.ingest("prices"), "retyped columns", "instrument_id is struct")


def test_reordered_parquet_columns_are_read_by_name(delivery):
    original = pq.read_table(delivery.file("prices"))
    _rewrite_parquet(delivery, original.select(["close_price", "instrument_id", "price_date"]))
    result = delivery.ingest("prices")
    assert result["status"] == "LOADED" and "columns reordered" in result["schema_note"]
    assert staged_rows(delivery.settings, "prices") == original.to_pylist()
    assert_accounted(delivery.settings, result)


@pytest.mark.parametrize("change, cause", [
    (lambda t: t.append_column("source", pa.array(["x"] * t.num_rows)), "unexpected ['source']"),
    (lambda t: t.drop(["close_price"]), "missing ['close_price']"),
])
def test_extra_or_missing_parquet_columns_fail_the_file(delivery, change, cause):
    _rewrite_parquet(delivery, change(pq.read_table(delivery.file("prices"))))
    result = delivery.ingest("prices")
    refused(result, "wrong columns", cause)
    assert_accounted(delivery.settings, result)


# --- schema drift in CSV ------------------------------------------------------------------------

def _csv_with(delivery: Delivery, feed: str, transform) -> list[dict]:
    records = csv_records(delivery.file(feed).read_text())
    header, rows = transform(list(records[0].keys()), records)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    delivery.deliver(feed, out.getvalue().encode(), rows=len(rows))
    return records


def test_an_extra_csv_column_fails_the_file(delivery):
    _csv_with(delivery, "trades", lambda h, rows: (h + ["desk_note"], [{**r, "desk_note": "n"} for r in rows]))
    result = delivery.ingest("trades")
    refused(result, "trades.csv", "wrong columns", "unexpected ['desk_note']")
    assert_accounted(delivery.settings, result)


def test_a_missing_csv_column_fails_the_file(delivery):
    _csv_with(delivery, "trades", lambda h, rows: ([c for c in h if c != "venue"], rows))
    result = delivery.ingest("trades")
    refused(result, "trades.csv", "wrong columns", "missing ['venue']")
    assert_accounted(delivery.settings, result)


def test_reordered_csv_columns_are_read_by_name_and_noted(delivery):
    records = _csv_with(delivery, "trades", lambda h, rows: (list(reversed(h)), rows))
    result = delivery.ingest("trades")
    assert result["status"] == "LOADED" and "columns reordered" in result["schema_note"]
    assert staged_rows(delivery.settings, "trades") == [typed("trades", r) for r in records]
    assert_accounted(delivery.settings, result)


def test_a_retyped_csv_column_quarantines_every_record_and_fails_the_gate(delivery):
    from midoffice.stages import validate_and_gate

    records = _csv_with(delivery, "trades", lambda h, rows: (h, [{**r, "quantity": "abc"} for r in rows]))
    result = delivery.ingest("trades")
    assert result["status"] == "LOADED" and result["loaded_rows"] == 0
    assert result["rules"] == {"quantity:type": len(records)}
    assert_accounted(delivery.settings, result)
    gate = validate_and_gate(delivery.settings, DAY, "trades", "hostile-test")
    assert gate["gate"] == "FAIL" and "quarantined" in gate["reason"], gate


# --- the manifest and paths outside the landing ----------------------------------------------------

def _outside_copy(delivery: Delivery, tmp_path: Path, feed: str) -> Path:
    """A well-formed copy of the feed's file somewhere else on the machine."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    target = elsewhere / delivery.file(feed).name
    shutil.copy(delivery.file(feed), target)
    return target


def test_a_manifest_path_climbing_out_of_the_landing_is_refused(delivery, tmp_path):
    outside = _outside_copy(delivery, tmp_path, "gl_entries")
    relative = os.path.relpath(outside, delivery.folder)
    assert relative.startswith("..")
    delivery.set_entry("gl_entries", file=relative)  # the checksum matches: only the path is wrong
    result = delivery.ingest("gl_entries")
    refused(result, "outside the landing folder", "'..'")
    assert_accounted(delivery.settings, result)


def test_an_absolute_manifest_path_is_refused(delivery, tmp_path):
    outside = _outside_copy(delivery, tmp_path, "gl_entries")
    delivery.set_entry("gl_entries", file=str(outside))
    result = delivery.ingest("gl_entries")
    refused(result, "outside the landing folder", "absolute path")
    assert_accounted(delivery.settings, result)


def test_a_nul_byte_in_a_manifest_path_is_refused(delivery):
    delivery.set_entry("gl_entries", file="gl_entries.csv\x00.txt")
    refused(delivery.ingest("gl_entries"), "NUL byte")


def test_a_symlink_pointing_outside_the_landing_is_refused(delivery, tmp_path):
    outside = _outside_copy(delivery, tmp_path, "positions")
    delivery.file("positions").unlink()
    delivery.file("positions").symlink_to(outside)
    result = delivery.ingest("positions")
    refused(result, "outside the landing folder", "symlink", str(outside))
    assert_accounted(delivery.settings, result)


def test_a_symlinked_date_folder_pointing_outside_is_refused(delivery, tmp_path):
    moved = tmp_path / "elsewhere-date"
    shutil.move(delivery.folder, moved)
    delivery.folder.symlink_to(moved, target_is_directory=True)
    result = delivery.ingest("targets")
    refused(result, "outside the landing folder", "symlink")
    assert_accounted(delivery.settings, result)


def test_a_named_pipe_in_place_of_a_file_is_refused_without_reading_it(delivery):
    # Reading a FIFO (or a device) to hash it would block the task forever.
    delivery.file("limits").unlink()
    os.mkfifo(delivery.file("limits"))
    result = delivery.ingest("limits")
    refused(result, "limits.csv", "not a regular file")
    assert_accounted(delivery.settings, result)


@pytest.mark.parametrize("fields, cause", [
    ({"rows": "300"}, "rows must be a whole number"),
    ({"rows": 12.0}, "rows must be a whole number"),
    ({"rows": -1}, "rows must be a whole number"),
    ({"sha256": "'; DROP TABLE core.trades; --"}, "sha256 must be 64 hex digits"),
    ({"file": ["targets.csv"]}, "file must be a non-empty string"),
])
def test_an_invalid_manifest_entry_is_refused(delivery, fields, cause):
    delivery.set_entry("targets", **fields)
    result = delivery.ingest("targets")
    refused(result, "manifest entry invalid", cause)
    assert_accounted(delivery.settings, result)


def test_a_manifest_that_names_a_feed_twice_is_refused(delivery):
    """Two entries for trades (the second with another file's checksum): json.loads kept the last
    one silently, so which delivery was meant depended on the parser."""
    text = (delivery.folder / "_manifest.json").read_text()
    entry = json.dumps(delivery.manifest()["feeds"]["trades"] | {"rows": 1, "sha256": "0" * 64})
    (delivery.folder / "_manifest.json").write_text(text.replace('"feeds": {', '"feeds": {"trades": ' + entry + ", ", 1))
    assert text != (delivery.folder / "_manifest.json").read_text()
    for feed in ("trades", "books"):  # the manifest as a whole is refused, for every feed
        result = delivery.ingest(feed)
        refused(result, "_manifest", "manifest names 'trades' more than once")
        assert_accounted(delivery.settings, result)


def test_a_deeply_nested_manifest_is_refused(delivery):
    (delivery.folder / "_manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    refused(delivery.ingest("targets"), "manifest unreadable")


# --- DuckDB's own file access -----------------------------------------------------------------

def test_the_ingest_connection_reads_only_the_landing_date_and_writes_only_the_lake(delivery, tmp_path):
    from midoffice.duck import connect
    from midoffice.ingest import _restrict_file_access

    settings = delivery.settings
    settings.staged.mkdir(parents=True, exist_ok=True)
    secret = tmp_path / "not-for-duckdb.csv"
    secret.write_text("a,b\n1,2\n")
    sibling = delivery.landing / "2026-03-03"
    sibling.mkdir()
    shutil.copy(secret, sibling / "books.csv")
    (delivery.folder / "link.csv").symlink_to(secret)
    con = connect(settings)
    try:
        _restrict_file_access(con, settings, delivery.folder.resolve())
        # what ingest needs: the date's files, the lake
        assert con.execute(f"SELECT count(*) FROM read_csv('{delivery.file('books')}')").fetchone()[0] > 0
        con.execute(f"COPY (SELECT 1 AS x) TO '{settings.staged / 'probe.parquet'}' (FORMAT parquet)")
        # what it must never do
        for sql in [
            f"SELECT * FROM read_csv('{secret}')",
            f"SELECT * FROM read_csv('{sibling / 'books.csv'}')",               # another date's folder
            f"SELECT * FROM read_csv('{delivery.folder / 'link.csv'}')",        # a symlink out
            f"SELECT * FROM read_csv('{delivery.folder}/../2026-03-03/books.csv')",
            "SELECT * FROM read_text('/etc/passwd')",
            f"COPY (SELECT 1) TO '{tmp_path / 'exfiltrated.csv'}'",
            f"ATTACH '{tmp_path / 'other.duckdb'}' AS other",
            "SELECT * FROM glob('/*')",
            "INSTALL httpfs",
            "LOAD httpfs",
        ]:
            with pytest.raises(duckdb.Error, match="(?i)permission|disabled"):
                con.execute(sql)
        for sql in ["SET enable_external_access = true", "SET allowed_directories = ['/']",
                    "SET memory_limit = '100GB'", "RESET lock_configuration"]:
            with pytest.raises(duckdb.Error, match="(?i)locked"):
                con.execute(sql)
    finally:
        con.close()
    assert not (tmp_path / "exfiltrated.csv").exists() and not (tmp_path / "other.duckdb").exists()


def test_the_build_connection_reaches_no_file_outside_the_lake_and_the_warehouse(sample_run, tmp_path, monkeypatch):
    """A mart's SQL that reads a file elsewhere (here: one planted beside the home) fails inside
    DuckDB, and the date's marts keep their previous rows."""
    from dataclasses import replace

    import midoffice.warehouse as warehouse
    from midoffice.config import settings_from

    home = tmp_path / "home"
    shutil.copytree(sample_run["home"], home)
    settings = settings_from(sample_run["landing"], home)
    secret = tmp_path / "not-for-duckdb.csv"
    secret.write_text("a\n1\n")
    real = warehouse.load_models()
    hostile = [replace(m, sql=f"SELECT * FROM ({m.sql}) WHERE (SELECT count(*) FROM read_csv('{secret}')) > 0")
               if m.name == "dq_feed_health" else m for m in real]
    monkeypatch.setattr(warehouse, "load_models", lambda: hostile)
    day = sample_run["dates"][-1]
    before = _mart_rows(settings.build_db, "dq_feed_health", day)
    with pytest.raises(duckdb.Error, match="(?i)permission|disabled"):
        warehouse.build_warehouse(settings, day, "hostile-mart")
    assert _mart_rows(settings.build_db, "dq_feed_health", day) == before


def _mart_rows(db, mart: str, day: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT * EXCLUDE (loaded_at) FROM {mart} WHERE business_date = ? ORDER BY ALL",
                           [day]).fetchall()
    finally:
        con.close()


# --- SQL-looking values everywhere --------------------------------------------------------------

def test_sql_looking_values_in_every_text_field_are_only_ever_data(delivery):
    from midoffice.contracts import get_feed

    text_cols = [c.name for c in get_feed("trades").columns if c.type == "VARCHAR"]

    def poison(header, rows):
        rows = [dict(r) for r in rows]
        for i, r in enumerate(rows[1:3]):          # lines 3-4: every text field is SQL
            for c in text_cols:
                r[c] = SQL_VALUES[i % len(SQL_VALUES)]
        for i, r in enumerate(rows[10:40]):        # free-text fields with no rule: these load
            r["trader_id"] = SQL_VALUES[i % len(SQL_VALUES)]
            r["venue"] = SQL_VALUES[(i + 1) % len(SQL_VALUES)]
        return header, rows

    records = _csv_with(delivery, "trades", poison)
    sent = csv_records(delivery.file("trades").read_text())
    result = delivery.ingest("trades")
    assert result["status"] == "LOADED"
    q = quarantined(delivery.settings, "trades")
    assert [r["line"] for r in q] == [3, 4]
    for r in q:  # kept verbatim as the sender's text (the raw record is the CSV line, re-quoted)
        assert next(csv.reader([r["raw_record"]])) == list(sent[r["line"] - 2].values())
    loaded = staged_rows(delivery.settings, "trades")
    assert loaded == [typed("trades", r) for i, r in enumerate(sent) if i not in (1, 2)]
    assert {r["trader_id"] for r in loaded} >= set(SQL_VALUES)
    assert len(records) == result["received_rows"]
    assert_accounted(delivery.settings, result)


# --- several hostile files at once: the rest of the date still loads --------------------------------

def test_one_date_with_many_hostile_files_loads_every_other_feed(base, tmp_path):
    from midoffice.contracts import ingest_order

    delivery = _copy(base, tmp_path, with_references=False)
    # trades: an unterminated quote mid-file
    lines = csv_lines(delivery.file("trades"))
    lines[20] = lines[20].replace(",", ',"', 1)
    delivery.deliver("trades", "\n".join(lines).encode(), rows=len(lines) - 2)
    # clients: two garbage lines
    lines = csv_lines(delivery.file("clients"))
    lines[2], lines[3] = '{"client_id": {"$ne": null}}', "\x00\x01\x02"
    delivery.deliver("clients", "\n".join(lines).encode(), rows=len(lines) - 1)
    # prices: truncated
    data = delivery.file("prices").read_bytes()
    delivery.deliver("prices", data[:1000], rows=delivery.manifest()["feeds"]["prices"]["rows"])
    # settlements: invalid UTF-8 and a short line
    raw = delivery.file("settlements").read_bytes().split(b"\n")
    raw[1] = raw[1] + b"\xc3\x28"
    raw[2] = b",".join(raw[2].split(b",")[:3])
    delivery.deliver("settlements", b"\n".join(raw), rows=len(raw) - 2)
    # gl_entries: a manifest path out of the landing
    delivery.set_entry("gl_entries", file="../../gl_entries.csv")
    # positions: a symlink out of the landing
    outside = _outside_copy(delivery, tmp_path, "positions")
    delivery.file("positions").unlink()
    delivery.file("positions").symlink_to(outside)
    # client_activity: a 10 MB line
    lines = csv_lines(delivery.file("client_activity"))
    lines[1] = ",".join(lines[1].split(",")[:-1] + ["N" * 10_000_000])
    delivery.deliver("client_activity", "\n".join(lines).encode(), rows=len(lines) - 2)
    # fx_rates: empty
    delivery.deliver("fx_rates", b"", rows=0)

    results = {feed: delivery.ingest(feed) for feed in ingest_order()}
    for result in results.values():
        assert_accounted(delivery.settings, result)
    status = {feed: r["status"] for feed, r in results.items()}
    assert {f for f, s in status.items() if s == "FAILED"} == {"trades", "prices", "gl_entries", "positions", "fx_rates"}
    for feed in ("books", "instruments", "limits", "targets"):  # untouched: loaded whole
        assert results[feed]["quarantined_rows"] == 0 and results[feed]["loaded_rows"] == results[feed]["expected_rows"]
    assert results["clients"]["rules"].get("malformed_record") == 2
    assert results["settlements"]["rules"].get("malformed_record") == 2
    assert results["client_activity"]["rules"].get("malformed_record") == 1


def test_a_file_read_in_parallel_keeps_its_records_in_file_order(delivery):
    """A file large enough for DuckDB to read in several chunks at once (~45 MB, 300,000 records):
    the staged records are in the file's order and a quarantined record names its own line.
    Ingest numbers records by the order of the table it read them into (not by a window)."""
    lines = csv_lines(delivery.file("trades"))
    header, body = lines[0], [x for x in lines[1:] if x]
    copies = 1_000
    records = [f"{r.split(',', 1)[0]}-{k:04d},{r.split(',', 1)[1]}" for k in range(copies) for r in body]
    bad = {7: "version", len(records) // 2 + 3: "quantity", len(records) - 1: "price"}  # 0-based records
    column = {c: i for i, c in enumerate(header.split(","))}
    for i, col in bad.items():
        parts = records[i].split(",")
        parts[column[col]] = "not-a-number"
        records[i] = ",".join(parts)
    delivery.deliver("trades", ("\n".join([header, *records]) + "\n").encode(), rows=len(records))
    settings = dataclasses.replace(delivery.settings, duckdb_memory_limit="1GB")
    from midoffice.ingest import ingest_feed

    result = ingest_feed(settings, DAY, "trades", "hostile-test")
    assert result["status"] == "LOADED", result
    q = quarantined(settings, "trades")
    assert [(r["line"], r["rule"]) for r in q] == [(i + 2, f"{c}:type") for i, c in sorted(bad.items())]
    assert [r["raw_record"] for r in q] == [records[i] for i in sorted(bad)]
    staged_ids = pq.read_table(settings.staged_partition("trades", DAY), columns=["trade_id"]).column(0).to_pylist()
    assert staged_ids == [r.split(",", 1)[0] for i, r in enumerate(records) if i not in bad]
    assert_accounted(settings, result)


# --- the bytes that are loaded are the bytes that were verified (issue 22) ----------------------

def test_a_file_swapped_during_ingest_never_loads_unverified_bytes(delivery):
    """A sender (or anyone who can write the landing) swaps fx_rates.csv back and forth between
    the delivered file and one with every rate x1000 while ingest runs, again and again. Each
    ingest must either load exactly the verified file or refuse it with a checksum mismatch."""
    import threading

    target = delivery.file("fx_rates")
    good = target.read_bytes()
    records = csv_records(good.decode())
    expected = sorted((r["rate_date"], r["currency"], float(r["usd_per_unit"])) for r in records)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({**r, "usd_per_unit": str(float(r["usd_per_unit"]) * 1000)} for r in records)
    evil = out.getvalue().encode()
    stop = threading.Event()

    def swap() -> None:  # whole files replaced by rename, as a sender's tool would
        spare = target.with_name(".swap.csv")
        while not stop.is_set():
            for data in (evil, good):
                spare.write_bytes(data)
                os.replace(spare, target)
                stop.wait(0.002)

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    outcomes = []
    try:
        for _ in range(24):
            result = delivery.ingest("fx_rates")
            outcomes.append(result["status"])
            if result["status"] == "LOADED":
                assert result["sha256"] == delivery.manifest()["feeds"]["fx_rates"]["sha256"]
                loaded = sorted((str(r["rate_date"]), r["currency"], r["usd_per_unit"])
                                for r in staged_rows(delivery.settings, "fx_rates"))
                assert loaded == expected, "ingest loaded bytes that differ from the ones it verified"
            else:
                refused(result, "checksum mismatch", str(target))
    finally:
        stop.set()
        swapper.join()
    assert "LOADED" in outcomes  # the verified file did get through; the test saw both kinds
    assert not list((delivery.settings.tmp / "receiving").iterdir()), "a private copy was left behind"


# --- numbers the contract admits must not stop a date (issue 22) --------------------------------

@pytest.mark.parametrize("feed, column, value, rule", [
    ("positions", "quantity", "1e27", "quantity:range"),
    ("trades", "quantity", "1e308", "quantity:range"),
    ("trades", "price", "5e-324", "price:range"),
    ("limits", "limit_value", "1e-320", "limit_value:range"),
    ("fx_rates", "usd_per_unit", "1e-320", "usd_per_unit:range"),
    ("settlements", "settlement_amount", "1e300", "settlement_amount:range"),
    ("trades", "trade_date", "1900-01-02", "trade_date_within_a_year"),
])
def test_an_absurd_number_is_quarantined_under_its_range_not_passed_to_the_marts(delivery, feed, column, value, rule):
    """1e27 shares, a price of 5e-324, a limit of 1e-320: each passed the old `> 0` rules, then
    overflowed a DECIMAL cast or made a utilisation of inf, and stopped the whole date's build."""
    def poison(header, rows):
        rows = [dict(r) for r in rows]
        if feed == "fx_rates":  # USD must stay 1 (its own rule): poison another currency
            target = next(r for r in rows if r["currency"] != "USD")
        else:
            target = rows[0]
        target[column] = value
        return header, rows

    records = _csv_with(delivery, feed, poison)
    result = delivery.ingest(feed)
    assert result["status"] == "LOADED", result
    held = quarantined(delivery.settings, feed)
    assert [(r["rule"], value in r["raw_record"]) for r in held] == [(rule, True)]
    assert result["loaded_rows"] == len(records) - 1
    assert_accounted(delivery.settings, result)


def test_a_close_price_of_5e_324_in_parquet_is_quarantined(delivery):
    table = pq.read_table(delivery.file("prices"))
    prices = table.column("close_price").to_pylist()
    prices[0] = 5e-324
    pq.write_table(table.set_column(table.schema.get_field_index("close_price"), "close_price",
                                    pa.array(prices, pa.float64())), delivery.file("prices"))
    delivery.set_entry("prices", sha256=_sha(delivery.file("prices")))
    result = delivery.ingest("prices")
    assert [r["rule"] for r in quarantined(delivery.settings, "prices")] == ["close_price:range"]
    assert_accounted(delivery.settings, result)


def test_a_failed_chunk_reports_its_own_error_not_the_aborted_transaction(tmp_path):
    """The build restored its thread count in a `finally`: after a failed statement that SET
    raised 'Current transaction is aborted', and the ledger recorded that instead of the cause."""
    import duckdb as ddb

    from midoffice.models import load_models
    from midoffice.warehouse import _in_chunks

    model = next(m for m in load_models() if not m.chunk_feed)
    con = ddb.connect(str(tmp_path / "build.duckdb"))
    con.execute("CREATE TABLE mart (amount DECIMAL(38, 12))")
    con.execute("BEGIN TRANSACTION")

    def overflowing_chunk(chunk: int, chunks: int) -> int:  # a failed write aborts the transaction
        return con.execute("INSERT INTO mart SELECT CAST(1e27 AS DECIMAL(38, 12))").fetchone()[0]

    with pytest.raises(ddb.ConversionException, match="DECIMAL"):
        _in_chunks(con, model, DAY, overflowing_chunk)
    con.close()


def test_quarantine_lines_are_physical_lines_after_a_quoted_line_break(delivery):
    """A quoted value with line breaks (a trader's note pasted with Enter) makes the record span
    several lines; every later quarantined record was reported one line too low per break."""
    def poison(header, rows):
        rows = [dict(r) for r in rows]
        rows[2]["venue"] = "XLON\nsee note\nline three"   # record 3: physical lines 4-6
        rows[9]["side"] = "HOLD"                          # record 10: physical line 13, not 11
        rows[20]["venue"] = "XPAR\r\nwindows break"       # record 21: lines 24-25
        rows[30]["quantity"] = "-5"                       # record 31: physical line 35, not 32
        return header, rows

    _csv_with(delivery, "trades", poison)
    lines = delivery.file("trades").read_text().split("\n")
    result = delivery.ingest("trades")
    held = {r["rule"]: r["line"] for r in quarantined(delivery.settings, "trades")}
    assert held == {"side:values": 13, "quantity:range": 35}
    assert ",HOLD," in lines[13 - 1] and ",-5," in lines[35 - 1]  # the lines a person would open
    loaded = {r["venue"] for r in staged_rows(delivery.settings, "trades")}
    assert {"XLON\nsee note\nline three", "XPAR\r\nwindows break"} <= loaded  # the breaks are data
    assert_accounted(delivery.settings, result)


def test_an_ingest_removes_a_killed_ingests_private_copy_but_not_a_live_ones(delivery):
    """Two ingests of one feed and date can overlap (a zombie task and its retry, `midoffice run`
    beside a scheduler): the second must not delete the folder the first is still reading."""
    import subprocess

    from midoffice.ingest import _receiving_folder
    from midoffice.contracts import get_feed

    settings, feed = delivery.settings, get_feed("books")
    root = settings.tmp / "receiving"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = root / f"books-{DAY}-{int(dead.stdout)}-0000dead"
    live = root / f"books-{DAY}-{os.getpid()}-0000live"
    for folder in (killed, live):
        folder.mkdir(parents=True)
    mine = _receiving_folder(settings, feed, DAY)
    assert not killed.exists() and live.exists() and mine not in (killed, live)
