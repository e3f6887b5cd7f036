"""The data dictionary covers every published column, its lineage is right, and the docs are current."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from conftest import REPO

TRANSFORMS = REPO / "transforms"


def published_columns(home: Path) -> dict[str, list[tuple[str, str]]]:
    con = duckdb.connect(str(home / "warehouse" / "marts.duckdb"), read_only=True)
    try:
        out: dict[str, list[tuple[str, str]]] = {}
        for t, c, typ in con.execute(
            "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE schema_name = 'main' "
            "AND database_name = current_database() AND NOT internal ORDER BY table_name, column_index"
        ).fetchall():
            out.setdefault(t, []).append((c, typ))
        return out
    finally:
        con.close()


def yml_models() -> dict[str, dict]:
    """The model files read directly (not through midoffice.models)."""
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(TRANSFORMS.glob("*.yml"))}


# --- coverage -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_every_column_of_every_published_table_has_a_description(sample_run):
    from midoffice.dictionary import undocumented

    published = published_columns(sample_run["home"])
    assert len(published) >= 5
    missing = undocumented(published)
    assert missing == [], (
        f"columns published without a description: {missing}; describe them in transforms/<mart>.yml "
        "(or midoffice/dictionary.py CONTROL_TABLES for build_log/publication)")


@pytest.mark.slow
def test_dictionary_types_equal_the_published_types(sample_run):
    """The types in docs/DATA_DICTIONARY.md (inferred offline) are the warehouse's real types."""
    from midoffice.dictionary import inferred_types

    types = inferred_types()
    for table, cols in published_columns(sample_run["home"]).items():
        if table in types:
            assert dict(cols) == types[table], table


def test_a_column_without_a_description_is_reported():
    from midoffice.dictionary import undocumented

    assert undocumented({"risk_exposure": [("as_of_date", "DATE"), ("new_figure", "DOUBLE")],
                         "brand_new_table": [("x", "INTEGER")], "build_log": [("mart", "VARCHAR")]}) == \
        ["risk_exposure.new_figure", "brand_new_table.x"]


def test_no_description_was_cut_by_an_unquoted_comma():
    """In a YAML flow mapping `{name: x, description: a, b}` the comma ends the description: the
    text becomes 'a' and 'b' a stray key. Descriptions with commas must be quoted."""
    cut = [f"transforms/{name}.yml: {col['name']}: {col.get('description')!r} + {sorted(set(col) - {'name', 'description'})}"
           for name, meta in yml_models().items() for col in meta["columns"] if set(col) - {"name", "description"}]
    contract_keys = {"name", "type", "required", "unique", "values", "min", "max", "min_exclusive", "max_exclusive",
                     "pattern", "ref", "pii", "description"}
    feeds = yaml.safe_load((REPO / "contracts" / "feeds.yaml").read_text())
    cut += [f"contracts/feeds.yaml: {feed}.{col['name']}: {col.get('description')!r} + {sorted(set(col) - contract_keys)}"
            for feed, body in feeds.items() for col in body["columns"] if set(col) - contract_keys]
    assert cut == [], "descriptions cut at an unquoted comma (quote them):\n" + "\n".join(cut)


def test_every_model_column_is_described_in_the_yml():
    for name, meta in yml_models().items():
        for col in meta["columns"]:
            assert str(col.get("description", "")).strip(), f"{name}.{col['name']}"
        assert str(meta.get("description", "")).strip() and meta.get("grain") and meta.get("partition"), name


# --- lineage ---------------------------------------------------------------------------------------

def test_lineage_reaches_every_feed_through_the_marts_a_mart_reads():
    from midoffice.dictionary import downstream_marts, marts_fed_by, upstream_feeds
    from midoffice.models import load_models

    metas = yml_models()

    def feeds(name: str) -> set[str]:  # the transitive closure, computed from the yml files
        meta = metas[name]
        out = set(meta.get("depends_on_feeds") or [])
        for dep in meta.get("depends_on_models") or []:
            out |= feeds(dep)
        return out

    models = load_models()
    up = upstream_feeds(models)
    assert {m: set(f) for m, f in up.items()} == {m: feeds(m) for m in metas}
    down = downstream_marts(models)
    for name, meta in metas.items():
        for dep in meta.get("depends_on_models") or []:
            assert name in down[dep], (dep, name)
    fed = marts_fed_by(models)
    for name in metas:
        for feed in feeds(name):
            assert name in fed[feed]


# --- the generated Markdown --------------------------------------------------------------------------

def test_markdown_documents_every_mart_column_and_feed():
    from midoffice.contracts import load_contracts
    from midoffice.dictionary import CONTROL_TABLES, render_markdown

    text = render_markdown()
    for name, meta in yml_models().items():
        assert f"\n### {name}\n" in text, name
        section = text.split(f"\n### {name}\n", 1)[1].split("\n### ", 1)[0]
        for col in meta["columns"]:
            assert re.search(rf"^\| `{col['name']}`", section, re.M), f"{name}.{col['name']}"
        if meta.get("example"):
            assert meta["example"].strip() in section
        assert f"**Partition**: `{meta['partition']}`" in section
    for table in CONTROL_TABLES:
        assert f"\n### {table}\n" in text
    for feed in load_contracts().values():
        assert f"Feed {feed.name}" in text
        for col in feed.columns:
            assert f"| `{col.name}` | {col.type} |" in text
    assert "```mermaid" in text


def test_docs_data_dictionary_is_up_to_date():
    from midoffice.dictionary import DICTIONARY_MD, render_markdown

    assert DICTIONARY_MD.is_file(), "run `python -m midoffice.dictionary`"
    assert DICTIONARY_MD.read_text(encoding="utf-8") == render_markdown(), \
        "docs/DATA_DICTIONARY.md is stale: run `python -m midoffice.dictionary`"


def test_dictionary_command_writes_and_checks(tmp_path):
    out = tmp_path / "DICT.md"
    run = [sys.executable, "-m", "midoffice.dictionary", "--out", str(out)]
    assert subprocess.run(run + ["--check"], cwd=REPO, capture_output=True).returncode == 1
    assert subprocess.run(run, cwd=REPO, capture_output=True).returncode == 0
    assert subprocess.run(run + ["--check"], cwd=REPO, capture_output=True).returncode == 0
    out.write_text(out.read_text() + "edited by hand\n")
    proc = subprocess.run(run + ["--check"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and "stale" in proc.stderr


def test_html_dictionary_marks_what_is_published():
    from midoffice.dictionary import render_html

    page = render_html("2026-01-05", {"risk_exposure": [("as_of_date", "DATE"), ("extra", "DOUBLE")]},
                       {"risk_exposure": 12})
    assert "published: 12 rows for 2026-01-05" in page
    assert page.count("not in the published warehouse") >= 1
    assert "undocumented" in page  # the column the yml does not describe
    assert "<script" not in page and "http" not in page.replace("http://www.w3.org", "")
