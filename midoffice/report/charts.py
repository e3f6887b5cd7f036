"""The pack's charts as inline SVG: geometry here, markup in templates/svg.html.j2.

A chart is a list of shapes (tag, attributes, text, tooltip); the template writes them with
Jinja's escaping, so no label can break the page. Every bar and value label carries data-mart,
data-column, data-member and the unrounded data-value. Colours come from two palettes: STATUS
(one meaning per colour, the same in every chart, table and tile) and MEASURE (series that are
not a verdict, such as gross and net exposure), which shares no colour with STATUS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

from midoffice.report.formats import fmt_count, fmt_usd, num_attr

# A verdict has one colour everywhere: green fine, amber warning, red breach (or missed, failed,
# exception), grey not applicable or unknown.
STATUS = {"OK": "#2f855a", "WARNING": "#b7791f", "BREACH": "#c53030", "NOT_APPLICABLE": "#a0aec0"}
# The light tints of each status: a badge's background and a table row's.
STATUS_TINT = {"OK": ("#c6f6d5", "#f0fff4"), "WARNING": ("#fefcbf", "#fffff0"), "BREACH": ("#fed7d7", "#fff5f5"),
               "NOT_APPLICABLE": ("#edf2f7", "#f7fafc")}
STATUS_OF = {"PASS": "OK", "FAIL": "BREACH", "MATCHED": "OK", "met": "OK", "missed": "BREACH",
             "GREEN": "OK", "YELLOW": "WARNING", "RED": "BREACH", "CRITICAL": "BREACH"}
# Measures (no verdict): blues, slate and categorical tones that are neither green, amber nor red.
MEASURE = {"primary": "#2b6cb0", "secondary": "#90cdf4", "slate": "#4a5568", "neutral": "#cbd5e0",
           "target": "#1a202c", "violet": "#6b46c1", "orange": "#dd6b20", "pink": "#b83280",
           "cyan": "#0987a0", "brown": "#7b341e"}
LABEL_MAX_W = 300         # px: a longer label wraps onto a second line


def text_width(text: str, px: float = 12.0) -> float:
    """The width of `text` at `px` in the page's sans-serif (DejaVu Sans advances), erring wide:
    a label or value is placed by it and must never be cut."""
    em = sum(0.78 if c.isupper() else 0.64 if c.isdigit() else 0.62 if c.islower() else 0.34 if c == " " else 0.6
             for c in text)
    return em * px


def status_color(status: str | None) -> str:
    """The colour of a status as any mart spells it (PASS, MATCHED, GREEN... map onto STATUS)."""
    return STATUS.get(STATUS_OF.get(status or "", status or ""), STATUS["NOT_APPLICABLE"])


def verdict(ok: bool | None) -> str:
    """The STATUS colour of a comparison with a target (None: not measurable)."""
    return STATUS["NOT_APPLICABLE"] if ok is None else STATUS["OK"] if ok else STATUS["BREACH"]


@dataclass
class Shape:
    tag: str
    attrs: dict
    text: str = ""
    title: str = ""
    children: list["Shape"] = field(default_factory=list)


@dataclass
class Chart:
    width: int
    height: int
    shapes: list[Shape]
    mart: str | None = None
    kind: str = "chart"


@dataclass
class NoRows:
    kind: str = "norows"


def _f(v: float) -> str:
    return f"{v:.1f}"


def _traced(mart: str, column: str, member: str, value) -> dict:
    return {"data-mart": mart, "data-column": column, "data-member": member, "data-value": num_attr(value)}


def _legend(entries: Sequence[tuple[str, str]], x0: float, y: float = 4, size: int = 10) -> list[Shape]:
    out, lx = [], x0
    for name, color in entries:
        out.append(Shape("rect", {"x": _f(lx), "y": y, "width": size, "height": size, "fill": color}))
        out.append(Shape("text", {"x": _f(lx + size + 4), "y": y + 9, "class": "lg"}, name))
        lx += size + 18 + text_width(name, 11)
    return out


# --- horizontal bars ---------------------------------------------------------------------------

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
    sublabel: str = ""                 # a second, smaller line under the label (e.g. a long key)


def _wrap(text: str, width: float) -> list[str]:
    """At most two lines that fit `width` px, broken at spaces (a long word stays whole)."""
    if text_width(text) <= width:
        return [text]
    lines = [""]
    for w in text.split(" "):
        if lines[-1] and text_width(f"{lines[-1]} {w}") > width and len(lines) < 2:
            lines.append(w)
        else:
            lines[-1] = f"{lines[-1]} {w}".strip()
    return lines


def label_width(labels: Sequence[str], sublabels: Sequence[str] = (), minimum: int = 60) -> int:
    widest = max([text_width(t) for t in labels] + [text_width(t, 10.5) for t in sublabels] + [0.0])
    return math.ceil(min(max(minimum, widest + 14), LABEL_MAX_W))


def _label(b: Bar, x: float, y_mid: float, width: float) -> Shape:
    lines = _wrap(b.label, width) + ([b.sublabel] if b.sublabel else [])
    first = y_mid + 4 - 7 * (len(lines) - 1)
    spans = [Shape("tspan", {"x": _f(x), "y": _f(first + 14 * k), **({"class": "sub"} if b.sublabel and k == len(lines) - 1 else {})},
                   line) for k, line in enumerate(lines)]
    full = b.label + (f" — {b.sublabel}" if b.sublabel else "")
    return Shape("text", {"text-anchor": "end", "class": "lb"}, title=full, children=spans)


def hbar_chart(bars: list[Bar], series: list[Series], *, mart: str, fmt: Callable = fmt_usd,
               refs: Sequence[tuple[float, str, str]] = (), width: int = 660, dimension: str = "",
               legend: Sequence[tuple[str, str]] = ()) -> Chart | NoRows:
    """Horizontal bars, one row per member and one thin bar per series, with reference lines.

    Values can be negative (bars go left of the zero line). Labels are never cut: the label
    column widens to the longest label (up to LABEL_MAX_W) and longer ones wrap onto two lines.
    `legend` replaces the series legend (e.g. the status colours a chart's bars use).
    """
    if not bars:
        return NoRows()
    vals = [v for b in bars for v in b.values if v is not None]
    vals += [r[0] for r in refs] + [t[0] for b in bars for t in b.ticks]
    lo, hi = min([0.0] + vals), max([0.0] + vals)
    if hi == lo:
        hi = lo + 1.0
    label_w = label_width([b.label for b in bars], [b.sublabel for b in bars if b.sublabel])
    fits = label_w - 14
    longest = max(text_width(fmt(v) + (f" · {b.note}" if b.note else ""), 11)
                  for b in bars for v in b.values if v is not None)
    text_w = int(min(max(70, longest + 12), width * 0.45))
    plot_w = width - label_w - text_w - 8  # a tick at the top of the range stays clear of the values
    entries = list(legend) or ([(s.name, s.color) for s in series] if len(series) > 1 else [])
    legend_h = 20 if entries else 0
    sub_h = 14 if len(series) > 1 else 18
    lines = max(len(_wrap(b.label, fits)) + (1 if b.sublabel else 0) for b in bars)
    row_h = max(sub_h * len(series) + 8, 14 * lines + 6)
    height = legend_h + len(bars) * row_h + 18

    def x(v: float) -> float:
        return label_w + (v - lo) / (hi - lo) * plot_w

    shapes = _legend(entries, label_w)
    for i, b in enumerate(bars):
        y0 = legend_h + i * row_h + 4
        member = b.member if b.member is not None else b.label
        shapes.append(_label(b, label_w - 6, y0 + row_h / 2 - 2, fits))
        bars_h = sub_h * len(series)
        top = y0 + (row_h - 8 - bars_h) / 2
        for j, (s, v) in enumerate(zip(series, b.values)):
            if v is None:
                continue
            color = b.colors[j] if b.colors and b.colors[j] else s.color
            x0, x1 = sorted((x(0.0), x(v)))
            yy = top + j * sub_h
            traced = _traced(mart, s.column, member, v)
            tip = f"{b.label} · {s.name}: {fmt(v)}" + (f" ({dimension})" if dimension else "")
            shapes.append(Shape("rect", {"x": _f(x0), "y": _f(yy), "width": _f(max(x1 - x0, 1)), "height": sub_h - 2,
                                         "fill": color, **traced}, title=tip))
            note = f" · {b.note}" if b.note and j == len(series) - 1 else ""
            shapes.append(Shape("text", {"x": width - text_w + 6, "y": _f(yy + sub_h - 4), "class": "vl", **traced},
                                fmt(v) + note))
        for tv, tc, tt in b.ticks:
            shapes.append(Shape("rect", {"x": _f(x(tv) - 1.5), "y": y0 - 2, "width": 3, "height": row_h - 4, "fill": tc},
                                title=tt))
    top, bottom = legend_h, height - 16
    if lo < 0:
        shapes.append(Shape("line", {"x1": _f(x(0)), "y1": top, "x2": _f(x(0)), "y2": bottom, "stroke": "#4a5568"}))
    for k, (value, color, label) in enumerate(sorted(refs)):
        # the lowest reference is labelled to the left of its line, the others to the right
        anchor, dx = ("end", -3) if k == 0 and len(refs) > 1 else ("start", 3)
        shapes.append(Shape("line", {"x1": _f(x(value)), "y1": top, "x2": _f(x(value)), "y2": bottom, "stroke": color,
                                     "stroke-dasharray": "4 3", "stroke-width": "1.5"}))
        shapes.append(Shape("text", {"x": _f(x(value) + dx), "y": height - 4, "text-anchor": anchor, "class": "rf",
                                     "fill": color}, label))
    return Chart(width, height, shapes, mart)


# --- dates on x --------------------------------------------------------------------------------

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
    legend: tuple = ()                 # (name, colour) entries for the columns' colours


def time_chart(dates: list[str], lines: list[Line], columns: Column | None = None, *, fmt: Callable = fmt_usd,
               width: int = 660, height: int = 240, refs: Sequence[tuple[float, str, str]] = ()) -> Chart | NoRows:
    """Dates on x (evenly spaced business dates), lines and optional columns (bars) on y."""
    if not dates:
        return NoRows()
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

    shapes = []
    for v in ticks:  # gridlines with values
        shapes.append(Shape("line", {"x1": left, "y1": _f(y(v)), "x2": width - right, "y2": _f(y(v)), "stroke": "#e2e8f0"}))
        shapes.append(Shape("text", {"x": left - 6, "y": _f(y(v) + 4), "text-anchor": "end", "class": "ax"}, fmt(v)))
    shapes.append(Shape("line", {"x1": left, "y1": _f(y(0)), "x2": width - right, "y2": _f(y(0)), "stroke": "#4a5568"}))
    every = max(1, math.ceil(n / 10))
    for i, d in enumerate(dates):
        if i % every == 0 or i == n - 1:
            shapes.append(Shape("text", {"x": _f(x(i)), "y": height - 8, "text-anchor": "middle", "class": "ax"}, d[5:]))
    legend: list[tuple[str, str]] = []
    if columns:
        bw = min(28.0, max(2.0, step * 0.6))
        for i, d in enumerate(dates):
            if d not in columns.points or columns.points[d][0] is None:
                continue
            v, color, title = columns.points[d]
            y0, y1 = sorted((y(0), y(v)))
            shapes.append(Shape("rect", {"x": _f(x(i) - bw / 2), "y": _f(y0), "width": _f(bw), "height": _f(max(y1 - y0, 1)),
                                         "fill": color, **_traced(columns.mart, columns.column, d, v)}, title=title))
        legend += list(columns.legend) or [(columns.name, MEASURE["neutral"])]
    for ln in lines:
        pts = [(i, ln.points[d]) for i, d in enumerate(dates) if ln.points.get(d) is not None]
        if len(pts) > 1:
            path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in pts)
            shapes.append(Shape("polyline", {"points": path, "fill": "none", "stroke": ln.color, "stroke-width": 2,
                                             **({"stroke-dasharray": "5 3"} if ln.dashed else {})}))
        for i, v in pts:
            shapes.append(Shape("circle", {"cx": _f(x(i)), "cy": _f(y(v)), "r": 3, "fill": ln.color,
                                           **_traced(ln.mart, ln.column, dates[i], v)},
                                title=f"{dates[i]} · {ln.name}: {fmt(v)}"))
        legend.append((ln.name, ln.color))
    for value, color, label in refs:
        shapes.append(Shape("line", {"x1": left, "y1": _f(y(value)), "x2": width - right, "y2": _f(y(value)),
                                     "stroke": color, "stroke-dasharray": "4 3", "stroke-width": "1.5"}))
        shapes.append(Shape("text", {"x": width - right, "y": _f(y(value) - 4), "text-anchor": "end", "class": "rf",
                                     "fill": color}, label))
    shapes += _legend(legend, left, y=6)
    return Chart(width, height, shapes)


# --- stacked bars ------------------------------------------------------------------------------

def stacked_hbar_chart(rows: list[tuple[str, dict[str, float]]], stack: list[tuple[str, str]], *, mart: str,
                       column: str, fmt: Callable = fmt_count, width: int = 660) -> Chart | NoRows:
    """One horizontal bar per row, stacked by category (e.g. break status), total at the end."""
    if not rows:
        return NoRows()
    totals = [sum(v for v in parts.values() if v) for _, parts in rows]
    top = max(totals) or 1.0
    label_w = label_width([label for label, _ in rows])
    text_w, row_h, legend_h = 80, 24, 22
    plot_w = width - label_w - text_w
    height = legend_h + len(rows) * row_h + 6
    shapes = _legend(stack, label_w, y=5)
    for i, ((label, parts), total) in enumerate(zip(rows, totals)):
        y0 = legend_h + i * row_h
        shapes.append(Shape("text", {"x": label_w - 6, "y": y0 + 15, "text-anchor": "end", "class": "lb"}, label))
        x0 = float(label_w)
        for name, color in stack:
            v = parts.get(name) or 0
            if not v:
                continue
            w = v / top * plot_w
            shapes.append(Shape("rect", {"x": _f(x0), "y": y0 + 3, "width": _f(max(w, 1)), "height": row_h - 6,
                                         "fill": color, **_traced(mart, column, f"{label}|{name}", v)},
                                title=f"{label} · {name}: {fmt(v)}"))
            x0 += w
        shapes.append(Shape("text", {"x": _f(x0 + 6), "y": y0 + 16, "class": "vl", **_traced(mart, column, label, total)},
                            fmt(total)))
    return Chart(width, height, shapes, mart)
