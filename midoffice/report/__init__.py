"""Reports: the daily pack (one self-contained HTML page), the data dictionary page and extracts
of every mart, per business date.

Reads only the published warehouse (read-only), so the pack shows exactly what analysts see.
The page needs no network: styles are inline, charts are inline SVG, there are no scripts.
Every figure carries `data-mart` and `data-column` attributes (and `data-value`, the unrounded
number), and every chart and table a "source: mart.column" caption, so a reader (or a test) can
tie any number on the page back to the warehouse.

The package: `queries` reads the published warehouse, `charts` draws the SVG charts,
`extracts` writes the CSV/Parquet extracts with their checksums, `sections` turns query results
into what each section shows, `templates/` holds the Jinja2 templates (autoescaped) that write
the pages, and `pack` puts them together (`build_report`).
"""

from midoffice.report.pack import NothingPublishedForDate, ReportError, build_report

__all__ = ["NothingPublishedForDate", "ReportError", "build_report"]
