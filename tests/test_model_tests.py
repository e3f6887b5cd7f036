"""The tests declared beside the marts run as the build's audit, and a new mart is one .sql and
one .yml: real homes built through the real build, from generated feeds."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from conftest import published as open_lake, REPO, generate_landing

DATES = ["2026-01-05", "2026-01-06"]


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    return generate_landing(tmp_path_factory.mktemp("model_tests") / "landing", DATES[0], len(DATES), 150, seed=11)


def build_date(settings, day: str, publish_after: bool = True) -> dict:
    """ingest → validate and gate → build (→ publish), as the DAG's tasks do."""
    from midoffice.contracts import ingest_order
    from midoffice.ingest import ingest_feed
    from midoffice.publish import publish
    from midoffice.stages import validate_and_gate
    from midoffice.warehouse import build_warehouse

    run_id = f"model-tests-{day}"
    for feed in ingest_order():
        ingest_feed(settings, day, feed, run_id)
        validate_and_gate(settings, day, feed, run_id)
    summary = build_warehouse(settings, day, run_id)
    if publish_after:
        publish(settings, day, run_id)
    return summary


def rewrite_feed_file(landing: Path, day: str, feed: str, file: str, edit) -> None:
    """Edit a delivered file and fix its manifest entry's checksum, as a sender would have sent it."""
    path = landing / day / file
    path.write_text(edit(path.read_text()))
    manifest = json.loads((landing / day / "_manifest.json").read_text())
    manifest["feeds"][feed]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (landing / day / "_manifest.json").write_text(json.dumps(manifest, indent=1))


def published_dates(home: Path, mart: str, column: str) -> list[str]:
    con = open_lake(home / "warehouse" / "marts.duckdb")
    try:
        return [str(d) for (d,) in con.execute(f"SELECT DISTINCT {column} FROM {mart} ORDER BY 1").fetchall()]
    finally:
        con.close()


def copy_transforms(tmp_path: Path) -> Path:
    folder = tmp_path / "transforms"
    shutil.copytree(REPO / "transforms", folder)
    return folder


def test_a_limit_that_makes_utilisation_infinite_stops_the_publication(landing, tmp_path):
    """A limit of 1e-320 made utilisation = exposure / limit inf. The contract now quarantines it at
    ingest (limit_value:range); should such a value reach the build anyway (a contract loosened, a
    partition written by another tool), the finite check every numeric column gets stops the date,
    naming mart, column and date."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from midoffice.config import settings_from
    from midoffice.contracts import ingest_order
    from midoffice.ingest import ingest_feed
    from midoffice.stages import validate_and_gate
    from midoffice.warehouse import AuditError, build_warehouse

    own = shutil.copytree(landing, tmp_path / "landing")
    settings = settings_from(own, tmp_path / "home")
    build_date(settings, DATES[0])

    run_id = f"model-tests-{DATES[1]}"
    for feed in ingest_order():
        ingest_feed(settings, DATES[1], feed, run_id)
        validate_and_gate(settings, DATES[1], feed, run_id)
    # (at ingest, the contract quarantines such a limit: tests/test_hostile_input.py)
    staged = settings.staged_partition("limits", DATES[1])
    limits = pq.read_table(staged).to_pylist()
    firm = next(r for r in limits if (r["scope_type"], r["metric"]) == ("FIRM", "GROSS_EXPOSURE"))
    firm["limit_value"] = 1e-320  # past the contract: the audit is the second
    pq.write_table(pa.Table.from_pylist(limits, schema=pq.read_schema(staged)), staged)
    with pytest.raises(AuditError) as failed:
        build_warehouse(settings, DATES[1], run_id)
    message = str(failed.value)
    assert "risk_limit_status.utilisation: test finite fails for 2026-01-06" in message, message
    assert message.startswith("2026-01-06: audit failed")
    # the date's marts were rolled back: a publication now still has the first date only
    from midoffice.publish import publish

    publish(settings, DATES[1], "model-tests-republish")
    assert published_dates(settings.home, "risk_limit_status", "as_of_date") == [DATES[0]]


def test_a_declared_column_test_that_fails_stops_the_build(landing, tmp_path, monkeypatch):
    """accepted_values in the yml: a value outside the list fails the date's audit."""
    import yaml

    from midoffice.config import settings_from
    from midoffice.models import TRANSFORMS_DIR_ENV
    from midoffice.warehouse import AuditError

    folder = copy_transforms(tmp_path)
    path = folder / "risk_exposure.yml"
    meta = yaml.safe_load(path.read_text())
    column = next(c for c in meta["columns"] if c["name"] == "holder_type")
    column["tests"] = [{"accepted_values": ["BOOK"]}]
    path.write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
    monkeypatch.setenv(TRANSFORMS_DIR_ENV, str(folder))
    settings = settings_from(landing, tmp_path / "home")
    with pytest.raises(AuditError, match=r"risk_exposure\.holder_type: test accepted_values \(one of BOOK\) "
                                         r"fails for 2026-01-05 on \d+ rows"):
        build_date(settings, DATES[0], publish_after=False)


