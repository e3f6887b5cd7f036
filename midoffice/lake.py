"""The published warehouse as a DuckLake: where it is, how to open it, its versions.

Every publication is one DuckLake commit (midoffice.publish), so every published version is a
snapshot that stays readable as it was: `AT (VERSION => n)`, or the lake attached at
`SNAPSHOT_VERSION n` / `SNAPSHOT_TIME ts`. The product's version number is the snapshot id.

Where it is:
- embedded default: the catalog is the SQLite file `<home>/warehouse/lake.sqlite` (in WAL mode:
  several processes read it while the pipeline commits, and none of them blocks the others; a
  DuckDB-file catalog is locked by the one process that writes it, which would lock readers out
  during every publication), the data files are Parquet under `<home>/warehouse/lake_data/`;
- distributed: the catalog in PostgreSQL (`MIDOFFICE_LAKE_CATALOG=postgresql://...`), the data
  files on a path every worker reaches (`MIDOFFICE_LAKE_DATA`).

The DuckLake, SQLite and PostgreSQL extensions come from the pinned `duckdb-extension-*` wheels
and are loaded from their files: nothing is downloaded at run time.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from midoffice.config import Settings
from midoffice.duck import connect, restrict_to

LAKE = "lake"  # the name the lake is attached under, here and in the README's one-liners
AUTHOR = "midoffice"  # the commit author of a publication (other commits are not versions)
CATALOG_EXTENSION = {False: "sqlite_scanner", True: "postgres_scanner"}  # by is_postgres()


class LakeError(RuntimeError):
    """The lake cannot be opened as asked (no extension, nothing published, no such version)."""


def extension_file(name: str) -> Path:
    """The .duckdb_extension file the pinned wheel `duckdb-extension-<name>` installed."""
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        raise LakeError(f"the DuckDB extension {name} is not installed (pip package duckdb-extension-"
                        f"{name.replace('_', '-')}, pinned in constraints.txt)")
    root = Path(list(spec.submodule_search_locations)[0]) / "extensions" / f"v{duckdb.__version__}"
    path = root / f"{name}.duckdb_extension"
    if not path.is_file():
        raise LakeError(f"no {name} extension for duckdb {duckdb.__version__} at {path}")
    return path


def extensions_for(settings: Settings) -> tuple[str, ...]:
    """DuckLake and the scanner of the lake's catalog (loading one costs ~0.1 s a connection, and
    every reader is a new connection: the other scanner is not loaded)."""
    return ("ducklake", CATALOG_EXTENSION[is_postgres(settings)])


# Extension file -> its identity when DuckDB last checked its signature in this process. DuckDB
# hashes the whole file at every LOAD (0.25 s a connection for ducklake and the SQLite scanner,
# 71 MB), and every reader is a new connection: once a process is enough for the same file.
_SIGNATURE_CHECKED: dict[Path, tuple[int, int, int, int]] = {}


def _identity(path: Path) -> tuple[int, int, int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def signatures_checked(settings: Settings) -> bool:
    """Has DuckDB checked the signatures of the lake's extension files in this process, and are
    they still the same files (device, inode, size, modification time)?"""
    try:
        return all(_SIGNATURE_CHECKED.get(f) == _identity(f) for f in map(extension_file, extensions_for(settings)))
    except (LakeError, OSError):
        return False


def connect_for_lake(settings: Settings, database: str | Path = ":memory:"):
    """A connection (midoffice.duck.connect) that will attach the lake: once DuckDB has checked
    the extensions' signatures in this process, it loads the same files without hashing them again."""
    return connect(settings, database, extensions_checked=signatures_checked(settings))


def load_extensions(con, settings: Settings) -> None:
    checking = not con.execute("SELECT current_setting('allow_unsigned_extensions')").fetchone()[0]
    for name in extensions_for(settings):
        path = extension_file(name)
        before = _identity(path)
        con.execute(f"LOAD '{_text(str(path))}'")
        if checking and _identity(path) == before:  # DuckDB checked its signature: this file is good
            _SIGNATURE_CHECKED[path] = before


def _text(s: str) -> str:
    return s.replace("'", "''")


