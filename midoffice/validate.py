"""Validate a feed's staged partition with Great Expectations (the gate after ingest).

GX 1.x has no DuckDB data source and its SQL data source fails on DuckDB (see
docs/ARCHITECTURE "Great Expectations, as it is today"), so each feed's day partition is read
from its staged Parquet file into pandas (bounded: above ``settings.gx_max_rows`` rows a
deterministic seeded sample is validated) and checked with GX's own pandas engine against the
committed suite ``expectations/<feed>.json`` (``BASIC`` results). GX does not split good and
bad rows: the quarantine split is ingest's SQL; here GX is the gate and the documented rules.

Outputs per feed and date:
- ``settings.control_file("validation", feed, date)``: the small result dict (also returned,
  it goes through Airflow XCom);
- ``settings.home / "gx" / "validations" / date / <feed>.json``: GX's own validation result
  (for Data Docs, ``build_data_docs``).

Great Expectations is imported lazily inside functions: Airflow imports this module when it
parses DAGs, and importing GX takes seconds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import logging
import os
import re
import shutil
import time
import threading
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from midoffice.control import write_json_atomic
from midoffice.config import EXPECTATIONS_DIR, Settings
from midoffice.contracts import get_feed
from midoffice.suites import BUSINESS_DATE_PARAM, load_suite, unknown_ref_param

log = logging.getLogger(__name__)

PARTIAL_LIST_MAX = 5
REF_VALUES_SHOWN = 20  # ref value sets are cut to this in the GX results kept for Data Docs


# --- small helpers -----------------------------------------------------------------------

def _quiet_gx() -> None:
    """Keep GX's analytics off and its logging down (call before importing GX)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    for name in ("great_expectations", "posthog"):
        logging.getLogger(name).setLevel(logging.WARNING)


def gx_results_dir(settings: Settings, business_date: str) -> Path:
    return settings.home / "gx" / "validations" / business_date


def _check_date(business_date: str) -> str:
    dt.date.fromisoformat(business_date)  # raises ValueError on anything else
    return business_date


# --- reading the staged partition --------------------------------------------------------

def load_partition(path: Path, columns_types: dict[str, str], max_rows: int, seed: int):
    """Read a staged Parquet partition into pandas, as the suites expect it.

    Returns ``(df, rows_in_partition)``. Types: strings -> ``str``; BIGINT -> int64 (nullable
    ``Int64`` when it has nulls, so nulls stay nulls and the type check still says int64);
    DOUBLE -> float64; DATE -> datetime64[ns] at midnight (GX compares those vectorised against
    a ``datetime`` bound; a date outside the ns range falls back to datetime64[ms]);
    TIMESTAMP -> datetime64[us] (naive UTC). Above ``max_rows`` rows, a seeded sample of
    ``max_rows`` rows (in file order) is returned.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    rows = parquet.metadata.num_rows
    if rows > max_rows:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(rows, size=max_rows, replace=False))
        # the sampled rows, one row group at a time: the whole partition is never in memory (at
        # 10M trades it was 2.5 GB, beside an ingest of the next feed), and the rows are the same
        table = _rows_of(parquet, idx)
    else:
        table = pq.read_table(path)

    df = table.to_pandas(date_as_object=False)
    for field in table.schema:
        # an integer column with nulls would become float64: keep it integer (nullable Int64)
        if pa.types.is_integer(field.type) and table.column(field.name).null_count:
            df[field.name] = table.column(field.name).to_pandas(
                types_mapper=lambda t: pd.Int64Dtype() if pa.types.is_integer(t) else None)
    for name in df.columns:
        if columns_types.get(name) == "DATE" and str(df[name].dtype) != "datetime64[ns]":
            try:
                df[name] = df[name].astype("datetime64[ns]")
            except (pd.errors.OutOfBoundsDatetime, OverflowError, ValueError):
                pass  # stays datetime64[ms]: GX then compares element-wise (slower, correct)
    return df, rows


def _rows_of(parquet, idx):
    """The rows at the (sorted) positions `idx` of a Parquet file, in file order."""
    import numpy as np
    import pyarrow as pa

    pieces, start = [], 0
    for group in range(parquet.num_row_groups):
        end = start + parquet.metadata.row_group(group).num_rows
        lo, hi = np.searchsorted(idx, [start, end])
        if hi > lo:
            pieces.append(parquet.read_row_group(group).take(pa.array(idx[lo:hi] - start)))
        start = end
    return pa.concat_tables(pieces) if pieces else parquet.schema_arrow.empty_table()


def reference_values(settings: Settings, business_date: str, feed: str, column: str) -> tuple[list, str | None]:
    """Distinct non-null values of ``feed.column`` for the date (or latest earlier date)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    found = settings.latest_staged_partition(feed, business_date)
    if found is None:
        return [], None
    date, path = found
    col = pq.read_table(path, columns=[column]).column(column)
    values = pc.unique(col.drop_null()).to_pylist()
    return sorted(values), date


