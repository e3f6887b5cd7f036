"""Great Expectations suites derived from the feed contracts (contracts/feeds.yaml).

One suite per feed, kept as GX 1.x JSON under ``expectations/<feed>.json`` (what
``ExpectationSuite.to_json_dict()`` gives, minus the random ids, so the files are deterministic
and reviewable). The suites are data generated from the contract: ``write_suites()`` regenerates
them, and a test fails when the committed files drift from ``build_suite()``.

The suites describe the *staged* Parquet partition of a feed as pandas sees it after
``midoffice.validate.load_partition``:

    VARCHAR   -> pandas ``str`` dtype            type_ "str"
    BIGINT    -> int64 (nullable Int64 if nulls) type_ "int64"
    DOUBLE    -> float64                         type_ "float64"
    DATE      -> datetime64[ns] at midnight      type_ "datetime64[ns]"
    TIMESTAMP -> datetime64[us], naive UTC       type_ "datetime64[us]"

(GX's pandas type check compares the numpy scalar type, so the datetime unit is documentation.)

Every expectation carries in ``meta.rule`` the quarantine rule name it mirrors
(``<column>:type|required|values|range|pattern|ref``, ``duplicate_key``, or a row rule's name;
``columns`` for the file-level column check). Bounds that say ``business_date`` become the suite
parameter ``{"$PARAMETER": "business_date"}``. A reference to another feed is checked as "no value of the
column is one the reference lacks": ``expect_column_values_to_not_be_in_set`` with
``{"$PARAMETER": "unknown__<feed>__<column>"}``, the column's values that are not in the
reference partition of the date. That is the same verdict, with the same unexpected values, as
"every value is in the reference", but the set GX carries is the (usually empty) unknown
values, not the thousands of known ones: GX 1.24 re-serialises an expectation's kwargs ~90 times
per validation, so a 16,000-value set cost seconds per feed. Both are filled at run time by
``midoffice.validate``. Row rules that GX cannot express (lookups, conditional logic) stay in
the project's SQL and are listed in the suite's ``meta.enforced_in_sql``.

No Great Expectations import here: this module is cheap to import (Airflow parses DAGs).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from midoffice.config import EXPECTATIONS_DIR
from midoffice.contracts import Column, Feed, get_feed, load_contracts

# Pinned GX version the JSON is written for (the file store writes it into the suite meta).
GX_VERSION = "1.24.1"

BUSINESS_DATE_PARAM = "business_date"

# What the staged Parquet types look like to GX's pandas type check.
PANDAS_TYPES = {
    "VARCHAR": "str",
    "BIGINT": "int64",
    "DOUBLE": "float64",
    "DATE": "datetime64[ns]",
    "TIMESTAMP": "datetime64[us]",
}

# Row rules GX can express natively, keyed by rule name. The SQL text must be exactly the
# contract's: if the rule changes in the contract, the GX version is dropped (and the rule is
# listed as enforced_in_sql) instead of silently checking something else.
_PAIR_RULES: dict[str, tuple[str, str, str]] = {
    # name: (sql, column_A, column_B)  meaning  A >= B
    "settle_not_before_trade": ("settle_date >= trade_date", "settle_date", "trade_date"),
    "settled_within_quantity": ("settled_quantity <= quantity", "quantity", "settled_quantity"),
}


def unknown_ref_param(feed: str, column: str) -> str:
    """Suite parameter holding, for a run, the values of a referencing column that ``feed.column``
    (the reference) lacks."""
    return f"unknown__{feed}__{column}"


def _param(name: str) -> dict:
    return {"$PARAMETER": name}


def _bound(value: float | str) -> float | dict:
    if isinstance(value, str):
        if value != BUSINESS_DATE_PARAM:
            raise ValueError(f"unsupported bound {value!r}")
        return _param(BUSINESS_DATE_PARAM)
    return float(value)


def _exp(etype: str, rule: str, **kwargs) -> dict:
    return {"type": etype, "kwargs": kwargs, "meta": {"rule": rule}, "severity": "critical"}


def _column_expectations(feed: Feed, col: Column) -> list[dict]:
    c = col.name
    out = [_exp("expect_column_values_to_be_of_type", f"{c}:type", column=c,
                type_=PANDAS_TYPES[col.type])]
    if col.required:
        out.append(_exp("expect_column_values_to_not_be_null", f"{c}:required", column=c))
    if col.values is not None:
        out.append(_exp("expect_column_values_to_be_in_set", f"{c}:values", column=c,
                        value_set=list(col.values)))
    lower = col.min if col.min is not None else col.min_exclusive
    upper = col.max if col.max is not None else col.max_exclusive
    if lower is not None or upper is not None:
        kwargs: dict = {"column": c}
        if lower is not None:
            kwargs["min_value"] = _bound(lower)
            if col.min is None:  # GX drops a False default when it serialises a suite
                kwargs["strict_min"] = True
        if upper is not None:
            kwargs["max_value"] = _bound(upper)
            if col.max is None:
                kwargs["strict_max"] = True
        out.append(_exp("expect_column_values_to_be_between", f"{c}:range", **kwargs))
    if col.pattern is not None:
        # The contract means a full match; GX's pandas regex check is a search.
        out.append(_exp("expect_column_values_to_match_regex", f"{c}:pattern", column=c,
                        regex=f"^(?:{col.pattern})$"))
    if col.ref is not None:
        out.append(_exp("expect_column_values_to_not_be_in_set", f"{c}:ref", column=c,
                        value_set=_param(unknown_ref_param(*col.ref))))
    if col.unique:
        out.append(_exp("expect_column_values_to_be_unique", "duplicate_key", column=c))
    return out


def build_suite(feed: Feed | str) -> dict:
    """The GX expectation suite of a feed, as a JSON-ready dict (deterministic, no ids)."""
    if isinstance(feed, str):
        feed = get_feed(feed)
    expectations = [
        _exp("expect_table_columns_to_match_ordered_list", "columns",
             column_list=feed.column_names),
    ]
    for col in feed.columns:
        expectations.extend(_column_expectations(feed, col))
    unique_cols = {c.name for c in feed.columns if c.unique}
    if len(feed.key) > 1:
        expectations.append(_exp("expect_compound_columns_to_be_unique", "duplicate_key",
                                 column_list=list(feed.key)))
    elif feed.key[0] not in unique_cols:
        expectations.append(_exp("expect_column_values_to_be_unique", "duplicate_key",
                                 column=feed.key[0]))

    in_gx, in_sql = [], []
    for rule in feed.rules:
        pair = _PAIR_RULES.get(rule.name)
        if pair and pair[0] == rule.sql.strip():
            _, col_a, col_b = pair
            expectations.append(_exp(
                "expect_column_pair_values_a_to_be_greater_than_b", rule.name,
                column_A=col_a, column_B=col_b, or_equal=True,
                ignore_row_if="either_value_is_missing"))
            in_gx.append(rule.name)
        else:
            in_sql.append(rule.name)

    parameters = []
    if any(_uses_business_date(e) for e in expectations):
        parameters.append(BUSINESS_DATE_PARAM)
    parameters += [unknown_ref_param(*c.ref) for c in feed.columns if c.ref]

    return {
        "name": feed.name,
        "expectations": expectations,
        "meta": {
            "great_expectations_version": GX_VERSION,
            "generated_from": f"contracts/feeds.yaml#{feed.name}",
            "generated_by": "midoffice.suites.build_suite",
            "key": list(feed.key),
            "row_rules_in_gx": in_gx,
            "enforced_in_sql": in_sql,
            "suite_parameters": parameters,
        },
        "notes": feed.description or None,
    }


def _uses_business_date(expectation: dict) -> bool:
    return any(v == _param(BUSINESS_DATE_PARAM) for v in expectation["kwargs"].values())


def suite_json(suite: dict) -> str:
    return json.dumps(suite, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_suites(directory: Path = EXPECTATIONS_DIR) -> list[Path]:
    """Write ``<directory>/<feed>.json`` for every feed of the contract; return the paths."""
    directory = Path(directory)
    paths = []
    for name, feed in load_contracts().items():
        path = directory / f"{name}.json"
        text = suite_json(build_suite(feed))
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            _write_atomic(path, text)
        paths.append(path)
    return paths


def load_suite(feed_name: str, directory: Path = EXPECTATIONS_DIR) -> dict:
    """The committed suite of a feed (``expectations/<feed>.json``) as a dict."""
    path = Path(directory) / f"{feed_name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no expectation suite for feed {feed_name!r} at {path}; "
                                "run `midoffice suites --write`")
    return json.loads(path.read_text(encoding="utf-8"))


if __name__ == "__main__":  # python -m midoffice.suites
    for p in write_suites():
        print(p)
