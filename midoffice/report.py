"""Reports: the daily pack (one self-contained HTML page), the data dictionary page and extracts
of every mart, per business date.

Reads only the published warehouse (read-only), so the pack shows exactly what analysts see.
The page needs no network: styles are inline, charts are inline SVG, there are no scripts.
Every figure carries `data-mart` and `data-column` attributes (and `data-value`, the unrounded
number), and every chart and table a "source: mart.column" caption, so a reader (or a test) can
tie any number on the page back to the warehouse.

Each section reads the marts it needs and says "not available" when one is not published (or
has no rows for the date, with the build's reason when the build kept it), so the pack works
with whatever the warehouse holds and grows as marts are added. Output for a date is a pure
function of the published warehouse: rebuilding it gives the same bytes. That is why sums of
DOUBLE columns here are DECIMAL, as in the marts: a mart's rows may be scanned by several
threads, and a DOUBLE sum's last bits depend on the order in which they combine.
"""

from __future__ import annotations

import decimal
import hashlib
import html
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

from midoffice import control
from midoffice.config import Settings
from midoffice.duck import connect, quote_ident as q, restrict_to, sql_literal_path
from midoffice.models import published_models


class ReportError(RuntimeError):
    """A section of the pack failed (a bug, not missing data); the page still says which."""


class NothingPublishedForDate(LookupError):
    """The published warehouse holds nothing for the business date (never run, or not yet)."""


# --- number formats ----------------------------------------------------------------------------