THROWAWAY_SQL = """-- Books' gross exposure on the date (a throwaway mart: transforms need nothing else)
WITH final AS (
    SELECT as_of_date, holder_id AS book, count(*) AS holdings,
           CAST(sum(CAST(abs(market_value_usd) AS DECIMAL(38, 6))) AS DOUBLE) AS gross_usd
    FROM main.risk_exposure
    WHERE as_of_date = getvariable('as_of_date') AND holder_type = 'BOOK'
    GROUP BY ALL
)

SELECT * FROM final ORDER BY book
"""

THROWAWAY_YML = """name: zz_book_gross
description: Gross exposure of each book on the date (a mart added by a test).
grain: [as_of_date, book]
partition: as_of_date
columns:
  - {name: as_of_date, description: Business date.}
  - {name: book, description: The book.}
  - {name: holdings, description: Holdings of the book., tests: [not_null, {range: {min: 1}}]}
  - {name: gross_usd, description: "Σ |market value|, USD."}
  - {name: run_id, description: Pipeline run that built the row.}
  - {name: loaded_at, description: When the row was built.}
"""


def test_a_new_mart_is_one_sql_and_one_yml(landing, tmp_path, monkeypatch):
    """Copy transforms/, add a mart's two files and nothing else: the build builds it after what
    it reads, the publication publishes it, the dictionary documents it with its lineage."""
    from midoffice.config import settings_from
    from midoffice.models import TRANSFORMS_DIR_ENV, load_models

    folder = copy_transforms(tmp_path)
    (folder / "zz_book_gross.sql").write_text(THROWAWAY_SQL)
    (folder / "zz_book_gross.yml").write_text(THROWAWAY_YML)
    monkeypatch.setenv(TRANSFORMS_DIR_ENV, str(folder))
    new = next(m for m in load_models() if m.name == "zz_book_gross")
    assert new.depends_on_models == ("risk_exposure",) and new.published

    settings = settings_from(landing, tmp_path / "home")
    summary = build_date(settings, DATES[0])
    assert summary["built"]["zz_book_gross"] > 0
    con = open_lake(settings.home)
    try:
        rows = con.execute("SELECT count(*), sum(gross_usd) FROM zz_book_gross WHERE as_of_date = ?",
                           [DATES[0]]).fetchone()
        gross = con.execute("SELECT sum(abs(market_value_usd)) FROM risk_exposure WHERE as_of_date = ? "
                            "AND holder_type = 'BOOK'", [DATES[0]]).fetchone()[0]
    finally:
        con.close()
    assert rows[0] > 0 and rows[1] == pytest.approx(gross, rel=1e-9)

    out = tmp_path / "DICTIONARY.md"
    proc = subprocess.run([sys.executable, "-m", "midoffice.dictionary", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, env=dict(os.environ, **{TRANSFORMS_DIR_ENV: str(folder)}))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    section = text.split("\n### zz_book_gross\n", 1)[1].split("\n### ", 1)[0]
    assert "**models read**: [risk_exposure](#risk_exposure)" in section
    assert "| `holdings` | BIGINT | not null; >= 1 |" in section
    assert "| `gross_usd` | DOUBLE | finite |" in section
    assert "zz_book_gross" in text.split("\n### risk_exposure\n", 1)[1].split("\n### ", 1)[0]  # read by


def test_an_intermediate_model_is_built_read_and_never_published(landing, tmp_path):
    """int_holdings_valued (published: false) holds client ids: built for risk_exposure and
    client_portfolio to read, absent from the published warehouse, the extracts and the marts
    of the dictionary."""
    from midoffice.config import settings_from
    from midoffice.dictionary import render_markdown
    from midoffice.models import load_models, mart_names

    intermediate = next(m for m in load_models() if m.name == "int_holdings_valued")
    assert not intermediate.published and "int_holdings_valued" not in mart_names()
    readers = {m.name for m in load_models() if "int_holdings_valued" in m.models_read}
    assert {"risk_exposure", "client_portfolio"} <= readers

    settings = settings_from(landing, tmp_path / "home")
    summary = build_date(settings, DATES[0])
    assert summary["built"]["int_holdings_valued"] > 0
    build = duckdb.connect(str(settings.build_db), read_only=True)
    try:
        valued = build.execute("SELECT count(*), sum(market_value_usd) FROM int_holdings_valued "
                               "WHERE as_of_date = ?", [DATES[0]]).fetchone()
    finally:
        build.close()
    published = open_lake(settings.home)
    try:
        tables = {t for (t,) in published.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        exposure = published.execute("SELECT count(*), sum(market_value_usd) FROM risk_exposure "
                                     "WHERE as_of_date = ?", [DATES[0]]).fetchone()
    finally:
        published.close()
    assert "int_holdings_valued" not in tables and "risk_exposure" in tables
    # risk_exposure publishes every valued holding, no more, no less (a float sum's order varies)
    assert valued[0] == exposure[0] and valued[1] == pytest.approx(exposure[1], rel=1e-12)
    marts_table = render_markdown().split("## Marts", 1)[1].split("## Lineage", 1)[0]
    assert "int_holdings_valued" not in marts_table.split("Intermediate models")[0]