def is_postgres(settings: Settings) -> bool:
    return (settings.lake_catalog or "").startswith(("postgresql://", "postgres://"))


def catalog_uri(settings: Settings) -> str:
    """What follows ATTACH: 'ducklake:sqlite:<file>' or 'ducklake:postgres:<url>'."""
    if settings.lake_catalog and not is_postgres(settings):
        raise LakeError("MIDOFFICE_LAKE_CATALOG must be a postgresql:// URL (or unset for the embedded SQLite "
                        f"catalog), not {settings.lake_catalog.split('://')[0]}://...")
    if is_postgres(settings):
        return f"ducklake:postgres:{settings.lake_catalog}"
    return f"ducklake:sqlite:{settings.lake_catalog_file}"


def describe(settings: Settings) -> str:
    if is_postgres(settings):
        from urllib.parse import urlsplit
        u = urlsplit(settings.lake_catalog)
        return f"the lake catalogued in postgresql://{u.hostname}:{u.port or 5432}{u.path}"
    return f"the lake {settings.lake_catalog_file}"


def exists(settings: Settings) -> bool:
    """Has anything been published (is there a catalog)? PostgreSQL: asked when attached."""
    return is_postgres(settings) or settings.lake_catalog_file.is_file()


# Sets WAL on a new catalog file. It runs in a child process: Python's sqlite3 is a second SQLite
# library beside DuckDB's, and the two do not know each other's locks (below).
_SET_WAL = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=30); "
            "print(c.execute('PRAGMA journal_mode = WAL').fetchone()[0]); c.close()")


