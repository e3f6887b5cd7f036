"""Read-only access to the published warehouse: `midoffice query` and `midoffice status`.

Opens <home>/warehouse/marts.duckdb read-only. Publishing swaps that file atomically (a new file
is os.replace()d over the old one) and the pipeline never holds it open, so these work while a
run is writing: a query sees the publication that was in place when it connected.

The analyst's SQL runs with external access off and the configuration locked: it can read the
marts, not files elsewhere on the machine, and cannot write anything (no COPY TO, no ATTACH).

Output is streamed in batches (csv, json) so a large result does not have to fit in memory, and
a closed pipe (`midoffice query ... | head`) ends the command quietly with status 0.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import math
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator, TextIO

from midoffice.config import Settings, default_home
from midoffice.duck import connect

EXIT_OK, EXIT_USAGE = 0, 2
BATCH_ROWS = 10_000
TABLE_MAX_ROWS = 10_000   # the table format is for reading; csv/json give every row
TEXT_WIDTH = 40           # longer text is cut with an ellipsis in the table format


class NothingPublished(RuntimeError):
    pass


def published_settings(home: str | Path | None) -> Settings:
    h = Path(home).resolve() if home else default_home()
    settings = Settings(landing=h, home=h)
    if not settings.published_db.is_file():
        raise NothingPublished(f"nothing published yet at {settings.published_db} (run `midoffice run` first)")
    return settings


def open_published(settings: Settings):
    """A read-only connection that can only see the published marts."""
    con = connect(settings, settings.published_db, read_only=True)
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


# --- formatting --------------------------------------------------------------------------------

def is_number(v) -> bool:
    return isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool)


def format_cell(v, width: int = TEXT_WIDTH, null: str = "NULL") -> str:
    """A value as an analyst wants to read it: thousands separators, no float noise, NULL shown.

    Amounts of 1,000 or more get two decimals; smaller fractional numbers six significant digits
    (more when six would show a non-integer as an integer: a utilisation of 0.9999999 is not "1").
    Exact values: --format csv or json.
    """
    if v is None:
        return null
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, (float, decimal.Decimal)):
        f = float(v)
        if math.isnan(f) or math.isinf(f):
            return str(f)
        if abs(f) >= 1000:
            return f"{f:,.2f}"
        if f == 0:
            return "0"
        text = f"{f:.6g}"
        if f != int(f) and "." not in text and "e" not in text:
            text = f"{f:.12g}"
        return text
    if isinstance(v, dt.datetime):
        text = v.isoformat(sep=" ")
    else:
        text = str(v)
    text = " ".join(text.split())  # one line per row, whatever the text holds
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(headers: list[str], rows: list[tuple], total_note: str = "", width: int = TEXT_WIDTH,
                 null: str = "NULL") -> Iterator[str]:
    """Aligned text table: numbers right-aligned, text left-aligned and cut at `width` characters."""
    numeric = [bool(rows) and all(r[i] is None or is_number(r[i]) for r in rows)
               and any(is_number(r[i]) for r in rows) for i in range(len(headers))]
    cells = [[format_cell(v, width, null) for v in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    yield line(list(headers))
    yield "  ".join("-" * w for w in widths)
    for r in cells:
        yield line(r)
    yield f"({len(rows):,} row{'s' if len(rows) != 1 else ''}{total_note})"


def json_value(v):
    if isinstance(v, decimal.Decimal):
        v = float(v)
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, (dt.date, dt.datetime, dt.time)):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, (list, tuple)):
        return [json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): json_value(x) for k, x in v.items()}
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def _batches(cur) -> Iterator[list[tuple]]:
    while True:
        rows = cur.fetchmany(BATCH_ROWS)
        if not rows:
            return
        yield rows


def write_csv(headers: list[str], batches: Iterable[list[tuple]], out: TextIO) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(headers)
    for rows in batches:
        w.writerows(rows)


def write_json(headers: list[str], batches: Iterable[list[tuple]], out: TextIO) -> None:
    """A JSON array of objects, written as it streams (one object per line)."""
    first = True
    out.write("[")
    for rows in batches:
        for r in rows:
            out.write(("\n" if first else ",\n") + json.dumps({h: json_value(v) for h, v in zip(headers, r)},
                                                             ensure_ascii=False))
            first = False
    out.write("\n]\n" if not first else "]\n")


# --- broken pipes ------------------------------------------------------------------------------

def _quiet_broken_pipe() -> int:
    """The reader went away (`| head`): stop writing and exit 0 without a traceback.

    Python would otherwise fail again flushing stdout at exit; point it at /dev/null.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_OK


