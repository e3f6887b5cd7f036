"""Secrets and privacy: after a real run, the pseudonymisation key and a connection password
are nowhere under the home or Airflow's home: not in the lake, not in any column of the DuckDB
files, not in reports, logs, or the XCom values of Airflow's metadata database.

One business date runs through the real DAG (Airflow's dag.test()) with
MIDOFFICE_PSEUDONYM_KEY and an Airflow SMTP connection password set to distinctive values, and
both are really used: the build pseudonymises clients with the key, and the notify task logs in to
a local SMTP server with the password to send the date's alerts. Then
every file is searched: raw bytes for everything, and, because Parquet and DuckDB compress what
they store (a raw grep would miss a secret inside a zstd page or an FSST-compressed column), the
decoded text of every Parquet column and every text column of every DuckDB table.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import socketserver
import sqlite3
import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import published as open_lake, generate_landing, run_pipeline

pytestmark = pytest.mark.slow

PSEUDONYM_KEY = "Kx7-midoffice-test-pseudonym-key-4f1e9a2c"
SMTP_PASSWORD = "S3cretPassw0rd"
SECRETS = {"pseudonym key": PSEUDONYM_KEY, "SMTP password": SMTP_PASSWORD}


# --- a search that sees through compression -------------------------------------------------------

def _in_text(text: str, where: str) -> list[str]:
    return [f"{name} in {where}" for name, secret in SECRETS.items() if secret in text]


def _raw(path: Path) -> list[str]:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data += gzip.decompress(data)
        except OSError:
            pass
    return [f"{name} in the bytes of {path}" for name, secret in SECRETS.items()
            if secret.encode() in data or secret.encode("utf-16-le") in data]


def _parquet(path: Path) -> list[str]:
    table = pq.read_table(path)
    hits = []
    for name in table.column_names:
        column = table[name]
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
                or pa.types.is_binary(column.type)):
            column = column.cast(pa.string()) if not pa.types.is_nested(column.type) else None
        if column is None:
            hits += _in_text(json.dumps(table.select([name]).to_pylist(), default=str), f"{path}:{name}")
            continue
        for value in column.to_pylist():
            if value is not None:
                hits += _in_text(value.decode("utf-8", "replace") if isinstance(value, bytes) else value,
                                 f"{path}:{name}")
    return hits


def _duckdb(path: Path) -> list[str]:
    hits = []
    con = duckdb.connect(str(path), read_only=True)
    try:
        columns = con.execute(
            "SELECT database_name, schema_name, table_name, column_name FROM duckdb_columns() "
            "WHERE NOT internal AND database_name = current_database()").fetchall()
        for db, schema, table, column in columns:
            ident = ".".join('"' + p.replace('"', '""') + '"' for p in (db, schema, table))
            col = '"' + column.replace('"', '""') + '"'
            for name, secret in SECRETS.items():
                n = con.execute(f"SELECT count(*) FROM {ident} WHERE contains(CAST({col} AS VARCHAR), ?)",
                                [secret]).fetchone()[0]
                if n:
                    hits.append(f"{name} in {path}: {schema}.{table}.{column} ({n} rows)")
    finally:
        con.close()
    return hits


def _sqlite(path: Path) -> list[str]:
    """Every text and blob value of every table (XCom values included)."""
    hits = []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in con.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", "replace")
                    if isinstance(value, str):
                        hits += _in_text(value, f"{path}:{table}")
    finally:
        con.close()
    return hits


def _kind(path: Path) -> str:
    with path.open("rb") as fh:
        head = fh.read(16)
    if head[:4] == b"PAR1":
        return "parquet"
    if head[8:12] == b"DUCK":
        return "duckdb"
    if head.startswith(b"SQLite format 3\x00"):
        return "sqlite"
    return "file"


def find_secrets(*roots: Path) -> tuple[list[str], dict[str, int]]:
    """(where a secret was found, how many files of each kind were searched)."""
    hits, searched = [], {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue
            kind = _kind(path)
            searched[kind] = searched.get(kind, 0) + 1
            hits += _raw(path)
            if kind == "parquet":
                hits += _parquet(path)
            elif kind == "duckdb":
                hits += _duckdb(path)
            elif kind == "sqlite":
                hits += _sqlite(path)
    return hits, searched


# --- the run ---------------------------------------------------------------------------------

class _SmtpSink(socketserver.StreamRequestHandler):
    """Just enough SMTP (EHLO, AUTH PLAIN, MAIL, RCPT, DATA) to take the alert e-mail."""

    def _say(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")

    def handle(self) -> None:
        self._say("220 sink ESMTP")
        body: list[bytes] | None = None
        for line in iter(self.rfile.readline, b""):
            if body is not None:
                if line.rstrip(b"\r\n") == b".":
                    self.server.messages.append(b"".join(body))
                    body = None
                    self._say("250 queued")
                else:
                    body.append(line)
                continue
            verb, _, arg = line.strip().partition(b" ")
            verb = verb.upper()
            if verb == b"EHLO":
                self._say("250-sink")
                self._say("250 AUTH PLAIN")
            elif verb == b"AUTH":
                _mechanism, _, response = arg.partition(b" ")
                self.server.logins.append(base64.b64decode(response).split(b"\x00")[1:])
                self._say("235 authenticated")
            elif verb == b"DATA":
                body = []
                self._say("354 go ahead")
            elif verb == b"QUIT":
                self._say("221 bye")
                return
            else:  # HELO, MAIL, RCPT, RSET, NOOP
                self._say("250 ok")


@pytest.fixture(scope="module")
def smtp_sink():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpSink)
    server.daemon_threads = True
    server.messages, server.logins = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def secret_run(tmp_path_factory, airflow_home, smtp_sink):
    root = tmp_path_factory.mktemp("secrets")
    landing = generate_landing(root / "landing", "2026-06-01", 1, 300, seed=41)
    # Not sample data: without the configured key the build would refuse to run.
    (landing / "_SAMPLE_DATA").unlink()
    home = root / "home"
    port = smtp_sink.server_address[1]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIDOFFICE_PSEUDONYM_KEY", PSEUDONYM_KEY)
        mp.setenv("AIRFLOW_CONN_MIDOFFICE_SMTP", f"smtp://user:{SMTP_PASSWORD}@127.0.0.1:{port}"
                  "?disable_ssl=true&disable_tls=true&timeout=10&retry_limit=0&from_email=midoffice%40example.org")
        mp.setenv("MIDOFFICE_ALERT_TO", "middle-office@example.org")
        outcomes = run_pipeline(landing, home, ["2026-06-01"])
    return {"landing": landing, "home": home, "airflow_home": airflow_home, "outcomes": outcomes,
            "smtp": smtp_sink}


def test_the_search_finds_secrets_inside_compressed_parquet_duckdb_and_sqlite(tmp_path):
    # The search itself, on files that do hold the secrets the way the pipeline would store them.
    pq.write_table(pa.table({"note": [f"x{PSEUDONYM_KEY}y"] * 1000}), tmp_path / "a.parquet", compression="zstd")
    con = duckdb.connect(str(tmp_path / "b.duckdb"))
    con.execute("CREATE SCHEMA core")
    con.execute("CREATE TABLE core.t AS SELECT 'pw=' || ? || range AS v FROM range(100000)", [SMTP_PASSWORD])
    con.close()
    db = sqlite3.connect(tmp_path / "c.db")
    db.execute("CREATE TABLE xcom (value BLOB)")
    db.execute("INSERT INTO xcom VALUES (?)", [json.dumps({"k": PSEUDONYM_KEY}).encode()])
    db.commit()
    db.close()
    (tmp_path / "d.log.gz").write_bytes(gzip.compress(f"conn {SMTP_PASSWORD}".encode()))
    hits, searched = find_secrets(tmp_path)
    assert searched == {"parquet": 1, "duckdb": 1, "sqlite": 1, "file": 1}
    assert any("a.parquet:note" in h for h in hits)
    assert any("core.t.v" in h for h in hits)
    assert any("c.db:xcom" in h for h in hits)
    assert any("d.log.gz" in h for h in hits)


def test_the_run_used_the_configured_key(secret_run):
    """The pseudonyms are HMACs under the configured key (recomputed here from the client file)."""
    assert secret_run["outcomes"][0].dag_state == "success", secret_run["outcomes"]
    ids = [json.loads(line)["client_id"] for line in
           (secret_run["landing"] / "2026-06-01" / "clients.jsonl").read_text().splitlines() if line.strip()]
    expected = {hmac.new(PSEUDONYM_KEY.encode(), i.encode(), hashlib.sha256).hexdigest()[:20] for i in ids}
    con = open_lake(secret_run["home"] / "warehouse" / "marts.duckdb")
    try:
        published = {r[0] for r in con.execute("SELECT DISTINCT client_key FROM client_dim").fetchall()}
    finally:
        con.close()
    assert published and published <= expected


def test_the_run_used_the_smtp_password(secret_run):
    """The notify task read the connection and logged in with its password to send the alerts."""
    smtp = secret_run["smtp"]
    assert [b"user", SMTP_PASSWORD.encode()] in smtp.logins, smtp.logins
    assert smtp.messages, "no alert e-mail reached the SMTP server"
    assert not any(SMTP_PASSWORD.encode() in m or PSEUDONYM_KEY.encode() in m for m in smtp.messages)


def test_no_secret_is_stored_anywhere_under_the_home_or_airflow(secret_run):
    hits, searched = find_secrets(secret_run["home"], secret_run["airflow_home"])
    assert hits == [], hits[:20]
    # The search covered what the run wrote: the lake (its Parquet files and SQLite catalog), the
    # build warehouse, Airflow's database.
    assert searched.get("parquet", 0) >= 20 and searched.get("duckdb", 0) >= 1 and searched.get("sqlite", 0) >= 2
    assert any((secret_run["home"] / "reports").rglob("*.html"))


def test_xcom_values_carry_no_secret_and_no_dataframe(secret_run):
    db = secret_run["airflow_home"] / "airflow.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        values = [v for (v,) in con.execute("SELECT value FROM xcom")]
    finally:
        con.close()
    assert values, "the run pushed no XCom at all"
    for value in values:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        assert not _in_text(text, "xcom")
        assert len(text) < 200_000, "an XCom value this large is data, not metadata"