def _prepare_sqlite_catalog(con, settings: Settings) -> None:
    """WAL on the catalog file (kept in the file): readers never block the publication's commit,
    which with SQLite's default journal waits for every reader's transaction to end.

    Never with Python's sqlite3 in this process. Closing a file drops every POSIX lock the process
    holds on it, and only one SQLite library's own bookkeeping knows to wait: Python's sqlite3
    closing the catalog took DuckDB's locks with it, and another process then treated the
    publication's shared memory as free (truncated it: SIGBUS in COMMIT; "locking protocol"; a
    commit that read back the version before). SQLite's "How To Corrupt", 2.2. The mode is read
    through DuckDB's own SQLite; a catalog not yet in WAL is switched by a child process."""
    settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    path = settings.lake_catalog_file
    if path.is_file() and path.stat().st_size:
        con.execute(f"ATTACH '{_text(str(path))}' AS __midoffice_catalog_mode (TYPE sqlite, READ_ONLY)")
        try:
            mode = con.execute("SELECT * FROM sqlite_query('__midoffice_catalog_mode', 'PRAGMA journal_mode')").fetchone()[0]
        finally:
            con.execute("DETACH __midoffice_catalog_mode")
        if mode == "wal":
            return
    try:  # -I: the standard library's sqlite3, whatever the working folder or PYTHONPATH holds
        done = subprocess.run([sys.executable, "-I", "-c", _SET_WAL, str(path)], timeout=120,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LakeError(f"cannot put the catalog {path} in WAL mode: {exc}") from exc
    if done.returncode or done.stdout.strip() != "wal":
        cause = (done.stderr.strip().splitlines() or [f"SQLite answered {done.stdout.strip()!r}"])[-1]
        raise LakeError(f"cannot put the catalog {path} in WAL mode: {cause}")


def _data_options(settings: Settings, read_only: bool) -> list[str]:
    """Where the data files are. The catalog records the folder it was created with; the embedded
    lake's is its home's, wherever the home is now (a home restored from a backup or copied
    elsewhere still reads its own files), and a configured MIDOFFICE_LAKE_DATA is the truth too. A
    PostgreSQL lake without one keeps the folder its catalog names (every worker reads that)."""
    if not is_postgres(settings) or settings.lake_data:
        return [f"DATA_PATH '{_text(str(settings.lake_data_path))}/'", "OVERRIDE_DATA_PATH true"]
    return [] if read_only else [f"DATA_PATH '{_text(str(settings.lake_data_path))}/'"]


def attach(con, settings: Settings, read_only: bool = False, version: int | None = None,
           as_of: str | dt.datetime | None = None) -> None:
    """Attach the lake as `lake` on `con` (extensions loaded first): read-write for the
    publication; read-only, at the current or an earlier version, for readers."""
    load_extensions(con, settings)
    options = _data_options(settings, read_only)
    if read_only:
        options.insert(0, "READ_ONLY")
    else:
        if not is_postgres(settings):
            _prepare_sqlite_catalog(con, settings)
        settings.lake_data_path.mkdir(parents=True, exist_ok=True)
        # every row in Parquet files (not inlined in the catalog): readers and extracts read files
        options.append("DATA_INLINING_ROW_LIMIT 0")
    if version is not None:
        options.append(f"SNAPSHOT_VERSION {int(version)}")
    if as_of is not None:
        when = as_of if isinstance(as_of, dt.datetime) else dt.datetime.fromisoformat(str(as_of))
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        options.append(f"SNAPSHOT_TIME '{when.isoformat()}'")
    con.execute(f"ATTACH '{_text(catalog_uri(settings))}' AS {LAKE} ({', '.join(options)})")


# SQLite's answers while a publication commits or checkpoints the catalog beside a reader (WAL
# mode): "locking protocol" (SQLITE_PROTOCOL) was seen in CI with a query every tenth of a second
# during two publications, once when the reader attached the catalog, once at the first statement
# after it (DuckLake reads the latest snapshot from the catalog as each transaction starts).
# SQLite's busy timeout does not cover SQLITE_PROTOCOL: a reader tries again. Those answers, and
# one at a publication's COMMIT, most likely came from the publishing process losing its locks to
# Python's sqlite3 (_prepare_sqlite_catalog says how; fixed): kept for what SQLite may still say. A
# publication is not tried again in the same process: after a failed commit DuckDB cannot open the
# build again there (midoffice.duck.mark_held_by_failed_commit); a new process publishes.
TRANSIENT_CATALOG_ERRORS = ("locking protocol", "database is locked")
CATALOG_ATTEMPTS = 5  # waits 0.1, 0.2, 0.4, 0.8 s between them


def transient_catalog_error(exc: BaseException) -> bool:
    """Is this SQLite's passing answer while the catalog commits (worth trying again)?"""
    return isinstance(exc, duckdb.Error) and any(t in str(exc) for t in TRANSIENT_CATALOG_ERRORS)


def tried_again_on_transient_catalog_errors(step, on_retry=None):
    """step() up to CATALOG_ATTEMPTS times while it fails with transient_catalog_error, waiting
    0.1-0.8 s between tries (on_retry() first: e.g. close what the failed try opened); its result,
    or the last failure. Only for steps that write nothing (a read-only reader, a read-only query)."""
    for attempt in range(1, CATALOG_ATTEMPTS + 1):
        try:
            return step()
        except duckdb.Error as exc:
            if attempt == CATALOG_ATTEMPTS or not transient_catalog_error(exc):
                raise
            if on_retry is not None:
                on_retry()
            time.sleep(0.05 * 2 ** attempt)
    raise AssertionError("unreachable")


def reader(settings: Settings, version: int | None = None, as_of: str | dt.datetime | None = None,
           spill_dir: Path | None = None, writable: tuple[Path, ...] = ()):
    """A connection that sees the published lake read-only (the current version, or `version`,
    or the version in force at `as_of`) as its default database, and no file but the lake's
    data files (and `writable`): external access off and the configuration locked after the lake
    is attached. Read-only is DuckLake's: the catalog is attached READ_ONLY, so no statement can
    commit to it. Opened again on a new connection when the catalog answers a transient error."""
    if not exists(settings):
        raise LakeError(f"nothing published yet ({describe(settings)} does not exist; run `midoffice run` first)")
    opened: list = []

    def open_lake():
        con = connect_for_lake(settings)
        opened.append(con)
        if spill_dir is not None:
            con.execute(f"SET temp_directory = '{_text(str(spill_dir))}'")
        attach(con, settings, read_only=True, version=version, as_of=as_of)
        con.execute(f"USE {LAKE}")  # its first transaction on the lake: reads the latest snapshot
        return con

    try:
        con = tried_again_on_transient_catalog_errors(open_lake, on_retry=lambda: opened.pop().close())
    except duckdb.Error as exc:
        for con in opened:
            con.close()
        raise LakeError(f"cannot open {describe(settings)}"
                        f"{f' at version {version}' if version is not None else ''}"
                        f"{f' as of {as_of}' if as_of is not None else ''}: {str(exc).splitlines()[0]}")
    except BaseException:
        for con in opened:
            con.close()
        raise
    try:
        roots = [settings.lake_data_path, *writable] + ([spill_dir] if spill_dir is not None else [])
        restrict_to(con, *roots)
    except BaseException:
        con.close()
        raise
    return con


def reader_for_home(home: str | Path, version: int | None = None):
    """reader() for a home folder (tests, notebooks): the default catalog settings of that home."""
    h = Path(home).resolve()
    return reader(Settings(landing=h, home=h), version=version)


@dataclass(frozen=True)
class Version:
    """One publication: the snapshot it committed and what its commit says."""

    version: int
    published_at: dt.datetime
    run_id: str
    business_date: str
    dates: tuple[str, ...]
    reason: str
    message: str
    restated: tuple[str, ...] = ()


def versions(con) -> list[Version]:
    """The publications (commits by midoffice) of the lake attached on `con`, oldest first."""
    found = []
    for snapshot, when, message, extra in con.execute(
            f"SELECT snapshot_id, snapshot_time, commit_message, commit_extra_info FROM ducklake_snapshots('{LAKE}') "
            "WHERE author = ? ORDER BY snapshot_id", [AUTHOR]).fetchall():
        info = json.loads(extra) if extra else {}
        found.append(Version(
            version=snapshot, published_at=when.astimezone(dt.timezone.utc).replace(tzinfo=None),
            run_id=info.get("run_id", ""), business_date=info.get("business_date", ""),
            dates=tuple(info.get("dates", ())), reason=info.get("reason") or "", message=message or "",
            restated=tuple(info.get("restated", ()))))
    return found


def published_dates(settings: Settings) -> dict[str, int]:
    """Business date -> the version that last published it (empty when nothing is published)."""
    if not exists(settings):
        return {}
    try:
        con = reader(settings)
    except LakeError as exc:
        if is_postgres(settings) and "does not exist" in str(exc):  # a PostgreSQL lake not created yet
            return {}
        raise
    try:
        if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name = 'publications'",
                           [LAKE]).fetchone()[0]:
            return {}
        return {str(d): v for d, v in con.execute(
            "SELECT d, max(version) FROM (SELECT version, unnest(dates) AS d FROM publications) GROUP BY d").fetchall()}
    finally:
        con.close()


