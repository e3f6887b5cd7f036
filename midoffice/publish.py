"""Publish: copy the audited marts into a new file and swap it in atomically.

Readers only ever open <home>/warehouse/marts.duckdb read-only; the build's file is never shown
to them. The new file is complete and checkpointed (no .wal) before os.replace() puts it in
place, so a reader sees the old version or the new one, never a mix. Leftovers of a publish that
was killed half way are removed by the next one.
"""

from __future__ import annotations

import os
import time

from midoffice import control
from midoffice.config import Settings
from midoffice.duck import connect, quote_ident as q, sql_literal_path
from midoffice.models import load_models
from midoffice.warehouse import refresh_run_ledger


def _remove_leftovers(settings: Settings) -> list[str]:
    removed = []
    for stale in settings.warehouse_dir.glob("marts.next-*.duckdb*"):
        stale.unlink(missing_ok=True)
        removed.append(stale.name)
    return removed


def publish(settings: Settings, business_date: str, run_id: str) -> dict:
    started_at = control.utc_now()
    t0 = time.monotonic()
    settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    removed = _remove_leftovers(settings)
    target = settings.published_db
    staging = settings.warehouse_dir / f"marts.next-{os.getpid()}.duckdb"
    con = connect(settings, settings.build_db)
    tables = {}
    try:
        refresh_run_ledger(con, settings, business_date, run_id)
        existing = {r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main'"
        ).fetchall()}
        con.execute(f"ATTACH {sql_literal_path(staging)} AS pub")
        for model in load_models():
            if model.name not in existing:
                continue
            order = ", ".join(q(c) for c in model.grain)
            con.execute(f"CREATE TABLE pub.{q(model.name)} AS SELECT * FROM main.{q(model.name)} ORDER BY {order}")
            tables[model.name] = con.execute(f"SELECT count(*) FROM pub.{q(model.name)}").fetchone()[0]
        con.execute("""
            CREATE TABLE pub.build_log AS SELECT * FROM core.build_log ORDER BY business_date, mart
        """)
        con.execute(
            "CREATE TABLE pub.publication AS SELECT CAST(? AS VARCHAR) AS run_id, CAST(? AS DATE) AS business_date, "
            "CAST(? AS TIMESTAMP) AS published_at",
            [run_id, business_date, started_at.rstrip("Z")],
        )
        con.execute("DETACH pub")  # checkpoints the new file: no .wal is left beside it
    except Exception as exc:
        con.close()
        staging.unlink(missing_ok=True)
        control.record_stage(settings, run_id, business_date, "publish", "FAILED", started_at, message=str(exc))
        raise
    con.close()
    os.replace(staging, target)
    summary = {"business_date": business_date, "run_id": run_id, "published": str(target),
               "tables": tables, "removed_leftovers": removed, "seconds": round(time.monotonic() - t0, 3)}
    control.record_stage(settings, run_id, business_date, "publish", "SUCCESS", started_at,
                         rows_out=sum(tables.values()))
    return summary
