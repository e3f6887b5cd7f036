"""Pseudonymised client identity: client_key = HMAC-SHA256(key, client_id), keyed by a secret.

The key comes from the environment (MIDOFFICE_PSEUDONYM_KEY) or the Airflow connection
`midoffice_pseudonym` (its password). It is never written to the warehouse, logs or XCom: it only
lives in this process's memory and inside the DuckDB function registered on the build's
connection, and must hold at least 32 bytes of key material. The development key written in this
code is used only when the person running the pipeline opts in (`midoffice run
--development-key`, or MIDOFFICE_DEVELOPMENT_KEY=1 in the workers' environment), never because
of a file in the landing folder: senders write there, and with the development key anyone can
re-identify every client_key by hashing candidate ids.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sys

from midoffice.config import DEV_PSEUDONYM_KEY, Settings

KEY_ENV = "MIDOFFICE_PSEUDONYM_KEY"
AIRFLOW_CONN_ID = "midoffice_pseudonym"
DEV_KEY_ENV = "MIDOFFICE_DEVELOPMENT_KEY"  # "1": the operator opts in to the development key
SAMPLE_MARKER = "_SAMPLE_DATA"  # written by `midoffice generate`; informative only, never a key switch
KEY_CHARS = 20  # 80 bits of the HMAC: collision-free for any realistic client file
MIN_KEY_BYTES = 32  # as much key material as the HMAC-SHA256 output: a short key can be guessed
MAKE_A_KEY = "make one with: python3 -c 'import secrets; print(secrets.token_hex(32))'"


class MissingKeyError(RuntimeError):
    pass


def development_key_opted_in() -> bool:
    return os.environ.get(DEV_KEY_ENV, "").strip().lower() in {"1", "true", "yes"}


def _checked(value: str, source: str) -> tuple[bytes, str]:
    key = value.encode()
    if len(key) < MIN_KEY_BYTES:
        raise MissingKeyError(f"the pseudonymisation key from {source} has {len(key)} bytes; it needs at least "
                              f"{MIN_KEY_BYTES} ({MAKE_A_KEY})")
    return key, source


def _from_airflow() -> str | None:
    # Only inside a process that runs Airflow (a task, `midoffice run`): importing Airflow here
    # would fix its configuration (AIRFLOW_HOME, the metadata DB) before its caller set it.
    if "airflow" not in sys.modules:
        return None
    try:
        from airflow.sdk import BaseHook
    except Exception:
        return None
    try:
        return BaseHook.get_connection(AIRFLOW_CONN_ID).password or None
    except Exception:
        return None


def resolve_key(settings: Settings) -> tuple[bytes, str]:
    """(key, where it came from); raises MissingKeyError without a usable key.

    `settings` is unused since the landing folder no longer decides anything here; kept so that
    every stage resolves the key the same way.
    """
    value = os.environ.get(KEY_ENV)
    if value:
        return _checked(value, f"environment variable {KEY_ENV}")
    value = _from_airflow()
    if value:
        return _checked(value, f"Airflow connection {AIRFLOW_CONN_ID}")
    if development_key_opted_in():
        return DEV_PSEUDONYM_KEY.encode(), (f"DEVELOPMENT key, opted in by --development-key / {DEV_KEY_ENV}=1 "
                                            "(sample data only: anyone can re-identify its client keys)")
    raise MissingKeyError(
        f"no pseudonymisation key: set {KEY_ENV} (at least {MIN_KEY_BYTES} bytes; {MAKE_A_KEY}) or the "
        f"Airflow connection {AIRFLOW_CONN_ID}; for sample data only, opt in to the development key with "
        f"`midoffice run --development-key`"
    )


def client_key(key: bytes, client_id: str) -> str:
    return hmac.new(key, client_id.encode("utf-8"), hashlib.sha256).hexdigest()[:KEY_CHARS]


def _keyed_hasher(key: bytes):
    """client_id -> client_key, the same as client_key(key, .), but fast enough for a client file.

    The HMAC's key schedule is done once (copies of the keyed state are cheap), and results are
    memoised for the life of the connection: the same client ids come back in every client mart
    of a build, and the memo is bounded by the size of the client file.
    """
    keyed = hmac.new(key, digestmod=hashlib.sha256)
    memo: dict[str, str] = {}

    def pseudonym(client_id: str) -> str:
        value = memo.get(client_id)
        if value is None:
            h = keyed.copy()
            h.update(client_id.encode("utf-8"))
            value = memo[client_id] = h.hexdigest()[:KEY_CHARS]
        return value

    return pseudonym


def register(con, key: bytes) -> None:
    """Make `client_key(client_id)` available in SQL on this connection only.

    `client_key` is a macro: the key of an id in the connection's table of known keys (filled
    once a build by remember_clients), else the HMAC computed in Python (`client_key_hmac`). The
    lookup is a join inside DuckDB; calling Python for every row was most of what the client
    marts cost at 10M trades a day (5M positions: 0.4 s against 2.5 s with the memo warm). Either
    way the key is the same HMAC, and an id the table lacks still gets it.
    """
    import pyarrow as pa

    pseudonym = _keyed_hasher(key)

    def _udf(ids):  # pyarrow.Array -> pyarrow.Array (no annotations: DuckDB evaluates them)
        return pa.array([None if v is None else pseudonym(v) for v in ids.to_pylist()], pa.string())

    con.create_function("client_key_hmac", _udf, ["VARCHAR"], "VARCHAR", type="arrow", side_effects=False)
    con.execute("CREATE TEMP TABLE client_keys (client_id VARCHAR NOT NULL, client_key VARCHAR NOT NULL)")
    # `|| ''` copies the UDF's strings into DuckDB's own memory: coalesce over the Arrow result
    # alone read freed bytes under PRAGMA verify_parallelism ("Invalid unicode ... detected").
    con.execute("CREATE TEMP MACRO client_key(id) AS coalesce("
                "(SELECT k.client_key FROM temp.main.client_keys k WHERE k.client_id = id), client_key_hmac(id) || '')")


def remember_clients(con, ids_sql: str, params: list | tuple = ()) -> int:
    """Compute once the keys of the client ids that `ids_sql` selects (one column), for the
    client_key lookups of the connection's later statements; the number of new ids."""
    return con.execute(
        "INSERT INTO temp.main.client_keys SELECT id, client_key_hmac(id) FROM ("
        f"SELECT DISTINCT CAST(COLUMNS(*) AS VARCHAR) AS id FROM ({ids_sql})) "
        "WHERE id IS NOT NULL AND id NOT IN (SELECT client_id FROM temp.main.client_keys)", list(params),
    ).fetchone()[0]