# --- turning GX results into our small dict ----------------------------------------------

def _fmt(value: Any) -> str:
    import pandas as pd

    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    if isinstance(value, dict):  # compound-column results: {"col": value, ...}
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    try:
        if pd.isna(value):
            return "null"
    except (TypeError, ValueError):
        pass
    if isinstance(value, (pd.Timestamp, dt.datetime)) or type(value).__name__ == "datetime64":
        ts = pd.Timestamp(value)
        if ts == ts.normalize():
            return ts.date().isoformat()
        return ts.isoformat()
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    return str(value)


# The keys of a GX result that carry values of the data (what a sender wrote).
UNEXPECTED_VALUE_KEYS = ("partial_unexpected_list", "partial_unexpected_counts", "partial_unexpected_index_list",
                         "unexpected_list", "unexpected_index_list", "unexpected_index_query")
WITHHELD = "values withheld: personal data"


def _failed_entry(res, personal: frozenset[str] = frozenset()) -> dict:
    cfg = res.expectation_config
    kwargs = cfg.kwargs or {}
    column = kwargs.get("column")
    if column is None:
        cols = kwargs.get("column_list") or [kwargs.get("column_A"), kwargs.get("column_B")]
        column = ",".join(c for c in cols if c) or None
    result = res.result or {}
    entry = {
        "expectation_type": cfg.type,
        "column": column,
        "rule": (cfg.meta or {}).get("rule"),
        "unexpected_count": result.get("unexpected_count"),
        "partial_unexpected_list": [] if column in personal else [
            _fmt(v) for v in (result.get("partial_unexpected_list") or [])[:PARTIAL_LIST_MAX]
        ],
    }
    if column in personal:
        entry["note"] = WITHHELD
    if "observed_value" in result:
        entry["observed_value"] = _fmt(result["observed_value"])
    info = res.exception_info or {}
    messages = []
    if info.get("raised_exception"):
        messages.append(info.get("exception_message"))
    else:  # GX nests exception info per metric
        for sub in info.values():
            if isinstance(sub, dict) and sub.get("raised_exception"):
                messages.append(sub.get("exception_message"))
    if messages:
        entry["exception"] = "; ".join(str(m) for m in messages)[:500]
    return entry


def _gx_result_for_docs(gx_result, suite: dict, personal: frozenset[str] = frozenset()) -> dict:
    """GX's result as JSON, made fit for the Data Docs: reference value sets cut short (they can
    be huge), no value of a personal-data column (only counts), and every text HTML-escaped.

    GX's Data Docs renderer writes values into the page as they are: a sender's
    `<script>` in a rejected value would run in the pack's validation pages.
    """
    payload = gx_result.to_json_dict()
    for res in payload.get("results", []):
        kwargs = (res.get("expectation_config") or {}).get("kwargs") or {}
        vs = kwargs.get("value_set")
        rule = ((res.get("expectation_config") or {}).get("meta") or {}).get("rule", "")
        if isinstance(vs, list) and rule.endswith(":ref") and len(vs) > REF_VALUES_SHOWN:
            kwargs["value_set"] = vs[:REF_VALUES_SHOWN] + [f"... {len(vs) - REF_VALUES_SHOWN} more"]
        if kwargs.get("column") in personal:
            result = res.get("result") or {}
            for key in UNEXPECTED_VALUE_KEYS:
                if key in result:
                    result[key] = []
            result["details"] = {"note": WITHHELD}
    return _escaped(payload)


def _escaped(value):
    """Every string in a JSON-like structure HTML-escaped (keys are GX's own, left as they are)."""
    if isinstance(value, str):
        return html.escape(value, quote=True)
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    return value