def fmt_usd(x) -> str:
    """Money in the pack's short form: 1.23 bn, 45.60 m, 7.89 k, 512."""
    if x is None:
        return "n/a"
    for unit, div in (("bn", 1e9), ("m", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:,.2f} {unit}"
    return f"{x:,.0f}"


def fmt_pct(x, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x * 100:.{digits}f} %"


def fmt_count(x) -> str:
    return "n/a" if x is None else f"{int(x):,}"


def fmt_ratio(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def fmt_plain(x) -> str:
    return "" if x is None else str(x)


def _e(x) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _num_attr(x) -> str:
    """The unrounded value for data-value (repr keeps every digit of a float)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return repr(float(x)) if isinstance(x, float) else str(x)


def _short(text: str, n: int = 22) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


# --- the warehouse as the pack sees it ---------------------------------------------------------

@dataclass
class Pack:
    con: object
    d: str
    columns: dict[str, set[str]]                      # published table -> its columns
    skipped: dict[str, str] = field(default_factory=dict)  # mart -> why the build kept it for d
    quarantine_threshold: float = 0.01                       # the gate's share (Settings)
    errors: list[str] = field(default_factory=list)

    def has(self, mart: str, *cols: str) -> bool:
        return mart in self.columns and set(cols) <= self.columns[mart]

    def missing(self, mart: str, *cols: str) -> str | None:
        """Why a section cannot use `mart`, or None when it can."""
        if mart not in self.columns:
            return f"{mart} is not in the published warehouse"
        lacking = [c for c in cols if c not in self.columns[mart]]
        if lacking:
            return f"{mart} has no column {', '.join(lacking)}"
        return None

    def rows(self, sql: str, params: Sequence = ()) -> list[tuple]:
        return self.con.execute(sql, list(params)).fetchall()

    def one(self, sql: str, params: Sequence = ()):
        return self.con.execute(sql, list(params)).fetchone()

    def has_rows(self, mart: str, partition: str) -> bool:
        return self.one(f"SELECT count(*) FROM {q(mart)} WHERE {q(partition)} = ?", [self.d])[0] > 0

    def why_empty(self, mart: str) -> str:
        reason = self.skipped.get(mart)
        return f"{mart} has no rows for {self.d}" + (f" ({reason})" if reason else "")


def _not_available(reason: str) -> str:
    return f'<p class="na" data-state="not-available">Not available: {_e(reason)}.</p>'


def _source(*refs: str, note: str = "") -> str:
    text = "source: " + ", ".join(refs) + (f" ({note})" if note else "")
    return f'<figcaption class="src">{_e(text)}</figcaption>'


# --- inline SVG charts -------------------------------------------------------------------------

PALETTE = {"blue": "#2b6cb0", "teal": "#2c7a7b", "red": "#c53030", "amber": "#d69e2e", "green": "#2f855a",
           "grey": "#a0aec0", "dark": "#2d3748", "purple": "#6b46c1", "orange": "#dd6b20", "light": "#90cdf4"}


@dataclass
class Series:
    column: str
    name: str
    color: str


@dataclass
class Bar:
    label: str
    values: tuple                      # one value per series (None: no bar)
    colors: tuple | None = None        # per-series colour override for this row
    note: str = ""                     # text after the values
    member: str | None = None          # data-member, defaults to the label
    ticks: tuple = ()                  # (value, colour, title): a marker on this row (e.g. its target)


def hbar_chart(bars: list[Bar], series: list[Series], *, mart: str, fmt: Callable = fmt_usd,
               refs: Sequence[tuple[float, str, str]] = (), width: int = 660, label_w: int = 150,
               dimension: str = "") -> str:
    """Horizontal bars, one row per member and one thin bar per series, with reference lines.

    Values can be negative (bars go left of the zero line). Every bar and value label carries
    data-mart, data-column, data-member and the unrounded data-value.
    """
    if not bars:
        return '<p class="na">No rows for this date.</p>'
    vals = [v for b in bars for v in b.values if v is not None]
    vals += [r[0] for r in refs] + [t[0] for b in bars for t in b.ticks]
    lo, hi = min([0.0] + vals), max([0.0] + vals)
    if hi == lo:
        hi = lo + 1.0
    longest = max(len(fmt(v)) + (len(b.note) + 3 if b.note else 0) for b in bars for v in b.values if v is not None)
    text_w = int(min(max(70, 6.3 * longest + 12), width * 0.45))
    plot_w = width - label_w - text_w
    legend_h = 20 if len(series) > 1 else 0
    sub_h = 14 if len(series) > 1 else 18
    row_h = sub_h * len(series) + 8
    height = legend_h + len(bars) * row_h + 18

    def x(v: float) -> float:
        return label_w + (v - lo) / (hi - lo) * plot_w

    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'xmlns="http://www.w3.org/2000/svg" data-mart="{_e(mart)}">']
    if legend_h:
        lx = label_w
        for s in series:
            out.append(f'<rect x="{lx}" y="4" width="10" height="10" fill="{s.color}"/>'
                       f'<text x="{lx + 14}" y="13" class="lg">{_e(s.name)}</text>')
            lx += 24 + 7 * len(s.name)
    for i, b in enumerate(bars):
        y0 = legend_h + i * row_h + 4
        member = b.member if b.member is not None else b.label
        out.append(f'<text x="{label_w - 6}" y="{y0 + row_h / 2}" text-anchor="end" class="lb">'
                   f'<title>{_e(b.label)}</title>{_e(_short(b.label))}</text>')
        for j, (s, v) in enumerate(zip(series, b.values)):
            if v is None:
                continue
            color = b.colors[j] if b.colors and b.colors[j] else s.color
            x0, x1 = sorted((x(0.0), x(v)))
            yy = y0 + j * sub_h
            attrs = (f'data-mart="{_e(mart)}" data-column="{_e(s.column)}" data-member="{_e(member)}" '
                     f'data-value="{_num_attr(v)}"')
            out.append(f'<rect x="{x0:.1f}" y="{yy}" width="{max(x1 - x0, 1):.1f}" height="{sub_h - 2}" '
                       f'fill="{color}" {attrs}><title>{_e(b.label)} · {_e(s.name)}: {_e(fmt(v))}'
                       f'{" (" + _e(dimension) + ")" if dimension else ""}</title></rect>')
            out.append(f'<text x="{width - text_w + 6}" y="{yy + sub_h - 4}" class="vl" {attrs}>'
                       f'{_e(fmt(v))}{(" · " + _e(b.note)) if b.note and j == len(series) - 1 else ""}</text>')
        for tv, tc, tt in b.ticks:
            out.append(f'<rect x="{x(tv) - 1.5:.1f}" y="{y0 - 2}" width="3" height="{row_h - 4}" fill="{tc}">'
                       f"<title>{_e(tt)}</title></rect>")
    top, bottom = legend_h, height - 16
    if lo < 0:
        out.append(f'<line x1="{x(0):.1f}" y1="{top}" x2="{x(0):.1f}" y2="{bottom}" stroke="#4a5568"/>')
    for k, (value, color, label) in enumerate(sorted(refs)):
        # the lowest reference is labelled to the left of its line, the others to the right
        anchor, dx = ("end", -3) if k == 0 and len(refs) > 1 else ("start", 3)
        out.append(f'<line x1="{x(value):.1f}" y1="{top}" x2="{x(value):.1f}" y2="{bottom}" stroke="{color}" '
                   f'stroke-dasharray="4 3" stroke-width="1.5"/><text x="{x(value) + dx:.1f}" y="{height - 4}" '
                   f'text-anchor="{anchor}" class="rf" fill="{color}">{_e(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round gridline values (1, 2, 2.5 or 5 × 10^k apart) covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = [start]
    while ticks[-1] < hi - 1e-12 * abs(hi):
        ticks.append(ticks[-1] + step)
    return ticks


@dataclass
class Line:
    column: str
    name: str
    color: str
    points: dict                       # date -> value
    mart: str
    dashed: bool = False


@dataclass
class Column:
    column: str
    name: str
    mart: str
    points: dict                       # date -> (value, colour, title)


def time_chart(dates: list[str], lines: list[Line], columns: Column | None = None, *, fmt: Callable = fmt_usd,
               width: int = 660, height: int = 240, refs: Sequence[tuple[float, str, str]] = ()) -> str:
    """Dates on x (evenly spaced business dates), lines and optional columns (bars) on y."""
    if not dates:
        return '<p class="na">No rows for this date.</p>'
    left, right, top, bottom = 70, 12, 26, 28
    vals = [v for ln in lines for v in ln.points.values() if v is not None]
    if columns:
        vals += [p[0] for p in columns.points.values() if p[0] is not None]
    vals += [r[0] for r in refs]
    ticks = nice_ticks(min([0.0] + vals), max([0.0] + vals))
    lo, hi = ticks[0], ticks[-1]
    n = len(dates)
    step = (width - left - right) / n

    def x(i: int) -> float:
        return left + step * (i + 0.5)

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * (height - top - bottom)

    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'xmlns="http://www.w3.org/2000/svg">']
    for v in ticks:  # gridlines with values
        out.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{width - right}" y2="{y(v):.1f}" stroke="#e2e8f0"/>'
                   f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" class="ax">{_e(fmt(v))}</text>')
    out.append(f'<line x1="{left}" y1="{y(0):.1f}" x2="{width - right}" y2="{y(0):.1f}" stroke="#4a5568"/>')
    every = max(1, math.ceil(n / 10))
    for i, d in enumerate(dates):
        if i % every == 0 or i == n - 1:
            out.append(f'<text x="{x(i):.1f}" y="{height - 8}" text-anchor="middle" class="ax">{_e(d[5:])}</text>')
    legend = []
    if columns:
        bw = min(28.0, max(2.0, step * 0.6))
        for i, d in enumerate(dates):
            if d not in columns.points or columns.points[d][0] is None:
                continue
            v, color, title = columns.points[d]
            y0, y1 = sorted((y(0), y(v)))
            out.append(f'<rect x="{x(i) - bw / 2:.1f}" y="{y0:.1f}" width="{bw:.1f}" height="{max(y1 - y0, 1):.1f}" '
                       f'fill="{color}" data-mart="{_e(columns.mart)}" data-column="{_e(columns.column)}" '
                       f'data-member="{_e(d)}" data-value="{_num_attr(v)}"><title>{_e(title)}</title></rect>')
        legend.append((columns.name, PALETTE["grey"], False))
    for ln in lines:
        pts = [(i, ln.points[d]) for i, d in enumerate(dates) if ln.points.get(d) is not None]
        if len(pts) > 1:
            path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in pts)
            dash = ' stroke-dasharray="5 3"' if ln.dashed else ""
            out.append(f'<polyline points="{path}" fill="none" stroke="{ln.color}" stroke-width="2"{dash}/>')
        for i, v in pts:
            out.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{ln.color}" data-mart="{_e(ln.mart)}" '
                       f'data-column="{_e(ln.column)}" data-member="{_e(dates[i])}" data-value="{_num_attr(v)}">'
                       f"<title>{_e(dates[i])} · {_e(ln.name)}: {_e(fmt(v))}</title></circle>")
        legend.append((ln.name, ln.color, ln.dashed))
    for value, color, label in refs:
        out.append(f'<line x1="{left}" y1="{y(value):.1f}" x2="{width - right}" y2="{y(value):.1f}" stroke="{color}" '
                   f'stroke-dasharray="4 3" stroke-width="1.5"/><text x="{width - right}" y="{y(value) - 4:.1f}" '
                   f'text-anchor="end" class="rf" fill="{color}">{_e(label)}</text>')
    lx = left
    for name, color, dashed in legend:
        out.append(f'<rect x="{lx}" y="6" width="12" height="10" fill="{color}"/>'
                   f'<text x="{lx + 16}" y="15" class="lg">{_e(name)}</text>')
        lx += 28 + 6.5 * len(name)
    out.append("</svg>")
    return "".join(out)


def stacked_hbar_chart(rows: list[tuple[str, dict[str, float]]], stack: list[tuple[str, str]], *, mart: str,
                       column: str, fmt: Callable = fmt_count, width: int = 660, label_w: int = 110) -> str:
    """One horizontal bar per row, stacked by category (e.g. break status), total at the end."""
    if not rows:
        return '<p class="na">No rows for this date.</p>'
    totals = [sum(v for v in parts.values() if v) for _, parts in rows]
    top = max(totals) or 1.0
    text_w, row_h, legend_h = 80, 24, 22
    plot_w = width - label_w - text_w
    height = legend_h + len(rows) * row_h + 6
    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'xmlns="http://www.w3.org/2000/svg" data-mart="{_e(mart)}">']
    lx = label_w
    for name, color in stack:
        out.append(f'<rect x="{lx}" y="5" width="10" height="10" fill="{color}"/>'
                   f'<text x="{lx + 14}" y="14" class="lg">{_e(name)}</text>')
        lx += 24 + 7 * len(name)
    for i, ((label, parts), total) in enumerate(zip(rows, totals)):
        y0 = legend_h + i * row_h
        out.append(f'<text x="{label_w - 6}" y="{y0 + 15}" text-anchor="end" class="lb">{_e(label)}</text>')
        x0 = float(label_w)
        for name, color in stack:
            v = parts.get(name) or 0
            if not v:
                continue
            w = v / top * plot_w
            out.append(f'<rect x="{x0:.1f}" y="{y0 + 3}" width="{max(w, 1):.1f}" height="{row_h - 6}" fill="{color}" '
                       f'data-mart="{_e(mart)}" data-column="{_e(column)}" data-member="{_e(label)}|{_e(name)}" '
                       f'data-value="{_num_attr(v)}"><title>{_e(label)} · {_e(name)}: {_e(fmt(v))}</title></rect>')
            x0 += w
        out.append(f'<text x="{x0 + 6:.1f}" y="{y0 + 16}" class="vl" data-mart="{_e(mart)}" data-column="{_e(column)}" '
                   f'data-member="{_e(label)}" data-value="{_num_attr(total)}">{_e(fmt(total))}</text>')
    out.append("</svg>")
    return "".join(out)


def data_table(mart: str, cols: list[tuple[str, str, Callable]], rows: list[tuple], *, cls: Callable | None = None,
               limit: int | None = None) -> str:
    """A table whose header cells name their column and whose cells carry their raw value.

    cols: (column, header, format); cls(row) gives an optional CSS class for a row.
    """
    head = "".join(f'<th data-column="{_e(c)}">{_e(h)}</th>' for c, h, _ in cols)
    shown = rows if limit is None else rows[:limit]
    body = []
    for r in shown:
        cells = []
        for (c, _, f), v in zip(cols, r):
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            val = f' data-value="{_num_attr(v)}"' if num else ""
            cells.append(f'<td data-column="{_e(c)}"{val}{" class=num" if num else ""}>{_e(f(v))}</td>')
        body.append(f'<tr{" class=" + cls(r) if cls and cls(r) else ""}>{"".join(cells)}</tr>')
    more = (f'<p class="more">{len(rows) - len(shown):,} more rows in the extract '
            f'<a href="extracts/{_e(mart)}.csv">{_e(mart)}.csv</a>.</p>' if len(rows) > len(shown) else "")
    return (f'<table data-mart="{_e(mart)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            + more)


def _figure(body: str, caption: str, title: str = "") -> str:
    return f'<figure>{"<h3>" + _e(title) + "</h3>" if title else ""}{body}{caption}</figure>'


def _section(sid: str, title: str, body: str, lead: str = "") -> str:
    return (f'<section id="{sid}"><h2>{_e(title)}</h2>'
            f'{"<p class=lead>" + lead + "</p>" if lead else ""}{body}</section>')


# --- targets (kpi_targets) ---------------------------------------------------------------------

def targets(p: Pack) -> dict[tuple[str, str], tuple]:
    """(metric, scope_id) -> (actual, target_value, met, direction, target_id) for the date."""
    if p.missing("kpi_targets", "metric", "scope_id", "actual", "target_value", "met", "direction", "target_id"):
        return {}
    return {(m, s): (a, t, met, dr, tid) for m, s, a, t, met, dr, tid in p.rows(
        "SELECT metric, scope_id, actual, target_value, met, direction, target_id FROM kpi_targets "
        "WHERE business_date = ?", [p.d])}


# --- KPI tiles ---------------------------------------------------------------------------------

@dataclass
class TileSource:
    mart: str
    column: str
    partition: str
    sql: str                           # one row, one value, for the date (bound as ?)
    note: str = ""


@dataclass
class Tile:
    key: str
    label: str
    fmt: Callable
    sources: list[TileSource]
    target: tuple[str, str] | None = None        # (metric, scope) in kpi_targets
    bad_when: Callable | None = None             # value -> True when the tile should show red


BREAKS_SQL = "('BO_ONLY', 'FO_ONLY', 'VERSION_BREAK', 'QTY_BREAK', 'AMOUNT_BREAK')"


def _kpi(column: str) -> TileSource:
    return TileSource("kpi_daily", column, "business_date",
                      f"SELECT {q(column)} FROM kpi_daily WHERE business_date = ?")


TILES = [
    Tile("firm_gross_exposure_usd", "Firm gross exposure (USD)", fmt_usd, [
        _kpi("firm_gross_exposure_usd"),
        TileSource("risk_exposure", "market_value_usd", "as_of_date",
                   "SELECT CAST(sum(CAST(abs(market_value_usd) AS DECIMAL(38, 12))) AS DOUBLE) "
                   "FROM risk_exposure WHERE as_of_date = ? AND holder_type = 'BOOK'",
                   "Σ|·| of BOOK holdings")]),
    Tile("firm_net_exposure_usd", "Firm net exposure (USD)", fmt_usd, [
        _kpi("firm_net_exposure_usd"),
        TileSource("risk_exposure", "market_value_usd", "as_of_date",
                   "SELECT CAST(sum(CAST(market_value_usd AS DECIMAL(38, 12))) AS DOUBLE) "
                   "FROM risk_exposure WHERE as_of_date = ? AND holder_type = 'BOOK'",
                   "Σ of BOOK holdings")]),
    Tile("firm_var_99_usd", "Firm VaR 99 % (USD)", fmt_usd, [
        _kpi("firm_var_99_usd"),
        TileSource("risk_var", "var_99", "as_of_date",
                   "SELECT var_99 FROM risk_var WHERE as_of_date = ? AND portfolio = 'FIRM'", "portfolio FIRM")]),
    Tile("limits_breach", "Limits in breach", fmt_count, [
        _kpi("limits_breach"),
        TileSource("risk_limit_utilisation", "status", "as_of_date",
                   "SELECT count(*) FILTER (WHERE status = 'BREACH') FROM risk_limit_utilisation WHERE as_of_date = ?",
                   "count of BREACH")], bad_when=lambda v: v > 0),
    Tile("limits_warning", "Limits in warning", fmt_count, [
        _kpi("limits_warning"),
        TileSource("risk_limit_utilisation", "status", "as_of_date",
                   "SELECT count(*) FILTER (WHERE status = 'WARNING') FROM risk_limit_utilisation WHERE as_of_date = ?",
                   "count of WARNING")]),
    Tile("recon_match_rate", "Recon match rate", fmt_pct, [
        _kpi("recon_match_rate"),
        TileSource("ops_trade_recon", "status", "as_of_date",
                   "SELECT count(*) FILTER (WHERE status = 'MATCHED') / count(*) FROM ops_trade_recon "
                   "WHERE as_of_date = ?", "MATCHED / all in the window")], target=("RECON_MATCH_RATE_MIN", "ALL")),
    Tile("open_breaks", "Open recon breaks", fmt_count, [
        _kpi("open_breaks"),
        TileSource("ops_trade_recon", "status", "as_of_date",
                   f"SELECT count(*) FILTER (WHERE status IN {BREAKS_SQL}) FROM ops_trade_recon WHERE as_of_date = ?",
                   "count of break statuses")]),
    Tile("breaks_over_5bd", "Breaks older than 5 days", fmt_count, [
        _kpi("breaks_over_5bd"),
        TileSource("ops_trade_recon", "age_bd", "as_of_date",
                   f"SELECT count(*) FILTER (WHERE status IN {BREAKS_SQL} AND age_bd > 5) FROM ops_trade_recon "
                   "WHERE as_of_date = ?", "breaks with age_bd > 5")], bad_when=lambda v: v > 0),
    Tile("settlement_efficiency", "Settlement efficiency", fmt_pct, [
        _kpi("settlement_efficiency"),
        TileSource("ops_settlement_efficiency", "settled_on_time", "as_of_date",
                   "SELECT sum(settled_on_time) / nullif(sum(due), 0) FROM ops_settlement_efficiency WHERE as_of_date = ?",
                   "Σ on time / Σ due, 20 intended dates")], target=("SETTLEMENT_EFFICIENCY_MIN", "ALL")),
    Tile("active_clients", "Active clients", fmt_count, [
        _kpi("active_clients"),
        TileSource("client_stats", "clients_active", "as_of_date",
                   "SELECT sum(clients_active) FROM client_stats WHERE as_of_date = ?", "Σ over groups")],
         target=("ACTIVE_CLIENTS_MIN", "ALL")),
    Tile("revenue_mtd_usd", "Revenue month to date (USD)", fmt_usd, [
        _kpi("revenue_mtd_usd"),
        TileSource("cost_income", "revenue_usd", "as_of_date",
                   "SELECT revenue_usd FROM cost_income WHERE as_of_date = ? AND period = 'MTD' AND cost_center = 'FIRM'",
                   "FIRM, MTD")]),
    Tile("cost_to_income_mtd", "Cost-to-income MTD", fmt_pct, [
        _kpi("cost_to_income_mtd"),
        TileSource("cost_income", "cost_to_income", "as_of_date",
                   "SELECT cost_to_income FROM cost_income WHERE as_of_date = ? AND period = 'MTD' AND cost_center = 'FIRM'",
                   "FIRM, MTD")], target=("COST_TO_INCOME_MAX", "ALL")),
    Tile("feeds_passed", "Feeds passing their gate", fmt_count, [
        _kpi("feeds_passed"),
        TileSource("dq_feed_health", "gate", "business_date",
                   "SELECT count(*) FILTER (WHERE gate = 'PASS') FROM dq_feed_health WHERE business_date = ?",
                   "count of PASS")]),
    Tile("quarantined_rows", "Records quarantined", fmt_count, [
        TileSource("dq_feed_health", "quarantined_rows", "business_date",
                   "SELECT sum(quarantined_rows) FROM dq_feed_health WHERE business_date = ?", "Σ over feeds")]),
]


def _tile_value(p: Pack, tile: Tile) -> tuple[TileSource | None, object]:
    """The first source that is published with a row for the date; (None, None) if none is."""
    for src in tile.sources:
        if p.has(src.mart, src.column) and p.has_rows(src.mart, src.partition):
            return src, p.one(src.sql, [p.d])[0]
    return None, None


def _target_note(tgt: tuple | None, fmt: Callable) -> tuple[str, str]:
    """('target ≥ 95.0 % · met', css class) for a tile with a target in kpi_targets."""
    if not tgt:
        return "", ""
    _actual, value, met, direction, tid = tgt
    sign = "≤" if direction == "MAX" else "≥"
    verdict = "met" if met else ("missed" if met is False else "unknown")
    return (f'<div class="tg" data-mart="kpi_targets" data-column="target_value" data-member="{_e(tid)}" '
            f'data-value="{_num_attr(value)}">target {sign} {_e(fmt(value))} · {verdict}</div>',
            "good" if met else ("bad" if met is False else ""))


def kpi_tiles(p: Pack, tgts: dict) -> tuple[str, dict]:
    shown: dict[str, object] = {}
    parts = []
    for tile in TILES:
        src, value = _tile_value(p, tile)
        if src is None:
            parts.append(f'<div class="tile na-tile" data-kpi="{tile.key}" data-state="not-available">'
                         f'<div class="k">{_e(tile.label)}</div><div class="v">n/a</div>'
                         f'<div class="s">{_e(" or ".join(s.mart for s in tile.sources))} not published for the date</div></div>')
            continue
        extra = ""
        if tile.key == "feeds_passed":
            total = p.one("SELECT count(*) FROM dq_feed_health WHERE business_date = ?", [p.d])[0] \
                if p.has("dq_feed_health") else None
            extra = f" / {total}" if total is not None else ""
        tnote, tcls = _target_note(tgts.get(tile.target) if tile.target else None, tile.fmt)
        cls = "bad" if (value is not None and tile.bad_when and tile.bad_when(value)) else tcls
        if tile.key == "feeds_passed" and extra and value is not None:
            cls = "good" if f" / {value}" == extra else "bad"
        shown[tile.key] = value
        parts.append(
            f'<div class="tile" data-kpi="{tile.key}" data-mart="{src.mart}" data-column="{src.column}" '
            f'data-value="{_num_attr(value)}"><div class="k">{_e(tile.label)}</div>'
            f'<div class="v {cls}">{_e(tile.fmt(value))}{_e(extra)}</div>{tnote}'
            f'<div class="s">source: {_e(src.mart)}.{_e(src.column)}{(" (" + _e(src.note) + ")") if src.note else ""}</div></div>')
    zone = ""
    if p.has("risk_var_backtest", "zone", "exceptions_250", "observations"):
        row = p.one("SELECT zone, exceptions_250, observations FROM risk_var_backtest "
                    "WHERE business_date = ? AND portfolio = 'FIRM'", [p.d])
        if row:
            zcls = {"GREEN": "good", "YELLOW": "warn", "RED": "bad"}.get(row[0], "")
            zone = (f'<div class="tile" data-kpi="backtest_zone" data-mart="risk_var_backtest" data-column="zone" '
                    f'data-value="{_e(row[0])}"><div class="k">VaR backtest (FIRM)</div>'
                    f'<div class="v {zcls}">{_e(row[0])}</div><div class="tg" data-mart="risk_var_backtest" '
                    f'data-column="exceptions_250" data-value="{row[1]}">{row[1]} exceptions in {row[2]} days</div>'
                    f'<div class="s">source: risk_var_backtest.zone</div></div>')
    return '<div class="tiles">' + "".join(parts) + zone + "</div>", shown


# --- sections ----------------------------------------------------------------------------------

def section_alerts(p: Pack) -> str:
    why = p.missing("alerts", "severity", "alert_type", "subject_id", "message")
    if why:
        return _section("alerts", "Alerts", _not_available(why))
    rows = p.rows("SELECT severity, alert_type, subject_id, message FROM alerts WHERE business_date = ? "
                  "ORDER BY severity = 'CRITICAL' DESC, alert_type, subject_id", [p.d])
    if not rows:
        body = ('<p>No alert raised for this date.</p>' if p.has_rows("dq_feed_health", "business_date")
                else _not_available(p.why_empty("alerts")))
        return _section("alerts", "Alerts", body + _source("alerts"))
    counts = {}
    for sev, typ, _, _ in rows:
        counts[(sev, typ)] = counts.get((sev, typ), 0) + 1
    summary = "".join(f'<span class="badge {"bad" if s == "CRITICAL" else "warn"}" data-mart="alerts" '
                         f'data-column="alert_type" data-member="{_e(t)}" data-value="{n}">{n} {_e(t)}</span>'
                         for (s, t), n in counts.items())
    table = data_table("alerts", [("severity", "severity", fmt_plain), ("alert_type", "type", fmt_plain),
                                  ("subject_id", "subject", fmt_plain), ("message", "message", fmt_plain)],
                       rows, cls=lambda r: "row-bad" if r[0] == "CRITICAL" else "row-warn", limit=15)
    return _section("alerts", f"Alerts ({len(rows)})", f"<p>{summary}</p>" + table
                    + _source("alerts.severity", "alerts.alert_type", "alerts.message"))


def section_targets(p: Pack, tgts: dict) -> str:
    why = p.missing("kpi_targets", "target_id", "metric", "scope_id", "actual", "target_value", "met")
    if why:
        return _section("targets", "Targets", _not_available(why))
    rows = p.rows("SELECT target_id, metric, scope_id, actual, target_value, met FROM kpi_targets "
                  "WHERE business_date = ? ORDER BY met NULLS FIRST, metric, scope_id", [p.d])
    if not rows:
        return _section("targets", "Targets", _not_available(p.why_empty("kpi_targets")))
    met = sum(1 for r in rows if r[5])
    missed = sum(1 for r in rows if r[5] is False)

    def value_fmt(metric: str) -> Callable:
        return fmt_count if metric == "ACTIVE_CLIENTS_MIN" else fmt_ratio if metric == "CLIENT_HHI_MAX" else fmt_pct

    shown = [(t, m, s, value_fmt(m)(a), value_fmt(m)(v), "met" if ok else "missed" if ok is False else "unknown")
             for t, m, s, a, v, ok in rows]
    table = data_table("kpi_targets", [("target_id", "target", fmt_plain), ("metric", "metric", fmt_plain),
                                       ("scope_id", "scope", fmt_plain), ("actual", "actual", fmt_plain),
                                       ("target_value", "target", fmt_plain), ("met", "met", fmt_plain)], shown,
                       cls=lambda r: "row-bad" if r[5] == "missed" else "")
    lead = (f'<span data-mart="kpi_targets" data-column="met" data-value="{met}">{met}</span> of {len(rows)} targets met, '
            f'<span class="bad">{missed} missed</span>, {len(rows) - met - missed} not measurable on the date.')
    return _section("targets", "Targets", table + _source("kpi_targets.actual", "kpi_targets.target_value",
                                                          "kpi_targets.met"), lead)


def section_exposure(p: Pack) -> str:
    series = [Series("gross_usd", "gross Σ|MV|", PALETTE["blue"]), Series("net_usd", "net Σ MV", PALETTE["teal"])]
    figs = []
    if not p.missing("risk_concentration", "dimension", "member", "gross_usd", "net_usd", "hhi", "effective_n"):
        for dim, title in (("asset_class", "By asset class"), ("book", "By book")):
            rows = p.rows("SELECT member, gross_usd, net_usd, hhi, effective_n FROM risk_concentration "
                          "WHERE as_of_date = ? AND dimension = ? ORDER BY gross_usd DESC, member", [p.d, dim])
            if not rows:
                figs.append(_figure(_not_available(p.why_empty("risk_concentration")), "", title))
                continue
            bars = [Bar(m or "UNKNOWN", (g, n), colors=(None, PALETTE["red"] if (n or 0) < 0 else None))
                    for m, g, n, _, _ in rows]
            hhi, eff = rows[0][3], rows[0][4]
            chart = hbar_chart(bars, series, mart="risk_concentration", dimension=dim)
            figs.append(_figure(
                chart + f'<p class="note">Concentration: HHI <span data-mart="risk_concentration" data-column="hhi" '
                        f'data-value="{_num_attr(hhi)}">{fmt_ratio(hhi)}</span>, effective number '
                        f'<span data-mart="risk_concentration" data-column="effective_n" data-value="{_num_attr(eff)}">'
                        f'{"n/a" if eff is None else f"{eff:.1f}"}</span>.</p>',
                _source("risk_concentration.gross_usd", "risk_concentration.net_usd", note=f"dimension = {dim}"), title))
    elif not p.missing("risk_exposure", "holder_type", "holder_id", "asset_class", "market_value_usd"):
        for key, title in (("asset_class", "By asset class"), ("holder_id", "By book")):
            rows = p.rows(f"SELECT coalesce({q(key)}, 'UNKNOWN'), "
                          "CAST(sum(CAST(abs(market_value_usd) AS DECIMAL(38, 12))) AS DOUBLE), "
                          "CAST(sum(CAST(market_value_usd AS DECIMAL(38, 12))) AS DOUBLE) "
                          "FROM risk_exposure WHERE as_of_date = ? AND holder_type = 'BOOK' GROUP BY 1 "
                          "ORDER BY 2 DESC, 1", [p.d])
            bars = [Bar(m, (g, n)) for m, g, n in rows]
            ser = [Series("market_value_usd", "gross Σ|MV|", PALETTE["blue"]),
                   Series("market_value_usd", "net Σ MV", PALETTE["teal"])]
            figs.append(_figure(hbar_chart(bars, ser, mart="risk_exposure"),
                                _source("risk_exposure.market_value_usd", note=f"BOOK holdings by {key}"), title))
    else:
        return _section("exposure", "Exposure", _not_available(
            p.missing("risk_concentration", "dimension") or "risk_exposure lacks columns"))
    return _section("exposure", "Exposure (the firm's BOOK holdings)", '<div class="grid">' + "".join(figs) + "</div>")


STATUS_COLOR = {"BREACH": PALETTE["red"], "WARNING": PALETTE["amber"], "OK": PALETTE["green"],
                "NOT_APPLICABLE": PALETTE["grey"]}


def section_limits(p: Pack, shown_max: int = 25) -> str:
    cols = ("limit_id", "scope_type", "scope_id", "metric", "exposure", "limit_value", "utilisation", "status",
            "warning_pct", "consecutive_breach_days")
    why = p.missing("risk_limit_utilisation", *cols)
    if why:
        return _section("limits", "Limit utilisation", _not_available(why))
    rows = p.rows(
        f"SELECT {', '.join(cols)} FROM risk_limit_utilisation WHERE as_of_date = ? AND status <> 'NOT_APPLICABLE' "
        "ORDER BY CASE status WHEN 'BREACH' THEN 0 WHEN 'WARNING' THEN 1 ELSE 2 END, utilisation DESC NULLS LAST, "
        "limit_id", [p.d])
    if not rows:
        return _section("limits", "Limit utilisation", _not_available(p.why_empty("risk_limit_utilisation")))
    counts = {s: sum(1 for r in rows if r[7] == s) for s in ("BREACH", "WARNING", "OK")}
    top = rows[:shown_max]
    bars = [Bar(f"{st} {_short(sid, 12)} {met.replace('_EXPOSURE', '').replace('CONCENTRATION_SHARE', 'SHARE')}",
                (u,), colors=(STATUS_COLOR.get(status),), member=lid,
                note=f"{status}{f' {cb}d' if cb else ''}")
            for lid, st, sid, met, _, _, u, status, _, cb in top]
    warn = min((r[8] for r in rows if r[8] is not None), default=0.8)
    chart = hbar_chart(bars, [Series("utilisation", "utilisation", PALETTE["blue"])], mart="risk_limit_utilisation",
                       fmt=fmt_pct, refs=[(1.0, PALETTE["red"], "limit 100 %"),
                                          (warn, PALETTE["amber"], f"warning {warn * 100:.0f} %")],
                       label_w=200)
    lead = (f'<span class="badge bad" data-mart="risk_limit_utilisation" data-column="status" data-member="BREACH" '
            f'data-value="{counts["BREACH"]}">{counts["BREACH"]} in breach</span> '
            f'<span class="badge warn" data-mart="risk_limit_utilisation" data-column="status" data-member="WARNING" '
            f'data-value="{counts["WARNING"]}">{counts["WARNING"]} in warning</span> '
            f'<span class="badge good" data-mart="risk_limit_utilisation" data-column="status" data-member="OK" '
            f'data-value="{counts["OK"]}">{counts["OK"]} OK</span>'
            + (f" · showing breaches first, then the {shown_max} most used" if len(rows) > shown_max else ""))
    breaches = [r for r in rows if r[7] == "BREACH"]
    table = ""
    if breaches:
        table = "<h3>Breaches</h3>" + data_table(
            "risk_limit_utilisation",
            [("limit_id", "limit", fmt_plain), ("scope_type", "scope", fmt_plain), ("scope_id", "member", fmt_plain),
             ("metric", "metric", fmt_plain), ("exposure", "exposure", lambda v: fmt_usd(v) if v and abs(v) > 1 else fmt_pct(v)),
             ("limit_value", "limit", lambda v: fmt_usd(v) if v and v > 1 else fmt_pct(v)),
             ("utilisation", "utilisation", fmt_pct), ("consecutive_breach_days", "days in breach", fmt_count)],
            [(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[9]) for r in breaches], cls=lambda r: "row-bad")
    return _section("limits", "Limit utilisation", _figure(
        chart, _source("risk_limit_utilisation.utilisation", "risk_limit_utilisation.status",
                       note="bars: utilisation = exposure / limit; breaches first")) + table, lead)


def section_var(p: Pack, history: int = 60) -> str:
    why = p.missing("risk_var", "portfolio", "var_99", "var_95", "es_975")
    if why:
        return _section("var", "Value-at-risk and backtest", _not_available(why))
    var_rows = p.rows("SELECT CAST(as_of_date AS VARCHAR), var_99, var_95, es_975 FROM risk_var "
                      "WHERE portfolio = 'FIRM' AND as_of_date <= ? ORDER BY as_of_date DESC LIMIT ?", [p.d, history])
    if not var_rows:
        return _section("var", "Value-at-risk and backtest", _not_available(p.why_empty("risk_var")))
    var_rows.reverse()
    bt = {}
    if not p.missing("risk_var_backtest", "hypothetical_pnl_usd", "exception", "var_99", "exceptions_250", "zone"):
        bt = {d: (pnl, exc, v, n, z) for d, pnl, exc, v, n, z in p.rows(
            "SELECT CAST(business_date AS VARCHAR), hypothetical_pnl_usd, exception, var_99, exceptions_250, zone "
            "FROM risk_var_backtest WHERE portfolio = 'FIRM' AND business_date <= ? AND business_date >= ?",
            [p.d, var_rows[0][0]])}
    dates = sorted({r[0] for r in var_rows} | set(bt))
    lines = [Line("var_99", "VaR 99 % (loss shown negative)", PALETTE["blue"], {d: -v for d, v, _, _ in var_rows if v is not None}, "risk_var"),
             Line("var_95", "VaR 95 %", PALETTE["light"], {d: -v for d, _, v, _ in var_rows if v is not None}, "risk_var", dashed=True)]
    cols = Column("hypothetical_pnl_usd", "backtest P&L (red: exception)", "risk_var_backtest", {
        d: (pnl, PALETTE["red"] if exc else PALETTE["grey"],
            f"{d}: P&L {fmt_usd(pnl)} vs VaR 99 of the previous day {fmt_usd(v)}" + (" — EXCEPTION" if exc else ""))
        for d, (pnl, exc, v, _, _) in bt.items()}) if bt else None
    chart = time_chart(dates, lines, cols)
    last = [(d, v99, v95, es, *(bt.get(d, (None,) * 5)[:2]), *(bt.get(d, (None,) * 5)[3:]))
            for d, v99, v95, es in var_rows[-10:]][::-1]
    table = data_table("risk_var", [("as_of_date", "date", fmt_plain), ("var_99", "VaR 99", fmt_usd),
                                    ("var_95", "VaR 95", fmt_usd), ("es_975", "ES 97.5", fmt_usd),
                                    ("hypothetical_pnl_usd", "backtest P&L", fmt_usd),
                                    ("exception", "exception", lambda v: "" if v is None else "YES" if v else "no"),
                                    ("exceptions_250", "exceptions (250d)", fmt_count), ("zone", "zone", fmt_plain)],
                       last, cls=lambda r: "row-bad" if r[5] else "")
    notes = ("" if bt else _not_available(p.missing("risk_var_backtest", "hypothetical_pnl_usd", "exception", "var_99",
                                                     "exceptions_250", "zone") or "no backtest rows yet"))
    return _section("var", "Value-at-risk and backtest (FIRM)", _figure(
        chart, _source("risk_var.var_99", "risk_var.var_95", "risk_var_backtest.hypothetical_pnl_usd",
                       "risk_var_backtest.exception",
                       note="a day's P&L revalues the previous day's holdings and is tested against that day's VaR 99"))
        + notes + "<h3>Last days</h3>" + table
        + _source("risk_var (var_99, var_95, es_975)", "risk_var_backtest (hypothetical_pnl_usd, exception, "
                  "exceptions_250, zone)"))


BREAK_STATUSES = [("BO_ONLY", PALETTE["purple"]), ("FO_ONLY", PALETTE["orange"]), ("VERSION_BREAK", PALETTE["amber"]),
                  ("QTY_BREAK", PALETTE["red"]), ("AMOUNT_BREAK", "#9b2c2c")]
AGE_BUCKETS = ["0-1", "2-5", "6-30", ">30"]


def section_recon(p: Pack, tgts: dict) -> str:
    why = p.missing("ops_recon_summary", "book", "status", "age_bucket", "is_break", "trades", "notional_usd",
                    "match_rate", "book_trades")
    if why:
        return _section("recon", "Front-to-back reconciliation", _not_available(why))
    rows = p.rows("SELECT age_bucket, status, sum(trades), "
                  "CAST(sum(CAST(notional_usd AS DECIMAL(38, 12))) AS DOUBLE) FROM ops_recon_summary "
                  "WHERE as_of_date = ? AND is_break GROUP BY ALL ORDER BY 1, 2", [p.d])  # summed below in this order
    books = p.rows("SELECT book, any_value(match_rate), any_value(book_trades), "
                   "sum(trades) FILTER (WHERE is_break) FROM ops_recon_summary WHERE as_of_date = ? "
                   "GROUP BY book ORDER BY 2, 1", [p.d])
    if not books:
        return _section("recon", "Front-to-back reconciliation", _not_available(p.why_empty("ops_recon_summary")))
    by_age = {b: {} for b in AGE_BUCKETS}
    notional = {b: 0.0 for b in AGE_BUCKETS}
    for bucket, status, n, usd in rows:
        by_age.setdefault(bucket, {})[status] = n
        notional[bucket] = notional.get(bucket, 0.0) + (usd or 0.0)
    ages = stacked_hbar_chart([(f"{b} days", by_age[b]) for b in by_age], BREAK_STATUSES,
                              mart="ops_recon_summary", column="trades")
    age_fig = _figure(ages + "<p class=note>Notional at stake: " + " · ".join(
        f'{_e(b)} d: <span data-mart="ops_recon_summary" data-column="notional_usd" data-member="{_e(b)}" '
        f'data-value="{_num_attr(v)}">{fmt_usd(v)}</span>' for b, v in notional.items()) + "</p>",
        _source("ops_recon_summary.trades", "ops_recon_summary.notional_usd", note="break statuses, by age bucket"),
        "Open breaks by age (business days)")
    target = tgts.get(("RECON_MATCH_RATE_MIN", "ALL"))
    bars = [Bar(b, (mr,), note=f"{fmt_count(nb or 0)} breaks of {fmt_count(bt)}",
                ticks=(((tgts[("RECON_MATCH_RATE_MIN", b)][1], PALETTE["dark"], "book target"),)
                       if ("RECON_MATCH_RATE_MIN", b) in tgts else ()),
                colors=(PALETTE["red"] if target and mr is not None and mr < target[1] else None,))
            for b, mr, bt, nb in books]
    refs = [(target[1], PALETTE["red"], f"target {fmt_pct(target[1])}")] if target else []
    rate_fig = _figure(hbar_chart(bars, [Series("match_rate", "match rate", PALETTE["green"])], mart="ops_recon_summary",
                                  fmt=fmt_pct, refs=refs, label_w=120),
                       _source("ops_recon_summary.match_rate", *(["kpi_targets.target_value"] if target else []),
                               note="matched / trades in the 20-day window, per book"), "Match rate by book")
    return _section("recon", "Front-to-back reconciliation", '<div class="grid">' + age_fig + rate_fig + "</div>")


def section_settlement(p: Pack, tgts: dict) -> str:
    why = p.missing("ops_settlement_efficiency", "intended_settle_date", "custodian", "due", "settled_on_time",
                    "settled_late", "failed", "due_amount_usd", "settled_on_time_amount_usd")
    if why:
        return _section("settlement", "Settlement efficiency", _not_available(why))
    by_date = p.rows("SELECT CAST(intended_settle_date AS VARCHAR), sum(settled_on_time) / nullif(sum(due), 0), "
                     "CAST(sum(CAST(settled_on_time_amount_usd AS DECIMAL(38, 12))) / "
                     "nullif(sum(CAST(due_amount_usd AS DECIMAL(38, 12))), 0) AS DOUBLE), sum(due), sum(failed) "
                     "FROM ops_settlement_efficiency WHERE as_of_date = ? GROUP BY 1 ORDER BY 1", [p.d])
    if not by_date:
        return _section("settlement", "Settlement efficiency",
                        _not_available(p.why_empty("ops_settlement_efficiency")))
    target = tgts.get(("SETTLEMENT_EFFICIENCY_MIN", "ALL"))
    refs = [(target[1], PALETTE["red"], f"target {fmt_pct(target[1])}")] if target else []
    trend = time_chart(
        [r[0] for r in by_date],
        [Line("settled_on_time", "by count", PALETTE["blue"], {r[0]: r[1] for r in by_date}, "ops_settlement_efficiency"),
         Line("settled_on_time_amount_usd", "by USD value", PALETTE["teal"], {r[0]: r[2] for r in by_date},
              "ops_settlement_efficiency", dashed=True)], fmt=fmt_pct, refs=refs, height=220)
    trend_fig = _figure(trend, _source("ops_settlement_efficiency.settled_on_time", "ops_settlement_efficiency.due",
                                       note="Σ on time / Σ due per intended settlement date, as known on the date"),
                        "Efficiency by intended settlement date")
    cust = p.rows("SELECT custodian, sum(settled_on_time) / nullif(sum(due), 0), sum(due), sum(failed), "
                  "sum(settled_late) FROM ops_settlement_efficiency WHERE as_of_date = ? GROUP BY 1 ORDER BY 2, 1", [p.d])
    bars = [Bar(c, (e,), note=f"{fmt_count(f)} failed, {fmt_count(late)} late of {fmt_count(due)}",
                colors=(PALETTE["red"] if target and e is not None and e < target[1] else None,))
            for c, e, due, f, late in cust]
    cust_fig = _figure(hbar_chart(bars, [Series("settled_on_time", "on time / due", PALETTE["blue"])],
                                  mart="ops_settlement_efficiency", fmt=fmt_pct, refs=refs, label_w=120),
                       _source("ops_settlement_efficiency.settled_on_time", "ops_settlement_efficiency.due",
                               "ops_settlement_efficiency.failed", note="the 20 intended dates up to the date"),
                       "By custodian")
    return _section("settlement", "Settlement efficiency", '<div class="grid">' + trend_fig + cust_fig + "</div>")


def section_clients(p: Pack, tgts: dict) -> str:
    figs = []
    why = p.missing("client_stats", "segment", "clients_active", "aum_usd")
    if why:
        figs.append(_figure(_not_available(why), "", "Client mix"))
    else:
        seg = p.rows("SELECT segment, sum(clients_active), CAST(sum(CAST(aum_usd AS DECIMAL(38, 12))) AS DOUBLE) "
                     "FROM client_stats WHERE as_of_date = ? "
                     "GROUP BY 1 ORDER BY 1", [p.d])
        total = sum(r[1] or 0 for r in seg) or None
        bars = []
        for s, active, aum in seg:
            share = (active or 0) / total if total else None
            ticks = tuple((tgts[(m, s)][1], PALETTE["dark"], f"{m} {fmt_pct(tgts[(m, s)][1])}")
                          for m in ("SEGMENT_SHARE_MIN", "SEGMENT_SHARE_MAX") if (m, s) in tgts)
            off = any(tgts[(m, s)][2] is False for m in ("SEGMENT_SHARE_MIN", "SEGMENT_SHARE_MAX") if (m, s) in tgts)
            bars.append(Bar(s or "UNKNOWN", (share,), ticks=ticks, colors=(PALETTE["red"] if off else None,),
                            note=f"{fmt_count(active)} clients · AUM {fmt_usd(aum)}"))
        figs.append(_figure(
            hbar_chart(bars, [Series("clients_active", "share of active clients", PALETTE["purple"])],
                       mart="client_stats", fmt=fmt_pct, label_w=110),
            _source("client_stats.clients_active", "client_stats.aum_usd",
                    *(["kpi_targets.target_value"] if any(k[0].startswith("SEGMENT_SHARE") for k in tgts) else []),
                    note="black ticks: the segment's share targets (min, max); red: outside them"), "Client mix by segment"))
    why = p.missing("client_portfolio", "risk_profile", "hhi", "hhi_max", "risk_profile_breach", "effective_n")
    if why:
        figs.append(_figure(_not_available(why), "", "Portfolio diversity"))
    else:
        prof = p.rows("SELECT risk_profile, median(hhi), any_value(hhi_max), count(*), "
                      "count(*) FILTER (WHERE risk_profile_breach), median(effective_n) FROM client_portfolio "
                      "WHERE as_of_date = ? GROUP BY 1 ORDER BY 1", [p.d])
        bars = [Bar(rp or "UNKNOWN", (med,), ticks=(((hmax, PALETTE["dark"], f"CLIENT_HHI_MAX {fmt_ratio(hmax)}"),)
                                                 if hmax is not None else ()),
                    colors=(PALETTE["red"] if hmax is not None and med is not None and med > hmax else None,),
                    note=f"{fmt_count(nb)} of {fmt_count(n)} clients over")
                for rp, med, hmax, n, nb, _ in prof]
        figs.append(_figure(
            hbar_chart(bars, [Series("hhi", "median client HHI", PALETTE["teal"])], mart="client_portfolio",
                       fmt=fmt_ratio, label_w=110),
            _source("client_portfolio.hhi", "client_portfolio.hhi_max", "client_portfolio.risk_profile_breach",
                    note="median HHI over holdings by risk profile; black tick: the profile's maximum; red: median over it"),
            "Portfolio concentration against targets"))
    return _section("clients", "Clients: mix and diversity against targets", '<div class="grid">' + "".join(figs) + "</div>")


def section_cost_income(p: Pack, tgts: dict) -> str:
    why = p.missing("cost_income", "period", "cost_center", "revenue_usd", "expense_usd", "cost_to_income")
    if why:
        return _section("cost", "Cost-to-income by desk", _not_available(why))
    rows = p.rows("SELECT cost_center, revenue_usd, expense_usd, cost_to_income FROM cost_income "
                  "WHERE as_of_date = ? AND period = 'MTD' ORDER BY cost_center = 'FIRM' DESC, "
                  "cost_to_income DESC NULLS LAST, cost_center", [p.d])
    if not rows:
        return _section("cost", "Cost-to-income by desk", _not_available(p.why_empty("cost_income")))
    target = tgts.get(("COST_TO_INCOME_MAX", "ALL"))
    desks = [r for r in rows if r[3] is not None]

    def _over(center: str, cti: float) -> bool:
        """Over the desk's own target, or for FIRM over the firm's (scope ALL)."""
        own = tgts.get(("COST_TO_INCOME_MAX", "ALL" if center == "FIRM" else center))
        return bool(own and cti > own[1])

    bars = [Bar(c, (cti,), note=f"exp {fmt_usd(e)} / rev {fmt_usd(r)}",
                ticks=(((tgts[("COST_TO_INCOME_MAX", c)][1], PALETTE["dark"], "desk target"),)
                       if ("COST_TO_INCOME_MAX", c) in tgts else ()),
                colors=(PALETTE["red"] if _over(c, cti) else PALETTE["dark"] if c == "FIRM" else None,))
            for c, r, e, cti in desks]
    refs = [(target[1], PALETTE["red"], f"target {fmt_pct(target[1], 0)}")] if target else []
    chart = hbar_chart(bars, [Series("cost_to_income", "cost-to-income MTD", PALETTE["blue"])], mart="cost_income",
                       fmt=lambda v: fmt_pct(v, 0), refs=refs, label_w=120, width=700)
    support = [r for r in rows if r[3] is None]
    table = data_table("cost_income", [("cost_center", "support function", fmt_plain),
                                       ("revenue_usd", "revenue", fmt_usd), ("expense_usd", "expense", fmt_usd)],
                       support) if support else ""
    return _section("cost", "Cost-to-income by desk (month to date)", _figure(
        chart, _source("cost_income.cost_to_income", "cost_income.expense_usd", "cost_income.revenue_usd",
                       *(["kpi_targets.target_value"] if tgts else []),
                       note="period MTD; red: over its target (black tick: the desk's target, dashed line: the firm's)"))
        + ("<h3>Support functions (no revenue)</h3>" + table + _source("cost_income.expense_usd") if table else ""))


def section_data_quality(p: Pack) -> str:
    cols = ("feed", "gate", "expected_rows", "received_rows", "loaded_rows", "quarantined_rows", "quarantined_share",
            "freshness", "reason")
    why = p.missing("dq_feed_health", *cols)
    if why:
        return _section("dq", "Data-quality health", _not_available(why))
    rows = p.rows(f"SELECT {', '.join(cols)} FROM dq_feed_health WHERE business_date = ? "
                  "ORDER BY gate = 'PASS', feed", [p.d])
    if not rows:
        return _section("dq", "Data-quality health", _not_available(p.why_empty("dq_feed_health")))
    bars = [Bar(f, (share or 0.0,), colors=(PALETTE["green"] if g == "PASS" else PALETTE["red"],),
                note=f"{g} · {fmt_count(qr)} of {fmt_count(rr)}")
            for f, g, _, rr, _, qr, share, _, _ in rows]
    chart = hbar_chart(bars, [Series("quarantined_share", "quarantined share", PALETTE["green"])],
                       mart="dq_feed_health", fmt=lambda v: fmt_pct(v, 2), label_w=120,
                       refs=[(p.quarantine_threshold, PALETTE["red"],
                              f"gate threshold {fmt_pct(p.quarantine_threshold, 1)}")])
    table = data_table("dq_feed_health", [(c, c.replace("_rows", "").replace("_", " "),
                                           fmt_count if c.endswith("_rows") else
                                           (lambda v: fmt_pct(v, 2)) if c == "quarantined_share" else fmt_plain)
                                          for c in cols], rows, cls=lambda r: "row-bad" if r[1] != "PASS" else "")
    chips = "".join(
        f'<div class="chip {"pass" if g == "PASS" else "fail"}" data-mart="dq_feed_health" data-column="gate" '
        f'data-member="{_e(f)}" data-value="{_e(g)}"><b>{_e(f)}</b><span>{_e(g)} · {_e(fresh or "")}</span>'
        f'<span data-mart="dq_feed_health" data-column="loaded_rows" data-member="{_e(f)}" data-value="{lo}">'
        f'{fmt_count(lo)} loaded</span><span data-mart="dq_feed_health" data-column="quarantined_rows" '
        f'data-member="{_e(f)}" data-value="{qr}">{fmt_count(qr)} quarantined</span></div>'
        for f, g, _, _, lo, qr, _, fresh, _ in rows)
    body = [_figure(f'<div class="chips">{chips}</div>',
                    _source("dq_feed_health.gate", "dq_feed_health.freshness", "dq_feed_health.loaded_rows",
                            "dq_feed_health.quarantined_rows"))]
    if any(r[5] for r in rows):  # the share chart only says something when records were quarantined
        body.append(_figure(chart, _source("dq_feed_health.quarantined_share", "dq_feed_health.gate"),
                            "Quarantined share against the gate threshold"))
    body += [table, _source(*(f"dq_feed_health.{c}" for c in cols[1:6]))]
    if not p.missing("dq_quarantine", "feed", "rule"):
        rules = p.rows("SELECT feed, rule, count(*) FROM dq_quarantine WHERE business_date = ? "
                       "GROUP BY ALL ORDER BY 3 DESC, 1, 2", [p.d])
        body.append("<h3>Quarantined records by rule</h3>" + (
            data_table("dq_quarantine", [("feed", "feed", fmt_plain), ("rule", "rule", fmt_plain),
                                         ("line", "records", fmt_count)], rules, limit=15)
            + _source("dq_quarantine (count of records)") if rules else "<p>No record quarantined.</p>"))
    if p.skipped:
        body.append("<h3>Marts not rebuilt for this date</h3>" + data_table(
            "build_log", [("mart", "mart", fmt_plain), ("reason", "reason", fmt_plain)], sorted(p.skipped.items()))
            + _source("build_log.status", "build_log.reason"))
    if not p.missing("pipeline_runs", "stage", "status", "message"):
        failed = p.rows("SELECT stage, status, message FROM pipeline_runs WHERE business_date = ? "
                        "AND status <> 'SUCCESS' ORDER BY stage", [p.d])
        if failed:
            body.append("<h3>Pipeline stages that failed</h3>" + data_table(
                "pipeline_runs", [("stage", "stage", fmt_plain), ("status", "status", fmt_plain),
                                  ("message", "message", lambda v: _short(v or "", 160))], failed,
                cls=lambda r: "row-bad") + _source("pipeline_runs"))
    passed = sum(1 for r in rows if r[1] == "PASS")
    lead = f"{passed} of {len(rows)} feeds passed their gate."
    return _section("dq", "Data-quality health", "".join(body), lead)


def section_extracts(extracts: list[dict], absent: list[str]) -> str:
    rows = "".join(
        f'<tr><td>{_e(e["mart"])}</td><td class="num" data-mart="{_e(e["mart"])}" data-column="*" '
        f'data-value="{e["rows"]}">{e["rows"]:,}</td><td><a href="extracts/{_e(e["csv"])}">CSV</a></td>'
        f'<td><a href="extracts/{_e(e["parquet"])}">Parquet</a></td></tr>' for e in extracts)
    note = (f"<p class=note>Not in the published warehouse (no extract): {_e(', '.join(absent))}.</p>" if absent else "")
    return _section("extracts", "Extracts", "<table><thead><tr><th>mart</th><th>rows for the date</th><th>CSV</th>"
                    f"<th>Parquet</th></tr></thead><tbody>{rows}</tbody></table>{note}"
                    '<p class=note>Index with grain, columns and checksums: <a href="extracts/index.json">'
                    'extracts/index.json</a>. Column descriptions: <a href="dictionary.html">data dictionary</a>.</p>')


# --- extracts ----------------------------------------------------------------------------------

def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_extracts(con, settings: Settings, d: str, columns: dict[str, set[str]]) -> tuple[list[dict], list[str]]:
    """CSV and Parquet of every published mart's rows for the date, plus extracts/index.json."""
    out_dir = settings.reports / d / "extracts"
    out_dir.mkdir(parents=True, exist_ok=True)
    index, absent, digests = [], [], {}
    # The checksums are taken on a thread while DuckDB writes the next mart's files: hashlib lets
    # go of the GIL, and at 1M trades a day the extracts hold 500 MB (1.5 s of hashing in line).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="extract-sha256") as hasher:
        for model in published_models():
            if model.name not in columns:
                absent.append(model.name)
                continue
            where = f"WHERE {q(model.partition)} = CAST(? AS DATE)"
            order = ", ".join(q(c) for c in model.grain)
            select = f"SELECT * FROM {q(model.name)} {where} ORDER BY {order}"
            parquet, csv = out_dir / f"{model.name}.parquet", out_dir / f"{model.name}.csv"
            rows = con.execute(f"COPY ({select}) TO {sql_literal_path(parquet)} (FORMAT parquet, COMPRESSION zstd)",
                               [d]).fetchone()[0]
            # The CSV from the sorted Parquet file, read in file order: one filter and sort, not two.
            con.execute(f"COPY (SELECT * FROM read_parquet({sql_literal_path(parquet)})) TO {sql_literal_path(csv)} "
                        "(FORMAT csv, HEADER true)")
            digests[model.name] = (hasher.submit(_sha256, csv), hasher.submit(_sha256, parquet))
            index.append({
                "mart": model.name, "rows": rows, "grain": list(model.grain), "partition": model.partition,
                "columns": list(model.columns), "csv": csv.name, "parquet": parquet.name,
                "description": model.description.split(". ")[0].rstrip(".") + ".",
            })
    for entry in index:
        csv_digest, parquet_digest = digests[entry["mart"]]
        entry["sha256_csv"], entry["sha256_parquet"] = csv_digest.result(), parquet_digest.result()
    control.write_json_atomic(out_dir / "index.json", {"business_date": d, "extracts": index,
                                                       "not_published": absent})
    return index, absent


# --- the page ----------------------------------------------------------------------------------

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1a202c;background:#f7fafc}
header{background:#1a365d;color:#fff;padding:18px 28px} header h1{margin:0;font-size:24px}
header .sub{color:#bee3f8;font-size:13px;margin-top:4px} header a{color:#bee3f8}
nav{padding:8px 28px;background:#2a4365;font-size:13px} nav a{color:#e2e8f0;margin-right:14px;text-decoration:none}
main{padding:18px 28px;max-width:1480px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:10px;margin-bottom:18px}
.tile{background:#fff;border-radius:8px;padding:10px 14px;box-shadow:0 1px 3px rgba(0,0,0,.12);border-top:3px solid #2b6cb0}
.tile .k{font-size:11px;color:#4a5568;text-transform:uppercase;letter-spacing:.04em}
.tile .v{font-size:22px;font-weight:650;margin-top:4px;font-variant-numeric:tabular-nums}
.tile .tg{font-size:12px;color:#4a5568;margin-top:2px} .tile .s{font-size:10px;color:#a0aec0;margin-top:4px}
.na-tile{border-top-color:#cbd5e0} .na-tile .v{color:#a0aec0}
.bad{color:#c53030} .good{color:#2f855a} .warn{color:#b7791f}
section{background:#fff;border-radius:8px;padding:14px 18px;margin-bottom:16px;box-shadow:0 1px 3px rgba(0,0,0,.12)}
section h2{margin:0 0 8px;font-size:18px} section h3{font-size:14px;margin:12px 0 6px;color:#2d3748}
.lead{margin:0 0 8px;color:#2d3748}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(640px,1fr));gap:8px 24px}
figure{margin:0 0 8px} figcaption.src,.src{font-size:11px;color:#718096;margin-top:2px}
svg.chart{max-width:100%;height:auto;font-family:inherit}
svg .lb{font-size:12px;fill:#2d3748} svg .vl{font-size:11px;fill:#2d3748} svg .ax{font-size:10px;fill:#718096}
svg .lg{font-size:11px;fill:#4a5568} svg .rf{font-size:10px}
table{border-collapse:collapse;font-size:12.5px;margin:4px 0} th,td{padding:3px 10px;border-bottom:1px solid #e2e8f0;text-align:left}
th{background:#edf2f7;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.row-bad td{background:#fff5f5} tr.row-warn td{background:#fffff0}
.na{color:#718096;font-style:italic} .note,.more{font-size:12px;color:#4a5568}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;margin-right:6px;background:#edf2f7}
.badge.bad{background:#fed7d7} .badge.warn{background:#fefcbf} .badge.good{background:#c6f6d5}
.chips{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px;margin:4px 0 8px}
.chip{border-radius:6px;padding:6px 10px;font-size:12px;display:flex;flex-direction:column;border-left:5px solid}
.chip.pass{background:#f0fff4;border-color:#38a169} .chip.fail{background:#fff5f5;border-color:#e53e3e}
.chip b{font-size:13px} .chip span{color:#4a5568}
footer{font-size:11px;color:#718096;padding:0 28px 24px}
"""

SECTIONS = [("alerts", "Alerts"), ("exposure", "Exposure"), ("limits", "Limits"), ("var", "VaR"),
            ("recon", "Reconciliation"), ("settlement", "Settlement"), ("clients", "Clients"),
            ("cost", "Cost-to-income"), ("targets", "Targets"), ("dq", "Data quality"), ("extracts", "Extracts")]


def _safe(p: Pack, sid: str, title: str, build: Callable[[], str]) -> str:
    """A section that raises is shown as failed (and the report stage fails after writing the page)."""
    try:
        return build()
    except Exception as exc:
        p.errors.append(f"{sid}: {type(exc).__name__}: {exc}")
        return _section(sid, title, f'<p class="bad" data-state="failed">This section failed: {_e(exc)}</p>')


def render_pack(p: Pack, run_id: str, extracts: list[dict], absent: list[str], publication: tuple | None) -> tuple[str, dict]:
    tgts = targets(p)
    tiles, shown = kpi_tiles(p, tgts)
    body = [
        tiles,
        _safe(p, "alerts", "Alerts", lambda: section_alerts(p)),
        _safe(p, "exposure", "Exposure", lambda: section_exposure(p)),
        _safe(p, "limits", "Limit utilisation", lambda: section_limits(p)),
        _safe(p, "var", "Value-at-risk", lambda: section_var(p)),
        _safe(p, "recon", "Reconciliation", lambda: section_recon(p, tgts)),
        _safe(p, "settlement", "Settlement efficiency", lambda: section_settlement(p, tgts)),
        _safe(p, "clients", "Clients", lambda: section_clients(p, tgts)),
        _safe(p, "cost", "Cost-to-income", lambda: section_cost_income(p, tgts)),
        _safe(p, "targets", "Targets", lambda: section_targets(p, tgts)),
        _safe(p, "dq", "Data quality", lambda: section_data_quality(p)),
        section_extracts(extracts, absent),
    ]
    pub = (f"published by run {_e(publication[0])} for {_e(publication[1])} at {_e(publication[2])} UTC"
           if publication else "publication unknown")
    nav = "".join(f'<a href="#{sid}">{_e(t)}</a>' for sid, t in SECTIONS)
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<title>midoffice daily pack {p.d}</title><link rel="icon" href="data:,"><style>{CSS}</style></head><body>'
        f'<header><h1>Daily pack — {p.d}</h1><div class="sub">Middle office · reporting currency USD · '
        f'from the published warehouse ({pub}) · <a href="dictionary.html">data dictionary</a> · '
        f'<a href="data_docs/index.html">validation results</a></div></header><nav>{nav}</nav>'
        f'<main data-business-date="{p.d}">{"".join(body)}</main>'
        f'<footer>Every figure names its source (mart.column); hover a bar for its value. Report stage of run '
        f'{_e(run_id)}. Extracts and the dictionary sit next to this page.</footer></body></html>')
    return page, shown


def _publication(p: Pack) -> tuple | None:
    if not p.has("publication", "run_id", "business_date", "published_at"):
        return None
    return p.one("SELECT run_id, CAST(business_date AS VARCHAR), CAST(published_at AS VARCHAR) FROM publication")


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
    if not settings.published_db.is_file():
        raise FileNotFoundError(f"{d}: nothing published yet at {settings.published_db}")
    out_dir = settings.reports / d
    docs_future = None
    con = connect(settings, settings.published_db, read_only=True)
    try:
        restrict_to(con, out_dir, settings.tmp)  # reads the published file it holds; writes the extracts
        published = published_columns(con)
        columns = {t: {c for c, _ in cols} for t, cols in published.items()}
        p = Pack(con, d, columns, quarantine_threshold=settings.quarantine_threshold)
        if p.has("dq_feed_health", "business_date") and not p.has_rows("dq_feed_health", "business_date"):
            # the data-quality marts are built for every date that ran, whatever its gates said
            first, last = p.one("SELECT min(business_date), max(business_date) FROM dq_feed_health")
            raise NothingPublishedForDate(
                f"{d}: nothing published for this business date"
                + (f" (published dates run from {first} to {last})" if first else " (no date published yet)"))
        if p.has("build_log", "mart", "status", "reason"):
            p.skipped = dict(p.rows("SELECT mart, reason FROM build_log WHERE business_date = ? AND status = 'SKIPPED'", [d]))
        # GX renders its Data Docs in Python (about 3 s, more with its import) while DuckDB writes the
        # extracts, which release the GIL: the two overlap instead of adding up.
        docs_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="data-docs")
        docs_future = docs_worker.submit(_data_docs, settings, d)
        docs_worker.shutdown(wait=False)
        extracts, absent = write_extracts(con, settings, d, columns)
        page, shown = render_pack(p, run_id, extracts, absent, _publication(p))
        rows = {e["mart"]: e["rows"] for e in extracts}
        dictionary = render_html(d, published, rows)
    finally:
        con.close()
        if docs_future is not None:  # also on failure: nothing of this call writes after it returns
            docs = docs_future.result()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "index.html").write_text(page, encoding="utf-8")
    (out_dir / "dictionary.html").write_text(dictionary, encoding="utf-8")
    summary = {"business_date": d, "report": str(out_dir / "index.html"), "dictionary": str(out_dir / "dictionary.html"),
               "bytes": len(page.encode("utf-8")), "extracts": len(extracts), "not_published": absent,
               "kpis": {k: float(v) if isinstance(v, decimal.Decimal) else v for k, v in shown.items()}, "section_errors": p.errors, "data_docs": docs,
               "seconds": round(time.monotonic() - t0, 3)}
    status = "FAILED" if p.errors else "SUCCESS"
    control.record_stage(settings, run_id, d, "report", status, started_at, rows_out=len(extracts),
                         message=json.dumps({"section_errors": p.errors, "data_docs": docs}, default=str)[:2000])
    if p.errors:
        raise ReportError(f"{d}: the daily pack was written but sections failed: " + "; ".join(p.errors))
    return summary
