"""`midoffice versions`: the published versions of the lake (DOMAIN §10.1), and how to open one."""

from __future__ import annotations

import sys
from pathlib import Path

from midoffice import lake
from midoffice.config import Settings, default_home
from midoffice.query import EXIT_OK, EXIT_USAGE, render_table, write_csv, write_json

HEADERS = ["version", "published_at", "run_id", "business_date", "dates", "restated", "reason"]


def rows(settings: Settings) -> list[tuple]:
    con = lake.reader(settings)
    try:
        found = lake.versions(con)
    finally:
        con.close()
    return [(v.version, v.published_at.isoformat(sep=" ", timespec="seconds") + "Z", v.run_id, v.business_date,
             ", ".join(v.dates), ", ".join(v.restated), v.reason) for v in found]


def show_versions(home: str | Path | None, fmt: str = "table", attach: str | None = None, out=None) -> int:
    out = out or sys.stdout
    h = Path(home).resolve() if home else default_home()
    settings = Settings(landing=h, home=h)
    if not lake.exists(settings):
        print(f"midoffice: error: nothing published yet ({lake.describe(settings)} does not exist)", file=sys.stderr)
        return EXIT_USAGE
    if attach is not None:
        if attach != "current" and not attach.isdigit():
            print(f"midoffice: error: --attach takes a version number, not {attach!r}", file=sys.stderr)
            return EXIT_USAGE
        print(lake.attach_sql(settings, None if attach == "current" else int(attach)), file=out)
        return EXIT_OK
    try:
        found = rows(settings)
    except lake.LakeError as exc:
        print(f"midoffice: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if fmt == "csv":
        write_csv(HEADERS, [found], out)
    elif fmt == "json":
        write_json(HEADERS, [found], out)
    else:
        for line in render_table(HEADERS, found, width=60, null=""):
            out.write(line + "\n")
    return EXIT_OK