# One validation at a time replaces GX's property (configuration_built_once).
_GX_PATCH_LOCK = threading.Lock()


# --- the task ------------------------------------------------------------------------------

def validate_feed(settings: Settings, business_date: str, feed: str, run_id: str) -> dict:
    """Validate the staged partition of ``feed`` for ``business_date``; record and return.

    Never raises for a missing or unreadable partition (ingest failed at file level): the result
    then has ``success: False`` and a ``reason``.
    """
    started = time.perf_counter()
    _check_date(business_date)
    contract = get_feed(feed)
    out_path = settings.control_file("validation", feed, business_date)
    result: dict[str, Any] = {
        "feed": feed,
        "business_date": business_date,
        "run_id": run_id,
        "success": False,
        "expectations_run": 0,
        "expectations_failed": 0,
        "failed": [],
        "rows_validated": 0,
        "rows_in_partition": 0,
        "sampled": False,
        "engine": None,
        "seconds": None,
    }

    def finish(**extra) -> dict:
        result.update(extra)
        result["seconds"] = round(time.perf_counter() - started, 3)
        write_json_atomic(out_path, result)
        return result

    partition = settings.staged_partition(feed, business_date)
    if not partition.exists():
        reason = f"no staged partition for {feed} on {business_date} ({partition})"
        ingest = settings.control_file("ingest", feed, business_date)
        if ingest.exists():
            reason += f"; see ingest result {ingest}"
            try:
                info = json.loads(ingest.read_text())
                for key in ("reason", "error", "message"):
                    if isinstance(info, dict) and info.get(key):
                        reason += f": {info[key]}"
                        break
            except (OSError, ValueError):
                pass
        else:
            reason += "; ingest failed at file level or did not run"
        log.warning("validate %s %s: %s", feed, business_date, reason)
        return finish(reason=reason)

    seed = zlib.crc32(f"{feed}:{business_date}".encode())
    try:
        df, rows = load_partition(partition, {c.name: c.type for c in contract.columns},
                                  settings.gx_max_rows, seed)
    except Exception as exc:  # unreadable file: a file-level failure, recorded, not raised
        return finish(reason=f"cannot read staged partition {partition}: {exc!r}")
    result["rows_in_partition"] = rows
    result["rows_validated"] = len(df)
    result["sampled"] = len(df) < rows
    if result["sampled"]:
        result["sample"] = {"rows": len(df), "seed": seed, "method": "uniform without replacement"}

    suite_dict = load_suite(feed)
    params: dict[str, Any] = {BUSINESS_DATE_PARAM: f"{business_date}T00:00:00"}
    ref_sources = {}
    for col in contract.columns:
        if col.ref:
            values, from_date = reference_values(settings, business_date, *col.ref)
            # The suite checks that no value is one the reference lacks (see midoffice.suites:
            # a set of the known values is costly in GX, the unknown ones are few).
            present = set(df[col.name].dropna().unique()) if col.name in df.columns else set()
            unknown = sorted(present.difference(values))
            params[unknown_ref_param(*col.ref)] = unknown
            ref_sources[f"{col.ref[0]}.{col.ref[1]}"] = {
                "business_date": from_date, "values": len(values), "values_unknown": len(unknown)}
    if ref_sources:
        result["references"] = ref_sources

    t_read = time.perf_counter() - started
    gx_result, version, timings = _run_gx(feed, suite_dict, df, params, run_id)
    result["engine"] = f"great_expectations {version} pandas"
    # report failures in suite order (GX evaluates and returns them in its own order)
    order = {(e["type"], e["meta"].get("rule")): i for i, e in enumerate(suite_dict["expectations"])}
    personal = frozenset(c.name for c in contract.columns if c.pii)
    failed = sorted(
        (_failed_entry(r, personal) for r in gx_result.results if not r.success),
        key=lambda f: order.get((f["expectation_type"], f["rule"]), len(order)))
    result.update(
        success=bool(gx_result.success),
        expectations_run=len(gx_result.results),
        expectations_failed=len(failed),
        failed=failed,
        timings={"read": round(t_read, 3), **{k: round(v, 3) for k, v in timings.items()}},
    )
    try:
        write_json_atomic(gx_results_dir(settings, business_date) / f"{feed}.json",
                           _gx_result_for_docs(gx_result, suite_dict, personal))
    except Exception as exc:  # Data Docs input only: never fail the gate on it
        log.warning("could not keep GX result for Data Docs: %r", exc)
    return finish()


