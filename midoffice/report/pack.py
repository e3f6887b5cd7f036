"""The daily pack of one business date: its sections rendered with the templates, the
extracts and the dictionary page beside it (`build_report`, called by the CLI and the DAG).

Output for a date is a pure function of the published warehouse: rebuilding it gives the same
bytes.
"""

from __future__ import annotations

import decimal
import json
import os
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from midoffice import control
from midoffice.config import Settings
from midoffice import lake
from midoffice.people import store
from midoffice.report import queries as Q
from midoffice.report.extracts import write_extracts
from midoffice.report.queries import Pack
from midoffice.report.render import render
from midoffice.report.sections import SECTIONS, kpi_tiles, section_extracts
from midoffice.report.view import Section
from midoffice.report.worklist import team_extracts


class ReportError(RuntimeError):
    """A section of the pack failed (a bug, not missing data); the page still says which."""


class NothingPublishedForDate(LookupError):
    """The published warehouse holds nothing for the business date (never run, or not yet)."""


def _safe(p: Pack, sid: str, title: str, build) -> Section:
    """A section that raises is shown as failed (and the report stage fails after writing the page)."""
    try:
        return build()
    except Exception as exc:
        p.errors.append(f"{sid}: {type(exc).__name__}: {exc}")
        return Section(sid, title, [], failed=str(exc) or traceback.format_exception_only(exc)[-1].strip())


def render_pack(p: Pack, run_id: str, extracts: list[dict], absent: list[str],
                signoffs: list[dict] | None = None) -> tuple[str, dict]:
    """The page and the KPIs it shows (key -> value). `signoffs`: the people's sign-off records
    (midoffice.people.store), read by the caller; the page shows the date's state from them."""
    from midoffice.restate import restatements_of
    from midoffice.signoff import state_of

    tgts = Q.targets(p)
    tiles = kpi_tiles(p, tgts)
    sections = [_safe(p, sid, title, lambda build=build: build(p, tgts)) for sid, title, build in SECTIONS]
    sections.append(section_extracts(extracts, absent))
    publication = Q.publication(p)
    signoff = state_of(signoffs or [], p.d, publication["date_version"] if publication else None)
    restated = _restated(restatements_of(p.con, p.d))
    page = render("pack.html.j2", d=p.d, run_id=run_id, publication=publication, signoff=signoff, restated=restated,
                  tiles=tiles,
                  sections=sections, nav=[(sid, title) for sid, title, _ in SECTIONS] + [("extracts", "Extracts")])
    return page, {t.key: t.value for t in tiles if t.available}


def _restated(rows: list[dict]) -> list[dict]:
    """The restatements of the date, one entry a version (newest first): its reason, the marts
    whose rows changed and the key figures before and after."""
    out: dict[int, dict] = {}
    for r in rows:
        v = out.setdefault(r["version"], {"version": r["version"], "previous_version": r["previous_version"],
                                          "reason": r["reason"], "marts": [], "figures": []})
        if r["rows_added"] or r["rows_removed"] or r["rows_changed"]:
            v["marts"].append(f"{r['mart']} (+{r['rows_added']} −{r['rows_removed']} ~{r['rows_changed']})")
        if not v["figures"]:
            for name, label in (("firm_exposure", "firm gross exposure"), ("firm_var", "firm VaR 99%"),
                                ("open_breaks", "open breaks"), ("pnl", "P&L")):
                before, after = r[f"{name}_before"], r[f"{name}_after"]
                if before is not None or after is not None:
                    v["figures"].append({"label": label, "before": before, "after": after})
    return list(out.values())


def _data_docs(settings: Settings, d: str) -> str:
    """The GX site's index, or why it was not built: the pack stands without it."""
    try:
        from midoffice.validate import build_data_docs

        return str(build_data_docs(settings, d))
    except Exception as exc:
        return f"not built: {exc}"


def build_report(settings: Settings, business_date: str, run_id: str) -> dict:
    """The daily pack, the dictionary page and the extracts for one business date."""
    from midoffice.dictionary import published_columns, render_html

    started_at = control.utc_now()
    t0 = time.monotonic()
    d = business_date
    if not lake.exists(settings):
        raise FileNotFoundError(f"{d}: nothing published yet ({lake.describe(settings)})")
    out_dir = settings.reports / d
    out_dir.mkdir(parents=True, exist_ok=True)
    docs_future = None
    # the version current now, held for the whole pack: a publication meanwhile does not mix in
    con = lake.reader(settings, writable=(out_dir, settings.tmp))
    try:
        published = published_columns(con)
        columns = {t: {c for c, _ in cols} for t, cols in published.items()}
        p = Pack(con, d, columns, quarantine_threshold=settings.quarantine_threshold)
        if p.has("dq_feed_health", "business_date") and not p.has_rows("dq_feed_health", "business_date"):
            # the data-quality marts are built for every date that ran, whatever its gates said
            first, last = Q.published_range(p)
            raise NothingPublishedForDate(
                f"{d}: nothing published for this business date"
                + (f" (published dates run from {first} to {last})" if first else " (no date published yet)"))
        p.skipped = Q.skipped_marts(p)
        # GX renders its Data Docs in Python (about 3 s, more with its import) while DuckDB writes the
        # extracts, which release the GIL: the two overlap instead of adding up.
        docs_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="data-docs")
        docs_future = docs_worker.submit(_data_docs, settings, d)
        docs_worker.shutdown(wait=False)
        extracts, absent = write_extracts(con, settings, d, published, lake.current_version(con))
        teams = team_extracts(con, settings.reports / d / "extracts", d)  # each team's open items
        page, shown = render_pack(p, run_id, extracts, absent, signoffs=store.records(settings, "signoffs"))
        rows = {e["mart"]: e["rows"] for e in extracts}
        dictionary = render_html(d, published, rows)
    finally:
        con.close()
        if docs_future is not None:  # also on failure: nothing of this call writes after it returns
            docs = docs_future.result()
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("dictionary.html", dictionary), ("index.html", page)):  # the pack last: it links the rest
        _write_then_swap(out_dir / name, text)
    summary = {"business_date": d, "report": str(out_dir / "index.html"), "dictionary": str(out_dir / "dictionary.html"),
               "bytes": len(page.encode("utf-8")), "extracts": len(extracts), "team_extracts": teams, "not_published": absent,
               "kpis": {k: float(v) if isinstance(v, decimal.Decimal) else v for k, v in shown.items()}, "section_errors": p.errors, "data_docs": docs,
               "seconds": round(time.monotonic() - t0, 3)}
    status = "FAILED" if p.errors else "SUCCESS"
    control.record_stage(settings, run_id, d, "report", status, started_at, rows_out=len(extracts),
                         message=json.dumps({"section_errors": p.errors, "data_docs": docs}, default=str)[:2000])
    if p.errors:
        raise ReportError(f"{d}: the daily pack was written but sections failed: " + "; ".join(p.errors))
    return summary


def _write_then_swap(path: Path, text: str) -> None:
    """Write under a temporary name, then rename: a reader (or a killed report) never sees half a page."""
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
