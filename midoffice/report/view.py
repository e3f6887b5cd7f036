"""What the pack shows, as data for the templates: sections made of figures, tables, notes.

Each block has a `kind` the templates dispatch on (templates/blocks.html.j2). Text is plain text:
the templates escape it, so nothing here writes markup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from midoffice.report.charts import STATUS_OF
from midoffice.report.formats import num_attr, plural


@dataclass
class Value:
    """A figure in running text, traced to its mart and column."""
    text: str
    mart: str
    column: str
    member: str | None = None
    value: object = None
    status: str | None = None          # a STATUS key (OK, WARNING, BREACH) to colour it
    kind: str = "value"

    @property
    def raw(self) -> str:
        return num_attr(self.value) if not isinstance(self.value, str) else self.value


@dataclass
class Badge:
    value: Value
    kind: str = "badge"


@dataclass
class NotAvailable:
    reason: str
    kind: str = "na"


@dataclass
class Para:
    """A paragraph of text and traced values; `note` sets it in the small grey type."""
    items: list
    note: bool = False
    kind: str = "para"


@dataclass
class Heading:
    text: str
    kind: str = "heading"


@dataclass
class Source:
    refs: Sequence[str]
    note: str = ""
    kind: str = "source"

    @property
    def text(self) -> str:
        return "source: " + ", ".join(self.refs) + (f" ({self.note})" if self.note else "")


@dataclass
class Cell:
    text: str
    column: str
    value: str | None = None           # data-value, for numbers
    href: str | None = None
    mart: str | None = None            # data-mart, when the table is not one mart's rows


@dataclass
class Row:
    cells: list[Cell]
    status: str | None = None          # a STATUS key for the row's background


@dataclass
class Table:
    mart: str | None
    headers: list[tuple[str, str]]     # (column, header)
    rows: list[Row]
    more: int = 0                      # rows not shown (they are in the extract)
    kind: str = "table"

    @property
    def more_text(self) -> str:
        return plural(self.more, "more row") + " in the extract"


@dataclass
class Chip:
    feed: str
    gate: str
    freshness: str
    loaded: Value
    quarantined: Value
    kind: str = "chip"

    @property
    def status(self) -> str:
        """A failed gate is a breach; a file that came late is a warning even when its gate passed
        (DOMAIN §12: LATE is an alert, not a green chip)."""
        verdict = STATUS_OF.get(self.gate, "BREACH")
        return "WARNING" if verdict == "OK" and self.freshness == "LATE" else verdict


@dataclass
class Chips:
    chips: list[Chip]
    kind: str = "chips"


@dataclass
class Figure:
    blocks: list
    source: Source | None = None
    title: str = ""
    kind: str = "figure"


@dataclass
class Grid:
    figures: list[Figure]
    kind: str = "grid"


@dataclass
class Section:
    sid: str
    title: str
    blocks: list
    lead: list = field(default_factory=list)   # text and Values
    failed: str = ""                           # why building the section raised


@dataclass
class Tile:
    key: str
    label: str
    text: str = "n/a"
    mart: str | None = None
    column: str | None = None
    value: object = None
    status: str | None = None
    target: Value | None = None
    target_text: str = ""
    caption: str = ""
    available: bool = True

    @property
    def raw(self) -> str:
        return num_attr(self.value)


def data_table(mart: str, cols: list[tuple[str, str, Callable]], rows: list[tuple], *,
               status: Callable | None = None, limit: int | None = None) -> Table:
    """A table whose header cells name their column and whose cells carry their raw value.

    cols: (column, header, format); status(row) gives an optional STATUS key for a row.
    """
    shown = rows if limit is None else rows[:limit]
    body = []
    for r in shown:
        cells = []
        for (c, _, f), v in zip(cols, r):
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            cells.append(Cell(f(v), c, num_attr(v) if num else None))
        body.append(Row(cells, status(r) if status else None))
    return Table(mart, [(c, h) for c, h, _ in cols], body, more=len(rows) - len(shown))
