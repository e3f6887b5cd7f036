"""Control records: small JSON facts per stage, feed and date (ingest, validation, gate, runs).

Stages that may run in parallel processes write here instead of into the warehouse file (which
has one writer); the warehouse build loads them into dq_feed_health and pipeline_runs.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from midoffice.config import Settings


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=1, sort_keys=True, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def write_record(settings: Settings, kind: str, feed: str, business_date: str, payload: dict) -> None:
    write_json_atomic(settings.control_file(kind, feed, business_date), payload)


def read_record(settings: Settings, kind: str, feed: str, business_date: str) -> dict | None:
    return read_json(settings.control_file(kind, feed, business_date))


def record_stage(
    settings: Settings, run_id: str, business_date: str, stage: str, status: str,
    started_at: str, rows_in: int | None = None, rows_out: int | None = None, message: str = "",
) -> None:
    """One pipeline_runs row, as a file (stages may run in different processes)."""
    safe_run = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run_id)
    path = settings.control / "runs" / business_date / safe_run / f"{stage}.json"
    write_json_atomic(path, {
        "run_id": run_id, "business_date": business_date, "stage": stage, "status": status,
        "started_at": started_at, "finished_at": utc_now(), "rows_in": rows_in,
        "rows_out": rows_out, "message": message[:2000],
    })
