"""The data dictionary covers every published column, its lineage is right, and the docs are current."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import published, REPO

TRANSFORMS = REPO / "transforms"


def published_columns(home: Path) -> dict[str, list[tuple[str, str]]]:
    con = published(home / "warehouse" / "marts.duckdb")
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


@functools.cache  # read once: the lineage test asks for it three times per model
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
    model_keys = {"name", "description", "tests"}
    cut = [f"transforms/{name}.yml: {col['name']}: {col.get('description')!r} + {sorted(set(col) - model_keys)}"
           for name, meta in yml_models().items() for col in meta["columns"] if set(col) - model_keys]
    contract_keys = {"name", "type", "required", "unique", "values", "min", "max", "min_exclusive", "max_exclusive",
                     "pattern", "ref", "pii", "optional", "description"}
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

# The table macros of warehouse/marts.sql a model may read instead of a model's table, and the
# models whose storage they read (written out here, not derived, so the derivation is checked).
MACROS = {"ops_trade_recon_between": "ops_trade_recon"}
# What a model reads through its storage's view rather than its own SQL: the recon's view values
# every date's trades at fx_daily.
THROUGH_VIEW = {"ops_trade_recon": {"fx_daily"}}
# The table macros of warehouse/*.sql a model may read a feed through (USD conversion, fx.sql;
# the instrument reference and two dates' closes and rates, valuation.sql).
FEED_MACROS = {"fx_rates_known": "fx_rates", "fx_rates_on": "fx_rates", "instruments_on": "instruments",
               "closes_of_two_dates": "prices", "previous_priced_date": "prices", "fx_rates_of_two_dates": "fx_rates"}


def sql_reads_by_regex(name: str) -> tuple[set[str], set[str]]:
    """(feeds, models) named in transforms/<name>.sql, found with a regex, not sqlglot."""
    feeds = set(yaml.safe_load((REPO / "contracts" / "feeds.yaml").read_text()))
    models = set(yml_models())
    union_of = yml_models()[name].get("union_of")
    if union_of:  # the declarations of the folder whose main.<x> reads are all models or macros
        texts = [re.sub(r"--[^\n]*", "", p.read_text()) for p in sorted((TRANSFORMS / union_of).glob("*.sql"))]
        sql = "\n".join(t for t in texts if all(x in models or x in MACROS or x in THROUGH_VIEW
                                                for x in re.findall(r"\bmain\.([a-z_][a-z0-9_]*)", t)))
    else:
        sql = re.sub(r"--[^\n]*", "", (TRANSFORMS / f"{name}.sql").read_text())
    refs = set(re.findall(r"\b(core|main)\.([a-z_][a-z0-9_]*)", sql))
    read_models = set()
    for schema, table in refs:
        if schema == "main":
            for stem in (table, table.removesuffix("_spans"), table.removesuffix("_dates"), MACROS.get(table)):
                if stem in models:
                    read_models.add(stem)
                    break
    read_feeds = {t for s, t in refs if s == "core" and t in feeds} | \
        {FEED_MACROS[t] for s, t in refs if s == "core" and t in FEED_MACROS}
    return read_feeds, (read_models | THROUGH_VIEW.get(name, set())) - {name}


def test_lineage_is_what_the_sql_reads():
    """Every feed and model a query names is in its lineage, and nothing else: the yml lists none."""
    from midoffice.models import load_models

    for m in load_models():
        feeds, models = sql_reads_by_regex(m.name)
        assert (set(m.feeds_read), set(m.models_read)) == (feeds, models), m.name
        meta = yml_models()[m.name]
        soft = set(meta.get("soft_reads") or [])
        if meta.get("union_of"):  # every read of a union is soft: a skipped source skips its part only
            soft = {f"core.{f}" for f in feeds} | {f"main.{x}" for x in models}
        assert {f"core.{f}" for f in m.reads_feeds} | {f"main.{x}" for x in m.reads_models} == soft, m.name
        assert not set(m.depends_on_feeds) & set(m.reads_feeds) and not set(m.depends_on_models) & set(m.reads_models)


def test_client_portfolio_lineage_names_every_feed_its_valuation_reads():
    """The yml once omitted instruments and targets: the dictionary listed the wrong feeds."""
    from midoffice.dictionary import render_markdown

    section = render_markdown().split("\n### client_portfolio\n", 1)[1].split("\n### ", 1)[0]
    assert "targets (soft)" in section
    lineage = next(line for line in section.splitlines() if line.startswith("- **Lineage**"))
    assert "instruments" in lineage and "targets" not in lineage


def test_build_order_is_a_topological_sort_with_ties_by_name():
    from midoffice.models import build_order, load_models

    models = load_models()
    seen: list[str] = []
    for m in models:
        assert set(m.models_read) <= set(seen), (m.name, set(m.models_read) - set(seen))
        seen.append(m.name)
    assert [m.name for m in build_order(list(reversed(models)))] == seen  # the input order plays no part
    ready_first = [m.name for m in models if not m.models_read]
    assert seen[0] == min(ready_first)


def test_lineage_reaches_every_feed_through_the_marts_a_mart_reads():
    from midoffice.dictionary import downstream_marts, marts_fed_by, upstream_feeds
    from midoffice.models import load_models

    models = {m.name: m for m in load_models()}

    def feeds(name: str) -> set[str]:  # the transitive closure of the hard reads
        m = models[name]
        return set(m.depends_on_feeds).union(*(feeds(d) for d in m.depends_on_models))

    up = upstream_feeds(list(models.values()))
    assert {m: set(f) for m, f in up.items()} == {m: feeds(m) for m in models}
    down = downstream_marts(list(models.values()))
    for name, m in models.items():
        for dep in m.models_read:
            assert name in down[dep] or not m.published, (dep, name)
    fed = marts_fed_by(list(models.values()))
    for name, m in models.items():
        for feed in feeds(name):
            assert name in fed[feed] or not m.published


def copy_transforms(tmp_path: Path) -> Path:
    target = tmp_path / "transforms"
    shutil.copytree(TRANSFORMS, target)
    return target


def edit_yml(path: Path, change) -> None:
    meta = yaml.safe_load(path.read_text())
    change(meta)
    path.write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))


@pytest.mark.parametrize("change, message", [
    (lambda meta: meta.__setitem__("soft_reads", ["main.risk_var"]), "soft_reads names 'main.risk_var'"),
    (lambda meta: meta.__setitem__("soft_reads", ["core.trades"]), "soft_reads names 'core.trades'"),
    (lambda meta: meta.__setitem__("depends_on_feeds", ["clients"]), "remove ['depends_on_feeds']"),
    (lambda meta: meta.__setitem__("order", 3), "remove ['order']"),
    (lambda meta: meta["columns"][0].__setitem__("tests", ["positive"]), "unknown test 'positive'"),
])
def test_a_yml_that_disagrees_with_its_sql_is_refused(tmp_path, change, message):
    from midoffice.contracts import ContractError
    from midoffice.models import load_models

    folder = copy_transforms(tmp_path)
    edit_yml(folder / "client_portfolio.yml", change)
    with pytest.raises(ContractError, match=re.escape(message)):
        load_models(folder)


def test_a_read_that_is_no_feed_or_model_is_refused(tmp_path):
    from midoffice.contracts import ContractError
    from midoffice.models import load_models

    folder = copy_transforms(tmp_path)
    sql = folder / "cost_income_daily.sql"
    sql.write_text(sql.read_text().replace("FROM core.gl_entries", "FROM gl_entries"))
    with pytest.raises(ContractError, match="unqualified"):
        load_models(folder)
    sql.write_text(sql.read_text().replace("FROM gl_entries", "FROM main.gl_entry"))
    with pytest.raises(ContractError, match="main.gl_entry, which is no model"):
        load_models(folder)
    sql.write_text(sql.read_text().replace("FROM main.gl_entry", "FROM core.gl_entry"))
    with pytest.raises(ContractError, match="core.gl_entry, which is no feed"):
        load_models(folder)


def test_macros_and_table_functions_that_are_no_model_are_not_lineage(tmp_path):
    """A scalar macro, an unqualified function, a table function over no model: no read."""
    from midoffice.models import load_models

    folder = copy_transforms(tmp_path)
    sql = folder / "cost_income_daily.sql"
    sql.write_text(sql.read_text().replace(
        "FROM core.gl_entries",
        "FROM core.gl_entries, range(1) AS one, "
        "main.business_days_between(DATE '2026-01-01', DATE '2026-01-02') AS d"))
    ledger = next(m for m in load_models(folder) if m.name == "cost_income_daily")
    assert (ledger.feeds_read, ledger.models_read) == (("client_activity", "fx_rates", "gl_entries"), ("revenue_daily",))


def test_a_macro_s_reads_are_the_lineage_of_the_models_that_call_it():
    """A macro of the warehouse's DDL (a business-day count over a calendar feed, a table macro
    over a model) passes what it reads on to the model calling it, qualified or not."""
    from midoffice.contracts import feed_names
    from midoffice.models import _Graph, ddl_objects, derive_lineage

    ddl = ("CREATE MACRO main.open_days(a, b) AS (SELECT count(*) FROM core.books WHERE business_date BETWEEN a AND b);"
           "CREATE MACRO main.holdings_of(d) AS TABLE SELECT * FROM risk_exposure WHERE as_of_date = d;"
           "CREATE MACRO main.twice(x) AS 2 * x;")
    graph = _Graph({"risk_exposure", "kpi"}, {}, ddl_objects(ddl, ("MACRO", "VIEW")))
    sql = ("SELECT open_days(DATE '2026-01-01', d) AS n, main.twice(1) AS t FROM main.holdings_of(DATE '2026-01-05'), "
           "(SELECT getvariable('as_of_date') AS d)")
    lineage = derive_lineage("kpi.yml", "kpi", sql, graph, set(feed_names()))
    assert (lineage.feeds, lineage.models) == (("books",), ("risk_exposure",))


def test_dictionary_refuses_columns_the_sql_does_not_give(tmp_path):
    """The yml documents a column the query does not give: the dictionary command fails, naming it
    (the build would refuse the model too)."""
    folder = copy_transforms(tmp_path)
    edit_yml(folder / "fx_daily.yml", lambda meta: meta["columns"].insert(2, {"name": "mid", "description": "x"}))
    env = dict(os.environ, MIDOFFICE_TRANSFORMS_DIR=str(folder))
    proc = subprocess.run([sys.executable, "-m", "midoffice.dictionary", "--out", str(tmp_path / "D.md")],
                          cwd=REPO, capture_output=True, text=True, env=env)
    assert proc.returncode == 1 and "fx_daily.yml documents" in proc.stderr and "'mid'" in proc.stderr


def test_documented_columns_are_the_columns_the_sql_gives():
    from midoffice.dictionary import column_mismatches

    assert column_mismatches() == []


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
