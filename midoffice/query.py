"""Read-only access to the published warehouse: `midoffice query` and `midoffice status`.

Opens <home>/warehouse/marts.duckdb read-only. Publishing swaps that file atomically, and the
pipeline never holds it open, so these work while a run is writing.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from midoffice.config import Settings, default_home
from midoffice.duck import connect


def _published(home: str | None) -> Settings:
    h = Path(home).resolve() if home else default_home()
    settings = Settings(landing=h, home=h)
    if not settings.published_db.is_file():
        print(f"midoffice: error: nothing published yet at {settings.published_db}", file=sys.stderr)
        raise SystemExit(2)
    return settings


def _print_table(headers: list[str], rows: list[tuple], out=sys.stdout) -> None:
    text = [[("" if v is None else str(v)) for v in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in text:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)), file=out)
    print(f"({len(rows)} rows)", file=out)


def run_query(sql: str, home: str | None, fmt: str = "table") -> int:
    settings = _published(home)
    con = connect(settings, settings.published_db, read_only=True)
    try:
        cur = con.execute(sql)
        headers = [d[0] for d in cur.description] if cur.description else []
        rows = cur.fetchall() if headers else []
    except Exception as exc:
        print(f"midoffice: query failed: {exc}", file=sys.stderr)
        return 2
    finally:
        con.close()
    if fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(headers)
        w.writerows(rows)
    elif fmt == "json":
        print(json.dumps([dict(zip(headers, r)) for r in rows], default=str, indent=1))
    else:
        _print_table(headers, rows)
    return 0


def show_status(home: str | None) -> int:
    settings = _published(home)
    con = connect(settings, settings.published_db, read_only=True)
    try:
        rows = con.execute("""
            SELECT h.business_date, h.feed, h.gate, h.loaded_rows AS rows, h.quarantined_rows AS quarantined,
                   h.freshness, r.last_run, left(coalesce(h.reason, ''), 80) AS reason
            FROM dq_feed_health h
            LEFT JOIN (SELECT business_date, max(finished_at) AS last_run FROM pipeline_runs GROUP BY 1) r
              USING (business_date)
            ORDER BY h.business_date, h.feed
        """).fetchall()
    finally:
        con.close()
    _print_table(["business_date", "feed", "gate", "rows", "quarantined", "freshness", "last_run", "reason"], rows)
    return 0
