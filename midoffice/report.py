"""Reports: the daily pack (one self-contained HTML page) and extracts of every mart, per date.

Reads only the published warehouse (read-only), so it shows exactly what analysts see.
"""

from __future__ import annotations

import hashlib
import html
import json
import time

from midoffice import control
from midoffice.config import Settings
from midoffice.duck import connect, quote_ident as q, sql_literal_path
from midoffice.models import load_models


def _fmt_usd(x) -> str:
    if x is None:
        return "n/a"
    for unit, div in (("bn", 1e9), ("m", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:,.2f} {unit}"
    return f"{x:,.0f}"


def _bar_chart(rows: list[tuple[str, float]], width: int = 520) -> str:
    """A horizontal bar chart as inline SVG (no scripts, no network)."""
    if not rows:
        return "<p>No data.</p>"
    top = max(abs(v) for _, v in rows) or 1.0
    bar_h, gap, label_w = 22, 6, 130
    height = len(rows) * (bar_h + gap)
    parts = [f'<svg role="img" width="{width + label_w + 90}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for i, (label, value) in enumerate(rows):
        y = i * (bar_h + gap)
        w = max(1, int(abs(value) / top * width))
        color = "#2b6cb0" if value >= 0 else "#c53030"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" font-size="12">{html.escape(str(label))}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" fill="{color}"><title>{html.escape(str(label))}: {value:,.0f}</title></rect>'
            f'<text x="{label_w + w + 6}" y="{y + 15}" font-size="12">{_fmt_usd(value)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: list[str], rows: list[tuple]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1a202c;background:#f7fafc}
h1{margin:0 0 4px} .sub{color:#4a5568;margin-bottom:20px}
.tiles{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:24px}
.tile{background:#fff;border-radius:8px;padding:12px 16px;min-width:170px;box-shadow:0 1px 3px rgba(0,0,0,.12)}
.tile .k{font-size:12px;color:#4a5568;text-transform:uppercase;letter-spacing:.04em}
.tile .v{font-size:24px;font-weight:600;margin-top:4px}
.bad{color:#c53030} .good{color:#2f855a}
section{background:#fff;border-radius:8px;padding:16px;margin-bottom:16px;box-shadow:0 1px 3px rgba(0,0,0,.12)}
table{border-collapse:collapse;font-size:13px} th,td{padding:4px 10px;border-bottom:1px solid #e2e8f0;text-align:left}
th{background:#edf2f7}
"""


def _kpis(con, d: str) -> dict:
    kpi = {}
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "risk_exposure" in tables:
        kpi["gross_usd"], kpi["net_usd"], kpi["positions"] = con.execute(
            "SELECT sum(abs(market_value_usd)), sum(market_value_usd), count(*) FROM risk_exposure "
            "WHERE as_of_date = ? AND holder_type = 'BOOK'", [d]).fetchone()
    if "dq_feed_health" in tables:
        kpi["feeds_passed"], kpi["feeds"], kpi["quarantined"], kpi["received"] = con.execute(
            "SELECT count(*) FILTER (WHERE gate = 'PASS'), count(*), coalesce(sum(quarantined_rows), 0), "
            "coalesce(sum(received_rows), 0) FROM dq_feed_health WHERE business_date = ?", [d]).fetchone()
    return kpi


def _extracts(con, settings: Settings, d: str) -> list[dict]:
    out_dir = settings.reports / d / "extracts"
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    index = []
    for model in load_models():
        if model.name not in tables:
            continue
        where = f"WHERE {q(model.partition)} = CAST('{d}' AS DATE)"
        order = ", ".join(q(c) for c in model.grain)
        for fmt in ("csv", "parquet"):
            path = out_dir / f"{model.name}.{fmt}"
            opts = "FORMAT csv, HEADER true" if fmt == "csv" else "FORMAT parquet, COMPRESSION zstd"
            con.execute(f"COPY (SELECT * FROM {q(model.name)} {where} ORDER BY {order}) TO {sql_literal_path(path)} ({opts})")
        rows = con.execute(f"SELECT count(*) FROM {q(model.name)} {where}").fetchone()[0]
        index.append({
            "mart": model.name, "rows": rows, "grain": list(model.grain),
            "csv": f"{model.name}.csv", "parquet": f"{model.name}.parquet",
            "sha256_csv": hashlib.sha256((out_dir / f"{model.name}.csv").read_bytes()).hexdigest(),
        })
    control.write_json_atomic(out_dir / "index.json", {"business_date": d, "extracts": index})
    return index


def build_report(settings: Settings, business_date: str, run_id: str) -> dict:
    started_at = control.utc_now()
    t0 = time.monotonic()
    d = business_date
    if not settings.published_db.is_file():
        raise FileNotFoundError(f"{d}: nothing published yet at {settings.published_db}")
    con = connect(settings, settings.published_db, read_only=True)
    try:
        kpi = _kpis(con, d)
        extracts = _extracts(con, settings, d)
        by_asset = con.execute(
            "SELECT asset_class, sum(market_value_usd) FROM risk_exposure WHERE as_of_date = ? AND holder_type = 'BOOK' "
            "GROUP BY 1 ORDER BY abs(sum(market_value_usd)) DESC", [d]).fetchall() if kpi.get("positions") is not None else []
        by_book = con.execute(
            "SELECT holder_id, sum(abs(market_value_usd)) FROM risk_exposure WHERE as_of_date = ? AND holder_type = 'BOOK' "
            "GROUP BY 1 ORDER BY 2 DESC", [d]).fetchall() if kpi.get("positions") is not None else []
        health = con.execute(
            "SELECT feed, gate, expected_rows, received_rows, loaded_rows, quarantined_rows, freshness, reason "
            "FROM dq_feed_health WHERE business_date = ? ORDER BY gate, feed", [d]).fetchall()
        skipped = con.execute(
            "SELECT mart, reason FROM build_log WHERE business_date = ? AND status = 'SKIPPED'", [d]).fetchall()
    finally:
        con.close()
    passed = kpi.get("feeds_passed", 0)
    tiles = [
        ("Firm gross exposure (USD)", _fmt_usd(kpi.get("gross_usd")), ""),
        ("Firm net exposure (USD)", _fmt_usd(kpi.get("net_usd")), ""),
        ("Book positions", f"{kpi.get('positions') or 0:,}", ""),
        ("Feeds passing their gate", f"{passed} / {kpi.get('feeds', 0)}", "good" if passed == kpi.get("feeds") else "bad"),
        ("Records quarantined", f"{kpi.get('quarantined', 0):,} of {kpi.get('received', 0):,}", ""),
    ]
    tile_html = "".join(
        f'<div class="tile" data-kpi="{html.escape(k)}"><div class="k">{html.escape(k)}</div>'
        f'<div class="v {cls}">{html.escape(v)}</div></div>' for k, v, cls in tiles
    )
    skipped_html = (
        "<section><h2>Not updated for this date</h2>" + _table(["mart", "reason"], skipped) + "</section>"
        if skipped else ""
    )
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>midoffice daily pack {d}</title><style>{CSS}</style></head><body>
<h1>Daily pack — {d}</h1><div class="sub">Reporting currency USD · published warehouse · run {html.escape(run_id)}</div>
<div class="tiles">{tile_html}</div>{skipped_html}
<section><h2>Exposure by asset class (net, BOOK holdings)</h2>{_bar_chart([(a or "unknown", v or 0.0) for a, v in by_asset])}</section>
<section><h2>Exposure by book (gross)</h2>{_bar_chart([(b, v or 0.0) for b, v in by_book])}</section>
<section><h2>Data-quality health</h2>{_table(["feed", "gate", "expected", "received", "loaded", "quarantined", "freshness", "reason"], health)}</section>
<section><h2>Extracts</h2>{_table(["mart", "rows", "CSV", "Parquet"], [(e["mart"], e["rows"], "extracts/" + e["csv"], "extracts/" + e["parquet"]) for e in extracts])}</section>
</body></html>"""
    out = settings.reports / d / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    docs = None
    try:
        from midoffice.validate import build_data_docs

        docs = str(build_data_docs(settings, d))
    except Exception as exc:  # the pack stands without the GX site; say so in the ledger
        docs = f"not built: {exc}"
    summary = {"business_date": d, "report": str(out), "extracts": len(extracts), "data_docs": docs,
               "seconds": round(time.monotonic() - t0, 3)}
    control.record_stage(settings, run_id, d, "report", "SUCCESS", started_at, rows_out=len(extracts),
                         message=json.dumps({"data_docs": docs})[:500])
    return summary