@contextmanager
def configuration_built_once():
    """While this thread runs a GX validation, each expectation's `configuration` is built once,
    not at every read.

    GX 1.x's `Expectation.configuration` is a property that builds a new ExpectationConfiguration
    from the model's fields (pydantic's `.dict()`) each time it is read, and a validation reads it
    about 70 times an expectation (`_get_success_kwargs` reads it once a key). The validator makes
    each expectation from a configuration (`to_domain_obj()`), asks it for its metrics or its
    result and drops it; nothing assigns its fields meanwhile, so the first configuration built
    stands for the object's life. Only the validating thread is served from the memo, and only
    inside the `with`: another thread (Data Docs on the report's) reads GX's own property.
    tests/test_validate.py checks that the results are identical with and without it. A GX
    version without such a property is left as it is.
    """
    from great_expectations.expectations.expectation import Expectation

    gx_property = Expectation.__dict__.get("configuration")
    if not isinstance(gx_property, property) or gx_property.fget is None:
        yield
        return
    validating = threading.get_ident()
    built: dict[int, tuple[Any, Any]] = {}  # id -> (the expectation, held so its id is not reused; its configuration)

    def configuration(self):
        if threading.get_ident() != validating:
            return gx_property.fget(self)
        held = built.get(id(self))
        if held is None or held[0] is not self:
            held = built[id(self)] = (self, gx_property.fget(self))
        return held[1]

    with _GX_PATCH_LOCK:
        Expectation.configuration = property(configuration, doc=gx_property.__doc__)
        try:
            yield
        finally:
            Expectation.configuration = gx_property


def _run_gx(feed: str, suite_dict: dict, df, params: dict, run_id: str):
    """Run a suite on a DataFrame with an ephemeral GX context: (result, version, timings).

    `Batch.validate`, not a `ValidationDefinition`: the definition's run also serialises the
    suite, the definition and the result into the context's stores, which an ephemeral context
    throws away (a fifth of a small feed's validation time). The result is the same object; its
    run id is set here, as the definition's run would have.
    """
    _quiet_gx()
    t_import = time.perf_counter()
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    t0 = time.perf_counter()  # importing GX the first time in a process takes seconds
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch = (context.data_sources.add_pandas(f"staged_{feed}").add_dataframe_asset(feed)
             .add_batch_definition_whole_dataframe("partition").get_batch(batch_parameters={"dataframe": df}))
    suite = gx.ExpectationSuite(**suite_dict)
    t1 = time.perf_counter()
    # BASIC: the counts, the observed value and a few unexpected values, all the gate and the
    # Data Docs show; SUMMARY's value-count tables made validation a third slower.
    with configuration_built_once():
        gx_result = batch.validate(suite, result_format="BASIC", expectation_parameters=params)
    gx_result.meta["run_id"] = RunIdentifier(run_name=run_id, run_time=dt.datetime.now(dt.timezone.utc))
    t2 = time.perf_counter()
    log.info("GX %s: context %.3fs, validation %.3fs", feed, t1 - t0, t2 - t1)
    return gx_result, gx.__version__, {
        "gx_import": t0 - t_import, "gx_context": t1 - t0, "gx_validate": t2 - t1}


# --- Data Docs -----------------------------------------------------------------------------

