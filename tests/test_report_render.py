"""The pack's building blocks without a warehouse: templates ship and escape, labels are whole,
plurals are right, and a status has one colour in every chart, table and tile."""

from __future__ import annotations

import re
from importlib.resources import files

from midoffice.report.charts import MEASURE, STATUS, Bar, Series, hbar_chart, status_color, verdict
from midoffice.report.formats import plural
from midoffice.report.render import render
from midoffice.report.view import Figure, Section, Source, Table, Tile, Value, data_table
from midoffice.signoff import state_of


SIGNED_ON_5 = [{"effective_date": "2026-01-07", "version": 5, "action": "PREPARE", "by": "ann", "at": "t1"},
               {"effective_date": "2026-01-07", "version": 5, "action": "SIGN", "by": "bob", "at": "t2"}]


def _page(sections: list[Section], tiles: list[Tile] = (), signoffs: list[dict] = ()) -> str:
    return render("pack.html.j2", d="2026-01-07", run_id="run-<1>", tiles=list(tiles), sections=sections,
                  nav=[(s.sid, s.title) for s in sections], restated=[],
                  publication={"run_id": "manual__x", "business_date": "2026-01-08", "version": 7,
                               "published_at": "2026-01-08 19:02", "date_version": 5},
                  signoff=state_of(list(signoffs), "2026-01-07", 5))


def test_templates_are_package_data():
    templates = files("midoffice.report") / "templates"
    assert {"pack.html.j2", "blocks.html.j2", "dictionary.html.j2"} <= {p.name for p in templates.iterdir()}


def test_text_from_the_warehouse_is_escaped():
    evil = '<script>alert("x")</script>'
    table = data_table("alerts", [("message", "message", str)], [(evil,)])
    page = _page([Section("alerts", evil, [table, Source([evil])], lead=[Value(evil, "alerts", "message", evil)])])
    assert "<script" not in page and page.count("&lt;script&gt;") >= 4


def test_header_shows_the_date_and_publication_and_the_run_id_only_in_the_footer():
    page = _page([])
    header = page[page.index("<header>"):page.index("</header>")]
    assert "2026-01-07" in header and "version 7" in header and "2026-01-08 19:02 UTC" in header
    # the pack's date was last published in an earlier version than the latest one: both are named
    assert "2026-01-07 as published in version 5" in header
    assert "Sign-off: <b>NONE</b>" in header
    signed = _page([], signoffs=SIGNED_ON_5)
    assert "by bob (prepared by ann) on version 5" in signed[:signed.index("</header>")]
    assert "manual__x" not in header and "run-" not in header
    footer = page[page.index("<footer>"):page.index("</footer>")]
    assert "manual__x" in footer and "run-&lt;1&gt;" in footer


def test_plurals():
    assert plural(1, "row") == "1 row" and plural(0, "row") == "0 rows" and plural(1204, "row") == "1,204 rows"
    one_more = data_table("alerts", [("n", "n", str)], [(1,), (2,)], limit=1)
    assert one_more.more_text == "1 more row in the extract"
    assert "1 more row in the extract" in _page([Section("alerts", "Alerts", [one_more])])
    assert data_table("alerts", [("n", "n", str)], [(1,), (2,), (3,)], limit=1).more_text.startswith("2 more rows")


def test_long_labels_are_shown_whole():
    label, key = "CLIENT · gross", "bec0429408cfa04fb6bf"
    long_label = "A DESK WITH A VERY LONG NAME THAT NEEDS TWO LINES TO BE READ"
    chart = hbar_chart([Bar(label, (1.08,), sublabel=key), Bar(long_label, (0.5,))],
                       [Series("utilisation", "utilisation", STATUS["OK"])], mart="risk_limit_utilisation")
    page = _page([Section("limits", "Limits", [Figure([chart], Source(["risk_limit_utilisation.utilisation"]))])])
    spans = re.findall(r"<tspan[^>]*>([^<]*)</tspan>", page)
    assert "CLIENT · gross" in spans and key in spans            # the key whole, on its own line
    wrapped = [s for s in spans if s in long_label]
    assert len(wrapped) == 2 and " ".join(wrapped) == long_label  # on two lines, nothing cut
    assert "…" not in page


def test_one_colour_per_status():
    assert status_color("PASS") == status_color("OK") == status_color("MATCHED") == verdict(True) == STATUS["OK"]
    assert status_color("FAIL") == status_color("BREACH") == verdict(False) == STATUS["BREACH"]
    assert status_color("WARNING") == status_color("YELLOW") == STATUS["WARNING"]
    # measures never borrow a status colour, so a colour on the page always means the same thing
    assert not set(MEASURE.values()) & set(STATUS.values())
    tiles = [Tile("limits_breach", "Limits in breach", "4", "kpi_daily", "limits_breach", 4, "BREACH")]
    table = Table("alerts", [("severity", "severity")], [], kind="table")
    page = _page([Section("alerts", "Alerts", [table])], tiles)
    css = page[page.index("<style>"):page.index("</style>")]
    for name, colour in STATUS.items():
        assert f".v.st-{name},span.st-{name},p.st-{name}{{color:{colour}}}" in css
    assert 'class="tile st-BREACH"' in page and 'class="v st-BREACH"' in page


def test_a_late_file_is_a_warning_chip_not_a_green_one():
    from midoffice.report.view import Chip, Value

    def chip(gate: str, freshness: str) -> Chip:
        return Chip("settlements", gate, freshness, Value("1 loaded", "dq_feed_health", "loaded_rows", "x", 1),
                    Value("0 quarantined", "dq_feed_health", "quarantined_rows", "x", 0))

    assert chip("PASS", "ON_TIME").status == "OK"
    assert chip("PASS", "LATE").status == "WARNING"
    assert chip("FAIL", "LATE").status == "BREACH"


def test_quarantined_records_are_amber_and_breaches_red():
    """A tile counting what went wrong: quarantined records are a warning (the feed still passed
    its gate), limits in breach a failed control; none of either is OK. Read from a real
    kpi_daily table in DuckDB, as the pack reads it."""
    import duckdb

    from midoffice.report.queries import Pack
    from midoffice.report.sections import kpi_tiles

    con = duckdb.connect()
    con.execute("CREATE TABLE kpi_daily (business_date DATE, quarantined_rows BIGINT, limits_breach BIGINT)")
    con.execute("INSERT INTO kpi_daily VALUES (DATE '2026-01-05', 3, 2), (DATE '2026-01-06', 0, 0)")
    columns = {"kpi_daily": {"business_date", "quarantined_rows", "limits_breach"}}
    for d, quarantined, breach in (("2026-01-05", "WARNING", "BREACH"), ("2026-01-06", "OK", "OK")):
        tiles = {t.key: t for t in kpi_tiles(Pack(con, d, columns), {})}
        assert (tiles["quarantined_rows"].status, tiles["limits_breach"].status) == (quarantined, breach), d
        assert status_color(tiles["quarantined_rows"].status) == STATUS[quarantined]
