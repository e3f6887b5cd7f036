"""An item type of the worklist is one declaration (transforms/worklist_items/<TYPE>.sql): the
union model takes the declarations whose reads exist and leaves the others waiting, without
touching any other file. Cheap: models are loaded from a copy of transforms/, nothing is built."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import REPO

from midoffice.contracts import ContractError
from midoffice.models import _load_models, load_models, union_parts

NEW_TYPE = """-- NEW_TYPE: a declaration over a mart that exists
WITH x AS (
    SELECT limit_id FROM main.risk_limit_status WHERE as_of_date = getvariable('as_of_date')
),

final AS (
    SELECT limit_id AS natural_key, 0.0 AS value_usd, 'FIRM' AS calendar_id, 'x' AS description FROM x
)

SELECT * FROM final
"""


@pytest.fixture
def transforms(tmp_path: Path) -> Path:
    return Path(shutil.copytree(REPO / "transforms", tmp_path / "transforms"))


def conditions(folder: Path):
    _load_models.cache_clear()  # the models of a folder are cached; this test changes the folder
    return next(m for m in load_models(folder) if m.name == "worklist_conditions")


def test_a_declaration_whose_mart_is_missing_waits_and_one_whose_mart_exists_joins(transforms):
    parts = {p.name: p for p in union_parts(transforms / "worklist_items")}
    waiting = {n for n, p in parts.items() if p.missing}
    model = conditions(transforms)
    for name, part in parts.items():
        assert (f"'{name}' AS item_type" in model.sql) == (name not in waiting), name
    # a new type is one file: it joins the union, with its source among the model's (soft) reads
    (transforms / "worklist_items" / "NEW_TYPE.sql").write_text(NEW_TYPE)
    model = conditions(transforms)
    assert "'NEW_TYPE' AS item_type" in model.sql and "risk_limit_status" in model.reads_models
    assert not model.depends_on_models  # a skipped source skips its type only, never the worklist


def test_a_declaration_waits_for_a_mart_until_it_is_a_model(transforms):
    (transforms / "worklist_items" / "LATER.sql").write_text(NEW_TYPE.replace("risk_limit_status", "future_mart"))
    assert "'LATER' AS item_type" not in conditions(transforms).sql
    later = next(p for p in union_parts(transforms / "worklist_items") if p.name == "LATER")
    assert later.missing == ("main.future_mart",)


def test_the_skipped_source_marker_names_each_type_source(transforms):
    sql = conditions(transforms).sql
    assert "mart IN ('ops_trade_recon')" in sql  # through the recon's table macro
    assert "feed IN ('settlements', 'trades')" in sql  # SETTLEMENT_FAIL's event feeds, not its references


def test_a_union_with_no_buildable_declaration_is_an_error(transforms):
    for path in (transforms / "worklist_items").glob("*.sql"):
        path.write_text(NEW_TYPE.replace("risk_limit_status", "future_mart"))
    with pytest.raises(ContractError, match="no declaration"):
        conditions(transforms)


def test_limit_change_review_is_active_and_reads_only_columns_limit_changes_declares(tmp_path):
    """limit_changes is a mart now: the review joins the union, and its declaration runs on a table
    of exactly limit_changes' declared columns (a renamed column fails here, not in a build)."""
    import duckdb
    import yaml

    _load_models.cache_clear()
    part = next(p for p in union_parts(REPO / "transforms" / "worklist_items") if p.name == "LIMIT_CHANGE_REVIEW")
    assert not part.missing
    assert "'LIMIT_CHANGE_REVIEW' AS item_type" in conditions(REPO / "transforms").sql
    declared = [c["name"] for c in yaml.safe_load((REPO / "transforms" / "limit_changes.yml").read_text())["columns"]]
    types = {"as_of_date": "DATE", "previous_delivery_date": "DATE", "cured_by_limit_change": "BOOLEAN",
             "loaded_at": "TIMESTAMP"} | {c: "DOUBLE" for c in declared if c.endswith(("_value", "_pct")) or c == "exposure"}
    con = duckdb.connect()
    con.execute("CREATE TABLE limit_changes (" + ", ".join(f"{c} {types.get(c, 'VARCHAR')}" for c in declared) + ")")
    row = dict.fromkeys(declared)
    cured = row | {"as_of_date": "2026-01-08", "limit_id": "L1", "change_type": "CHANGED", "scope_type": "BOOK",
                   "scope_id": "EQ1", "metric": "GROSS_EXPOSURE", "old_limit_value": 100.0, "new_limit_value": 150.0,
                   "exposure": -120.0, "cured_by_limit_change": True}
    others = [cured | {"limit_id": "L2", "cured_by_limit_change": False}, cured | {"limit_id": "L3", "as_of_date": "2026-01-07"}]
    for r in [cured, *others]:
        con.execute(f"INSERT INTO limit_changes VALUES ({', '.join('?' for _ in declared)})", [r[c] for c in declared])
    con.execute("SET VARIABLE as_of_date = DATE '2026-01-08'")
    got = con.execute(part.sql).fetchall()
    names = [d[0] for d in con.description]
    assert len(got) == 1
    item = dict(zip(names, got[0]))
    assert (item["natural_key"], item["book"], item["asset_class"], item["value_usd"]) == ("L1", "EQ1", None, 120.0)
    assert "100.00" in item["description"] and "150.00" in item["description"]
