"""Publication does not carry forward what someone changed in a published file (issue 22).

Attack: a published file edited read-write (what DuckDB's CLI does when `-readonly` is
forgotten) had its edits carried into the next two publications, which start from the previous
published file to stay incremental.
"""

from __future__ import annotations

import duckdb

from conftest import generate_landing, run_stages

DATES = ["2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]


def firm_gross(path, day: str) -> float:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT firm_gross_exposure_usd FROM kpi_daily WHERE business_date = ?", [day]).fetchone()[0]
    finally:
        con.close()


def test_an_edit_made_read_write_in_a_published_file_is_not_carried_forward(tmp_path):
    from midoffice.config import settings_from
    from midoffice.status import date_statuses

    landing = generate_landing(tmp_path / "landing", DATES[0], len(DATES), 300, seed=9)
    settings = settings_from(landing, tmp_path / "home")
    for i, day in enumerate(DATES[:2], start=1):
        run_stages(settings, day, f"run-{i}")
    truth = firm_gross(settings.published_db, DATES[0])
    # Both published files edited by hand, read-write: the current one and the previous one.
    for path in (settings.published_db, settings.warehouse_dir / "marts.previous.duckdb"):
        con = duckdb.connect(str(path))
        con.execute("UPDATE kpi_daily SET firm_gross_exposure_usd = 1 WHERE business_date = ?", [DATES[0]])
        con.close()
    assert firm_gross(settings.published_db, DATES[0]) == 1
    for i, day in enumerate(DATES[2:], start=3):  # two more publications
        run_stages(settings, day, f"run-{i}")
        assert firm_gross(settings.published_db, DATES[0]) == truth, f"the edit was carried into {day}'s version"
    third = {s.business_date: s for s in date_statuses(settings)}[DATES[2]]
    publish = next(r for r in third.stages if r.stage == "publish")
    assert "changed after it was published" in publish.message


def test_files_as_published_are_still_carried_forward_incrementally(tmp_path):
    from midoffice.config import settings_from
    from midoffice.publish import publish
    from midoffice.warehouse import build_warehouse

    landing = generate_landing(tmp_path / "landing", DATES[0], 3, 300, seed=9)
    settings = settings_from(landing, tmp_path / "home")
    for i, day in enumerate(DATES[:2], start=1):
        run_stages(settings, day, f"run-{i}")
    from midoffice.contracts import ingest_order
    from midoffice.ingest import ingest_feed
    from midoffice.stages import validate_and_gate

    for feed in ingest_order():
        ingest_feed(settings, DATES[2], feed, "run-3")
        validate_and_gate(settings, DATES[2], feed, "run-3")
    build_warehouse(settings, DATES[2], "run-3")
    summary = publish(settings, DATES[2], "run-3")
    assert summary["mode"] == "previous" and summary["distrusted"] == []
