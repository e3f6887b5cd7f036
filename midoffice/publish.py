"""Publish: a new file with the audited marts, swapped in atomically.

Readers only ever open <home>/warehouse/marts.duckdb read-only; the build's file is never shown
to them. The new file is complete and checkpointed (no .wal) before os.replace() puts it in
place, so a reader sees the old version or the new one, never a mix. Leftovers of a publish that
was killed half way are removed by the next one.

The new file starts as a copy of the published one, and only the dates built since the last
publication (core.unpublished_dates) are replaced in it: the cost of a publication follows the
new data (plus a file copy), not the length of the history. When there is no published file, or
its tables no longer match the build's (a mart added or changed), every mart is copied whole.
"""

from __future__ import annotations

import os
import shutil
import time

from midoffice import control
from midoffice.config import Settings
from midoffice.duck import connect, quote_ident as q, sql_literal_path
from midoffice.models import Model, load_models
from midoffice.warehouse import refresh_run_ledger


def _remove_leftovers(settings: Settings) -> list[str]:
    removed = []
    for stale in settings.warehouse_dir.glob("marts.next-*.duckdb*"):
        stale.unlink(missing_ok=True)
        removed.append(stale.name)
    return removed


def _columns(con, database: str, table: str) -> list[tuple[str, str]]:
    return con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? AND schema_name = 'main' "
        "AND table_name = ? ORDER BY column_index", [database, table]).fetchall()


def _same_tables(con, models: list[Model]) -> bool:
    """Does the published copy (attached as pub) hold exactly the build's marts, column for column?"""
    build_db = con.execute("SELECT current_database()").fetchone()[0]
    published = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'pub' AND schema_name = 'main'").fetchall()}
    expected = {m.name for m in models} | {"build_log", "publication"}
    return published == expected and all(
        _columns(con, "pub", m.name) == _columns(con, build_db, m.name) for m in models)


def _copy_whole(con, models: list[Model]) -> None:
    for model in models:
        order = ", ".join(q(c) for c in model.grain)
        con.execute(f"CREATE TABLE pub.{q(model.name)} AS SELECT * FROM main.{q(model.name)} ORDER BY {order}")


def _replace_dates(con, models: list[Model], dates: list[str]) -> None:
    for model in models:
        order = ", ".join(q(c) for c in model.grain)
        where = f"{q(model.partition)} IN (SELECT CAST(unnest(?) AS DATE))"
        con.execute(f"DELETE FROM pub.{q(model.name)} WHERE {where}", [dates])
        con.execute(f"INSERT INTO pub.{q(model.name)} SELECT * FROM main.{q(model.name)} WHERE {where} ORDER BY {order}",
                    [dates])


def publish(settings: Settings, business_date: str, run_id: str) -> dict:
    started_at = control.utc_now()
    t0 = time.monotonic()
    settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    removed = _remove_leftovers(settings)
    target = settings.published_db
    staging = settings.warehouse_dir / f"marts.next-{os.getpid()}.duckdb"
    con = connect(settings, settings.build_db)
    tables, mode, dates = {}, "whole", []
    try:
        refresh_run_ledger(con, settings, business_date, run_id)
        existing = {r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main'"
        ).fetchall()}
        models = [m for m in load_models() if m.name in existing]
        dates = [str(r[0]) for r in con.execute(
            "SELECT business_date FROM core.unpublished_dates ORDER BY 1").fetchall()]
        if target.exists():
            shutil.copyfile(target, staging)
            con.execute(f"ATTACH {sql_literal_path(staging)} AS pub")
            if _same_tables(con, models):
                mode = "dates"
            else:
                con.execute("DETACH pub")
                staging.unlink()
        if mode == "whole":
            con.execute(f"ATTACH {sql_literal_path(staging)} AS pub")
            _copy_whole(con, models)
        else:
            _replace_dates(con, models, dates)
            con.execute("DROP TABLE pub.build_log")
            con.execute("DROP TABLE pub.publication")
        con.execute("CREATE TABLE pub.build_log AS SELECT * FROM core.build_log ORDER BY business_date, mart")
        con.execute(
            "CREATE TABLE pub.publication AS SELECT CAST(? AS VARCHAR) AS run_id, CAST(? AS DATE) AS business_date, "
            "CAST(? AS TIMESTAMP) AS published_at",
            [run_id, business_date, started_at.rstrip("Z")],
        )
        for model in models:
            tables[model.name] = con.execute(f"SELECT count(*) FROM pub.{q(model.name)}").fetchone()[0]
        con.execute("DETACH pub")  # checkpoints the new file: no .wal is left beside it
    except Exception as exc:
        con.close()
        staging.unlink(missing_ok=True)
        control.record_stage(settings, run_id, business_date, "publish", "FAILED", started_at, message=str(exc))
        raise
    try:
        os.replace(staging, target)
        # Published: these dates no longer wait. A kill before this line only makes the next
        # publication replace them again (idempotent).
        con.execute("DELETE FROM core.unpublished_dates WHERE business_date IN (SELECT CAST(unnest(?) AS DATE))",
                    [dates])
    finally:
        con.close()
    summary = {"business_date": business_date, "run_id": run_id, "published": str(target), "mode": mode,
               "dates_replaced": dates if mode == "dates" else "all", "tables": tables,
               "removed_leftovers": removed, "seconds": round(time.monotonic() - t0, 3)}
    control.record_stage(settings, run_id, business_date, "publish", "SUCCESS", started_at,
                         rows_out=sum(tables.values()))
    return summary