# --- commands ----------------------------------------------------------------------------------

def run_query(sql: str, home: str | None, fmt: str = "table", out: TextIO | None = None) -> int:
    """`midoffice query`: one SQL statement, read-only, against the published warehouse."""
    out = out or sys.stdout
    try:
        settings = published_settings(home)
    except NothingPublished as exc:
        print(f"midoffice: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    con = open_published(settings)
    try:
        try:
            cur = con.execute(sql)
            headers = [d[0] for d in cur.description] if cur.description else []
        except Exception as exc:  # DuckDB's message says what is wrong with the SQL
            print(f"midoffice: query failed: {exc}", file=sys.stderr)
            return EXIT_USAGE
        try:
            if fmt == "csv":
                write_csv(headers, _batches(cur), out)
            elif fmt == "json":
                write_json(headers, _batches(cur), out)
            else:
                rows = cur.fetchmany(TABLE_MAX_ROWS + 1) if headers else []
                note = ""
                if len(rows) > TABLE_MAX_ROWS:
                    rows, note = rows[:TABLE_MAX_ROWS], " shown; more not shown: use --format csv for all"
                for text in render_table(headers, rows, note):
                    out.write(text + "\n")
            out.flush()
        except BrokenPipeError:
            return _quiet_broken_pipe()
        except Exception as exc:  # an error raised while fetching (e.g. a failing cast)
            print(f"midoffice: query failed: {exc}", file=sys.stderr)
            return EXIT_USAGE
    finally:
        con.close()
    return EXIT_OK


STATUS_SQL = """
WITH runs AS (
    SELECT run_id, business_date, stage, status, finished_at,
           CASE WHEN stage LIKE '%:%' THEN split_part(stage, ':', 2) END AS feed
    FROM pipeline_runs
),
last_run_per_date AS (
    -- the run that finished last for the date, and whether any of its stages failed
    SELECT business_date, arg_max(run_id, finished_at) AS run_id, max(finished_at) AS finished_at
    FROM runs GROUP BY business_date
),
run_outcome AS (
    SELECT r.business_date, r.run_id, l.finished_at,
           CASE WHEN bool_or(r.status <> 'SUCCESS') THEN 'FAILED' ELSE 'SUCCESS' END AS run_status
    FROM runs r JOIN last_run_per_date l USING (business_date, run_id)
    GROUP BY ALL
),
final AS (
    SELECT h.business_date, h.feed, h.gate, h.received_rows, h.loaded_rows, h.quarantined_rows,
           h.freshness, o.run_id AS last_run, o.run_status AS last_run_status,
           date_trunc('second', o.finished_at) AS last_run_finished_at, h.reason
    FROM dq_feed_health h
    LEFT JOIN run_outcome o USING (business_date)
)
SELECT * FROM final ORDER BY business_date, feed
"""

STATUS_TEXT_WIDTH = 64  # run ids are long; a failure's reason is cut here (full text: dq_feed_health.reason)
STATUS_HEADERS = ["business_date", "feed", "gate", "received", "loaded", "quarantined", "freshness",
                  "last_run", "run_status", "finished_at", "reason"]


def status_rows(settings: Settings) -> list[tuple]:
    con = open_published(settings)
    try:
        return con.execute(STATUS_SQL).fetchall()
    finally:
        con.close()


def show_status(home: str | None, out: TextIO | None = None) -> int:
    """`midoffice status`: per business date and feed, the gate, rows, quarantined rows and last run."""
    out = out or sys.stdout
    try:
        settings = published_settings(home)
    except NothingPublished as exc:
        print(f"midoffice: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    rows = status_rows(settings)
    try:
        for text in render_table(STATUS_HEADERS, rows, width=STATUS_TEXT_WIDTH, null=""):
            out.write(text + "\n")
        dates = sorted({r[0] for r in rows})
        failed = [(r[0], r[1]) for r in rows if r[2] != "PASS"]
        out.write(f"{len(dates)} business date{'s' if len(dates) != 1 else ''} published"
                  + (f", {dates[0]} to {dates[-1]}" if dates else "")
                  + (f"; {len(failed)} feed gate{'s' if len(failed) != 1 else ''} failed: "
                     + ", ".join(f"{d} {f}" for d, f in failed[:10]) + (" ..." if len(failed) > 10 else "")
                     if failed else "; every feed passed its gate") + "\n")
        out.flush()
    except BrokenPipeError:
        return _quiet_broken_pipe()
    return EXIT_OK