def attach_sql(settings: Settings, version: int | None = None) -> str:
    """The statements that open the lake read-only in DuckDB's CLI or Python (the README's one-liner)."""
    loads = "; ".join(f"LOAD '{_text(str(extension_file(n)))}'" for n in extensions_for(settings))
    options = ", ".join(["READ_ONLY", *_data_options(settings, True)]
                        + ([f"SNAPSHOT_VERSION {int(version)}"] if version is not None else []))
    return f"{loads}; ATTACH '{_text(catalog_uri(settings))}' AS {LAKE} ({options}); USE {LAKE};"


def current_version(con) -> int | None:
    """The snapshot the attached lake shows (None: an empty lake, nothing published)."""
    got = con.execute(f"SELECT id FROM {LAKE}.current_snapshot()").fetchone()
    return got[0] if got else None


def committed_version(con) -> int | None:
    """The snapshot this connection's last commit to the lake made (None: it has made none).
    DuckLake keeps it as the connection's own state, set by the commit itself: it does not read
    the catalog again, as current_snapshot() does (CI saw that read give the version before, right
    after a commit, with readers querying the catalog all along)."""
    got = con.execute(f"SELECT id FROM ducklake_last_committed_snapshot('{LAKE}')").fetchone()
    return got[0] if got else None
