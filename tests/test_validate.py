"""Great Expectations suites (midoffice.suites) and the validation gate (midoffice.validate).

Real GX, no mocks: tiny staged Parquet partitions are written with pyarrow in the staged types
(VARCHAR string, BIGINT int64, DOUBLE double, DATE date32, TIMESTAMP timestamp[us]).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from midoffice.config import EXPECTATIONS_DIR, Settings
from midoffice.contracts import get_feed, load_contracts
from midoffice.suites import build_suite, load_suite, suite_json, write_suites
from midoffice.validate import build_data_docs, validate_feed

BD = "2024-03-15"
BD_DATE = dt.date.fromisoformat(BD)
ARROW = {
    "VARCHAR": pa.string(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
}


def stage(settings: Settings, feed: str, rows: list[dict], business_date: str = BD,
          columns: list[str] | None = None) -> Path:
    """Write rows as the staged partition of a feed, typed like ingest writes it."""
    contract = get_feed(feed)
    names = columns or contract.column_names
    types = {c.name: ARROW[c.type] for c in contract.columns}
    table = pa.table({n: pa.array([r.get(n) for r in rows], types.get(n, pa.string()))
                      for n in names})
    path = settings.staged_partition(feed, business_date)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def books_rows():
    return [
        {"book": b, "desk_name": f"Desk {b}", "business_line": "MARKETS",
         "legal_entity": "MO-UK", "head_trader_id": f"T{i}"}
        for i, b in enumerate(["EQ1", "FI1"])
    ]


def instruments_rows():
    return [
        {"instrument_id": "I1", "name": "Acme", "asset_class": "EQUITY", "sector": "TECH",
         "issuer_id": "ACME", "issuer_country": "US", "currency": "USD"},
        {"instrument_id": "I2", "name": "Bund 2030", "asset_class": "BOND", "sector": "GOVT",
         "issuer_id": "DE", "issuer_country": "DE", "currency": "EUR"},
    ]


def clients_rows():
    return [
        {"client_id": f"C{i}", "legal_name": f"Client {i}", "email": f"c{i}@example.com",
         "client_type": "CORPORATE", "segment": "INSTITUTIONAL", "country": "GB",
         "birth_or_incorporation_date": dt.date(1990, 1, 1),
         "onboarding_date": dt.date(2020, 1, 1), "kyc_status": "APPROVED",
         "risk_profile": "BALANCED", "relationship_manager_id": "RM1", "status": "ACTIVE",
         "updated_at": dt.datetime(2024, 3, 14, 12, 0, 0)}
        for i in (1, 2)
    ]


def trades_rows():
    base = {"event_type": "NEW", "version": 1, "trade_date": BD_DATE,
            "settle_date": BD_DATE + dt.timedelta(days=2), "trader_id": "T1", "side": "BUY",
            "quantity": 100.0, "price": 10.5, "commission": 1.0, "venue": "XLON",
            "exec_timestamp": dt.datetime(2024, 3, 15, 9, 30, 0)}
    return [
        {**base, "trade_id": "TR1", "book": "EQ1", "client_id": "C1",
         "instrument_id": "I1", "currency": "USD"},
        {**base, "trade_id": "TR2", "book": "FI1", "client_id": "C2", "side": "SELL",
         "instrument_id": "I2", "currency": "EUR"},
        {**base, "trade_id": "TR1", "version": 2, "event_type": "AMEND", "book": "EQ1",
         "client_id": "C1", "instrument_id": "I1", "currency": "USD", "quantity": 150.0,
         "trade_date": BD_DATE - dt.timedelta(days=1)},
    ]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(landing=tmp_path / "landing", home=tmp_path / "home")


@pytest.fixture
def staged(settings: Settings) -> Settings:
    stage(settings, "books", books_rows())
    stage(settings, "instruments", instruments_rows())
    # clients only delivered the day before: references fall back to the latest earlier date
    stage(settings, "clients", clients_rows(), business_date="2024-03-14")
    stage(settings, "trades", trades_rows())
    return settings


def rules_failed(result: dict) -> set[str]:
    return {f["rule"] for f in result["failed"]}


# --- suites --------------------------------------------------------------------------------

def test_committed_suites_match_the_contract():
    for name in load_contracts():
        path = EXPECTATIONS_DIR / f"{name}.json"
        assert path.exists(), f"missing {path}; run `python -m midoffice.suites`"
        assert path.read_text() == suite_json(build_suite(name)), (
            f"{path} drifted from contracts/feeds.yaml; regenerate with `python -m midoffice.suites`")
        assert load_suite(name) == build_suite(name)
    assert sorted(p.stem for p in EXPECTATIONS_DIR.glob("*.json")) == sorted(load_contracts())


def test_write_suites_is_deterministic(tmp_path: Path):
    first = {p.name: p.read_text() for p in write_suites(tmp_path)}
    second = {p.name: p.read_text() for p in write_suites(tmp_path)}
    assert first == second and len(first) == len(load_contracts())


def test_suites_load_into_gx_unchanged():
    import great_expectations as gx

    for name in load_contracts():
        suite = build_suite(name)
        back = gx.ExpectationSuite(**suite).to_json_dict()
        back.pop("id", None)
        for e in back["expectations"]:
            e.pop("id", None)
        assert back == suite, name


def test_suite_content_mirrors_contract_rules():
    trades = build_suite("trades")
    by_rule = {}
    for e in trades["expectations"]:
        by_rule.setdefault(e["meta"]["rule"], []).append(e)
    assert by_rule["columns"][0]["kwargs"]["column_list"] == get_feed("trades").column_names
    assert by_rule["trade_date:range"][0]["kwargs"]["max_value"] == {"$PARAMETER": "business_date"}
    assert by_rule["quantity:range"][0]["kwargs"] == {
        "column": "quantity", "min_value": 0.0, "strict_min": True, "max_value": 1e9}
    assert by_rule["currency:pattern"][0]["kwargs"]["regex"] == "^(?:[A-Z]{3})$"
    assert by_rule["book:ref"][0]["type"] == "expect_column_values_to_not_be_in_set"
    assert by_rule["book:ref"][0]["kwargs"]["value_set"] == {"$PARAMETER": "unknown__books__book"}
    assert by_rule["duplicate_key"][0]["type"] == "expect_compound_columns_to_be_unique"
    assert by_rule["duplicate_key"][0]["kwargs"]["column_list"] == ["trade_id", "version"]
    assert by_rule["settle_not_before_trade"][0]["kwargs"]["column_A"] == "settle_date"
    assert set(trades["meta"]["enforced_in_sql"]) == {
        "version1_is_new", "currency_is_instrument_currency", "trade_date_within_a_year"}
    # single-column keys: one uniqueness expectation, not two
    books = build_suite("books")
    assert [e["type"] for e in books["expectations"]].count("expect_column_values_to_be_unique") == 1
    positions = build_suite("positions")
    rng = [e for e in positions["expectations"] if e["meta"]["rule"] == "as_of_date:range"][0]
    assert rng["kwargs"]["min_value"] == rng["kwargs"]["max_value"] == {"$PARAMETER": "business_date"}


# --- validation ----------------------------------------------------------------------------

def test_clean_partitions_pass(staged: Settings):
    for feed in ("books", "instruments", "trades"):
        result = validate_feed(staged, BD, feed, run_id="run-1")
        assert result["success"] is True, result["failed"]
        assert result["expectations_failed"] == 0 and result["failed"] == []
        assert result["expectations_run"] == len(load_suite(feed)["expectations"])
        assert result["rows_validated"] == result["rows_in_partition"] > 0
        assert result["sampled"] is False
        assert result["engine"].startswith("great_expectations 1.") and result["engine"].endswith("pandas")
        stored = json.loads(staged.control_file("validation", feed, BD).read_text())
        assert stored == json.loads(json.dumps(result))
    assert result["references"]["clients.client_id"] == {
        "business_date": "2024-03-14", "values": 2, "values_unknown": 0}


def _trade(**changes):
    rows = trades_rows()
    rows[0].update(changes)
    return rows


BAD_TRADES = [
    ("null required", _trade(trader_id=None), "trader_id:required", "expect_column_values_to_not_be_null"),
    ("outside set", _trade(side="HOLD"), "side:values", "expect_column_values_to_be_in_set"),
    ("out of range", _trade(quantity=0.0), "quantity:range", "expect_column_values_to_be_between"),
    ("bad pattern", _trade(currency="usd"), "currency:pattern", "expect_column_values_to_match_regex"),
    ("date after business date",
     _trade(trade_date=BD_DATE + dt.timedelta(days=1), settle_date=BD_DATE + dt.timedelta(days=3)),
     "trade_date:range", "expect_column_values_to_be_between"),
    ("duplicate key", trades_rows() + [trades_rows()[1]], "duplicate_key",
     "expect_compound_columns_to_be_unique"),
    ("unknown reference", _trade(book="NOPE"), "book:ref", "expect_column_values_to_not_be_in_set"),
    ("unknown client (earlier-date reference)", _trade(client_id="C9"), "client_id:ref",
     "expect_column_values_to_not_be_in_set"),
    ("settle before trade", _trade(settle_date=BD_DATE - dt.timedelta(days=5)),
     "settle_not_before_trade", "expect_column_pair_values_a_to_be_greater_than_b"),
]


@pytest.mark.parametrize("rows, rule, etype", [b[1:] for b in BAD_TRADES], ids=[b[0] for b in BAD_TRADES])
def test_bad_values_fail_the_right_expectation(staged: Settings, rows, rule, etype):
    stage(staged, "trades", rows)
    result = validate_feed(staged, BD, "trades", run_id="run-bad")
    assert result["success"] is False
    assert rules_failed(result) == {rule}, result["failed"]
    (failed,) = result["failed"]
    assert failed["expectation_type"] == etype
    assert result["expectations_failed"] == 1
    if failed["unexpected_count"] is not None:
        assert failed["unexpected_count"] >= 1
        assert failed["partial_unexpected_list"]
        assert all(isinstance(v, str) for v in failed["partial_unexpected_list"])
    assert "exception" not in failed


def test_failure_details_are_readable(staged: Settings):
    stage(staged, "trades", _trade(trade_date=dt.date(2024, 3, 20), settle_date=dt.date(2024, 3, 22)))
    (failed,) = validate_feed(staged, BD, "trades", run_id="r")["failed"]
    assert failed["column"] == "trade_date"
    assert failed["partial_unexpected_list"] == ["2024-03-20"]
    assert failed["unexpected_count"] == 1


def test_bigint_null_is_required_not_type(staged: Settings):
    stage(staged, "trades", _trade(version=None))
    result = validate_feed(staged, BD, "trades", run_id="r")
    assert rules_failed(result) == {"version:required"}


def test_duplicate_single_key_and_wrong_columns(staged: Settings):
    stage(staged, "books", books_rows() + books_rows()[:1])
    result = validate_feed(staged, BD, "books", run_id="r")
    assert rules_failed(result) == {"duplicate_key"}
    assert result["failed"][0]["expectation_type"] == "expect_column_values_to_be_unique"

    stage(staged, "books", books_rows(), columns=["book", "desk_name", "legal_entity",
                                                  "business_line", "head_trader_id"])
    result = validate_feed(staged, BD, "books", run_id="r")
    assert rules_failed(result) == {"columns"}


def test_reference_feed_missing_fails_refs(settings: Settings):
    stage(settings, "trades", trades_rows())  # no books, clients, instruments staged at all
    result = validate_feed(settings, BD, "trades", run_id="r")
    assert rules_failed(result) == {"book:ref", "client_id:ref", "instrument_id:ref"}
    assert result["references"]["books.book"] == {
        "business_date": None, "values": 0, "values_unknown": len({r["book"] for r in trades_rows()})}


def test_an_unknown_reference_is_named_in_the_failure(staged: Settings):
    stage(staged, "trades", _trade(book="NOPE"))
    result = validate_feed(staged, BD, "trades", run_id="r")
    (failed,) = result["failed"]
    assert failed["rule"] == "book:ref" and failed["partial_unexpected_list"] == ["NOPE"]
    assert failed["unexpected_count"] == 1
    assert result["references"]["books.book"]["values_unknown"] == 1


def test_other_feeds_clean(staged: Settings):
    stage(staged, "clients", clients_rows())
    result = validate_feed(staged, BD, "clients", run_id="r")
    assert result["success"], result["failed"]
    stage(staged, "positions", [
        {"as_of_date": BD_DATE, "holder_type": "BOOK", "holder_id": "EQ1", "instrument_id": "I1",
         "quantity": -5.0, "custodian": "CUST1"},
        {"as_of_date": BD_DATE, "holder_type": "CLIENT", "holder_id": "C1", "instrument_id": "I2",
         "quantity": 7.0, "custodian": "CUST1"},
    ])
    assert validate_feed(staged, BD, "positions", run_id="r")["success"]
    stage(staged, "positions", [
        {"as_of_date": BD_DATE - dt.timedelta(days=1), "holder_type": "BOOK", "holder_id": "EQ1",
         "instrument_id": "I1", "quantity": 1.0, "custodian": "CUST1"}])
    assert rules_failed(validate_feed(staged, BD, "positions", run_id="r")) == {"as_of_date:range"}
    stage(staged, "settlements", [
        {"settlement_id": "S1", "trade_id": "TR1", "trade_version": 1, "quantity": 10.0,
         "settlement_amount": 100.0, "currency": "USD", "intended_settle_date": BD_DATE,
         "actual_settle_date": None, "status": "PENDING", "settled_quantity": 12.0,
         "fail_reason": None, "custodian": "CUST1"}])
    result = validate_feed(staged, BD, "settlements", run_id="r")
    assert rules_failed(result) == {"settled_within_quantity"}


def test_missing_partition_is_recorded_not_raised(settings: Settings):
    result = validate_feed(settings, BD, "trades", run_id="run-x")
    assert result["success"] is False
    assert "no staged partition" in result["reason"]
    assert result["rows_in_partition"] == 0 and result["expectations_run"] == 0
    stored = json.loads(settings.control_file("validation", "trades", BD).read_text())
    assert stored["success"] is False and stored["reason"] == result["reason"]


def test_large_partition_is_sampled_deterministically(staged: Settings):
    rows = []
    for i in range(50):
        r = dict(trades_rows()[1])
        r["trade_id"] = f"TR{i:03d}"
        rows.append(r)
    stage(staged, "trades", rows)
    small = replace(staged, gx_max_rows=20)
    first = validate_feed(small, BD, "trades", run_id="r")
    assert first["success"], first["failed"]
    assert first["sampled"] is True
    assert (first["rows_validated"], first["rows_in_partition"]) == (20, 50)
    from midoffice.validate import load_partition

    path = staged.staged_partition("trades", BD)
    types = {c.name: c.type for c in get_feed("trades").columns}
    a, _ = load_partition(path, types, 20, seed=7)
    b, _ = load_partition(path, types, 20, seed=7)
    assert a["trade_id"].tolist() == b["trade_id"].tolist()


def test_data_docs_get_built(staged: Settings):
    validate_feed(staged, BD, "books", run_id="run-docs")
    stage(staged, "trades", _trade(side="HOLD"))
    validate_feed(staged, BD, "trades", run_id="run-docs")
    index = build_data_docs(staged, BD)
    assert index == staged.reports / BD / "data_docs" / "index.html"
    html = index.read_text()
    assert "trades" in html and "books" in html
    site = index.parent
    assert list((site / "validations").rglob("*.html"))
    assert list((site / "expectations").rglob("*.html"))


def test_data_docs_render_the_suites_once_and_again_when_a_suite_changes(staged: Settings, tmp_path, monkeypatch):
    """The suites' pages are the same every date: the first date renders them and keeps them,
    later dates copy them and render only their own results; the site is the same as a full
    build. A changed suite is rendered again."""
    import great_expectations as gx

    import midoffice.validate as validate

    def pages(site: Path) -> dict[str, str]:
        return {str(p.relative_to(site)): p.read_text() for p in sorted((site / "expectations").glob("*.html"))}

    validate_feed(staged, BD, "trades", run_id="run-docs")
    first = build_data_docs(staged, BD).parent
    kept = validate.suite_pages_dir(staged, gx.__version__)
    assert sorted(p.name for p in kept.iterdir()) == sorted(p.rsplit("/", 1)[-1] for p in pages(first))

    rendered = []
    real_build = gx.data_context.AbstractDataContext.build_data_docs

    def build(context, *args, **kwargs):
        rendered.append(kwargs.get("resource_identifiers"))
        return real_build(context, *args, **kwargs)

    monkeypatch.setattr(gx.data_context.AbstractDataContext, "build_data_docs", build)
    later = "2024-03-18"
    stage(staged, "trades", trades_rows(), business_date=later)
    validate_feed(staged, later, "trades", run_id="run-docs")
    second = build_data_docs(staged, later).parent
    assert [len(r) for r in rendered] == [1]  # only the date's one result was rendered
    assert pages(second) == pages(first)
    index = (second / "index.html").read_text()
    assert all(f'expectations/{name}.html' in index for name in ("trades", "books", "clients"))

    suites = tmp_path / "suites"  # a changed suite: other pages, rendered again
    shutil.copytree(EXPECTATIONS_DIR, suites)
    suite = json.loads((suites / "books.json").read_text())
    suite["expectations"] = suite["expectations"][:1]
    (suites / "books.json").write_text(json.dumps(suite))
    monkeypatch.setattr(validate, "EXPECTATIONS_DIR", suites)
    assert validate.suite_pages_dir(staged, gx.__version__) != kept
    third = build_data_docs(staged, later).parent
    assert rendered[-1] is None  # a full build
    assert pages(third)["expectations/books.html"] != pages(first)["expectations/books.html"]
    assert validate.suite_pages_dir(staged, gx.__version__).is_dir()


def test_dates_outside_nanosecond_range(staged: Settings):
    # 9999-12-31 sentinels do not fit datetime64[ns]: the column stays datetime64[ms] and the
    # checks still work (GX then compares element-wise)
    stage(staged, "trades", _trade(settle_date=dt.date(9999, 12, 31)))
    assert validate_feed(staged, BD, "trades", run_id="r")["success"]
    stage(staged, "trades", _trade(trade_date=dt.date(9999, 12, 30), settle_date=dt.date(9999, 12, 31)))
    result = validate_feed(staged, BD, "trades", run_id="r")
    assert rules_failed(result) == {"trade_date:range"}
    assert result["failed"][0]["partial_unexpected_list"] == ["9999-12-30"]


def test_gx_results_are_the_same_with_the_configuration_built_once(staged: Settings, monkeypatch):
    """validate.configuration_built_once serves each expectation's configuration from a memo
    while GX validates: every result (passing, and each kind of failure) is identical without it,
    and GX's own property is back afterwards."""
    import contextlib

    from great_expectations.expectations.expectation import Expectation

    import midoffice.validate as validate

    gx_property = Expectation.__dict__["configuration"]
    reads = []
    original = validate.configuration_built_once

    @contextlib.contextmanager
    def counted():
        with original():
            memo = Expectation.__dict__["configuration"]
            assert memo is not gx_property  # the memo is in place while GX validates
            yield
        reads.append(1)

    def results(memo: bool) -> list[str]:
        monkeypatch.setattr(validate, "configuration_built_once", counted if memo else contextlib.nullcontext)
        out = []
        for _, rows, _, _ in [("clean", trades_rows(), None, None), *BAD_TRADES]:
            stage(staged, "trades", rows)
            r = validate_feed(staged, BD, "trades", run_id="same")
            out.append(json.dumps({k: v for k, v in r.items() if k not in ("seconds", "timings")}, sort_keys=True))
        return out

    assert results(memo=True) == results(memo=False)
    assert len(reads) == len(BAD_TRADES) + 1
    assert Expectation.__dict__["configuration"] is gx_property