def build_data_docs(settings: Settings, business_date: str) -> Path:
    """Render GX Data Docs for a date: every suite, and the date's kept validation results.

    The site goes to ``settings.reports / business_date / "data_docs"``; returns its index.html.
    """
    _check_date(business_date)
    _quiet_gx()
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResultSchema,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    site_dir = settings.reports / business_date / "data_docs"
    site_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.add_data_docs_site(
        site_name="midoffice",
        site_config={
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(site_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    for path in sorted(Path(EXPECTATIONS_DIR).glob("*.json")):
        context.suites.add(gx.ExpectationSuite(**json.loads(path.read_text())))

    suite_pages = suite_pages_dir(settings, gx.__version__)
    if suite_pages.is_dir():  # the suites' pages as the first date with these suites rendered them
        shutil.copytree(suite_pages, site_dir / "expectations", dirs_exist_ok=True)

    schema = ExpectationSuiteValidationResultSchema()
    store = context.validation_results_store
    results = []
    for path in sorted(gx_results_dir(settings, business_date).glob("*.json")):
        payload = json.loads(path.read_text())
        meta = payload.get("meta") or {}
        run = meta.get("run_id") or {}
        run_time = run.get("run_time")
        run_identifier = RunIdentifier(
            run_name=run.get("run_name") or business_date,
            run_time=dt.datetime.fromisoformat(run_time) if run_time else None,
        )
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=path.stem),
            run_id=run_identifier,
            batch_identifier=f"{path.stem}-{business_date}",
        )
        store.set(key, schema.load(payload))
        results.append(key)

    # With the suites' pages in place, GX renders only the date's results (and the index, which
    # lists every suite page it finds): the suites are the same every date, their pages too.
    context.build_data_docs(site_names=["midoffice"],
                            resource_identifiers=results if suite_pages.is_dir() and results else None)
    index = site_dir / "index.html"
    if not index.exists():
        raise RuntimeError(f"GX did not build Data Docs at {index}")
    make_offline(site_dir)
    if not suite_pages.is_dir():
        _keep_suite_pages(site_dir / "expectations", suite_pages)
    return index


def suite_pages_dir(settings: Settings, gx_version: str) -> Path:
    """Where the Data Docs pages of the current suites are kept once rendered: named by what
    they are rendered from (every suite's JSON, the GX version, the offline assets), so a changed
    suite or an upgrade renders them again."""
    h = hashlib.sha256(f"{gx_version}\n{sorted(OFFLINE_ASSETS.items())}\n".encode())
    for path in sorted(Path(EXPECTATIONS_DIR).glob("*.json")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return settings.home / "gx" / "suite_pages" / h.hexdigest()[:16]


def _keep_suite_pages(rendered: Path, kept: Path) -> None:
    """A copy of the suites' pages under a temporary name, renamed into place: a report that
    reads them sees all of them or none (two reports at once: the first rename wins)."""
    kept.parent.mkdir(parents=True, exist_ok=True)
    tmp = kept.with_name(f".tmp-{kept.name}-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(rendered, tmp)
    try:
        os.rename(tmp, kept)
    except OSError:  # another report kept them first
        shutil.rmtree(tmp, ignore_errors=True)


# --- Data Docs without a network ---------------------------------------------------------------

ASSETS_DIR = Path(__file__).resolve().parent / "validation_assets"
# What GX's pages load from CDNs, and our copy of it (midoffice/validation_assets/README.md).
OFFLINE_ASSETS = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "js/bootstrap.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "js/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "js/popper.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "css/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "js/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "css/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "js/bootstrap-table-filter-control.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "css/fontawesome.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "js/bootstrap-datepicker.min.js",
}
_EXTERNAL_TAG = re.compile(r'<(script|link|img)\b[^>]*?(?:src|href)="(https?://[^"]+)"[^>]*>(?:\s*</script>)?', re.I)
_EXTERNAL_CSS_URL = re.compile(r"url\(\s*'?(https?://[^')]+)'?\s*\)")


def make_offline(site_dir: Path) -> None:
    """Point every page of a Data Docs site at local copies of its scripts and styles, and drop
    what it loads from elsewhere and does not need: the pages then work with no network."""
    shutil.copytree(ASSETS_DIR, site_dir / "static" / "offline", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("README.md"))
    for css in site_dir.rglob("*.css"):  # GX's own stylesheet also loads a remote logo
        css.write_text(_EXTERNAL_CSS_URL.sub("none", css.read_text(encoding="utf-8")), encoding="utf-8")
    for page in site_dir.rglob("*.html"):
        to_assets = os.path.relpath(site_dir / "static" / "offline", page.parent)
        page.write_text(offline_html(page.read_text(encoding="utf-8"), to_assets), encoding="utf-8")


def offline_html(text: str, to_assets: str) -> str:
    def local(match: re.Match) -> str:
        tag, url = match.group(1).lower(), match.group(2)
        if url not in OFFLINE_ASSETS:
            return ""  # not used by these pages (Vega charts, a dark theme, a remote logo)
        path = f"{to_assets}/{OFFLINE_ASSETS[url]}"
        if tag == "script":
            return f'<script src="{path}"></script>'
        return f'<link rel="stylesheet" href="{path}">'

    return _EXTERNAL_CSS_URL.sub("none", _EXTERNAL_TAG.sub(local, text))
