"""The data dictionary: every mart, column and feed, with lineage, from the project's own metadata.

Sources: transforms/<mart>.yml (description, grain, partition, soft reads, example, columns and
their tests), what each transforms/<mart>.sql reads (midoffice.models derives the lineage from the
SQL) and contracts/feeds.yaml (the feed contracts). Intermediate models (`published: false`) are
listed apart: they are built, not published. Two outputs:

- docs/DATA_DICTIONARY.md, written by `python -m midoffice.dictionary` (or `midoffice
  dictionary`); `--check` exits 1 when the committed file is stale (for CI).
- reports/<date>/dictionary.html, written with the daily pack: the same content plus what the
  published warehouse holds for that date (rows per mart, the actual column types).

Column types in the Markdown come from running every model's SQL on empty core tables in an
in-memory DuckDB (no warehouse needed, so the file is the same on every machine); a model whose
query cannot be typed that way shows its columns without a type rather than failing.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from midoffice.config import REPO_ROOT
from midoffice.contracts import Column, Feed, load_contracts
from midoffice.models import Model, column_tests, load_models, published_models, upstream_feeds

DICTIONARY_MD = REPO_ROOT / "docs" / "DATA_DICTIONARY.md"

# Tables that publish.py writes beside the marts. They are not models (no transforms/*.yml), so
# their documentation lives here; tests/test_dictionary.py fails when a published column has none.
CONTROL_TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "build_log": (
        "Which marts the build rebuilt or kept for each business date, and why (a mart whose feeds "
        "did not all pass their gate keeps its previously published rows for that date).",
        {
            "business_date": "Business date built.",
            "mart": "Model name (transforms/<name>.yml): a mart, or an intermediate model (built, not published).",
            "status": "BUILT (rebuilt for the date) or SKIPPED (kept its previous rows).",
            "reason": "Why a mart was skipped: the feeds or marts it depends on that did not pass.",
            "rows": "Rows the build wrote for the date (null when skipped).",
            "run_id": "Pipeline run that built the date.",
        },
    ),
    "publications": (
        "One row per published version (DOMAIN §10.1): the product's version number is the DuckLake snapshot "
        "its publication committed; every earlier version stays readable (midoffice query --as-of-version N).",
        {
            "version": "The version (DuckLake snapshot id) this publication committed.",
            "published_at": "When the publication started (UTC).",
            "run_id": "Pipeline run that published it.",
            "business_date": "Business date of that run.",
            "dates": "Business dates whose rows this version replaced.",
            "restated_dates": "Of those, the dates an earlier version had already published (restatements).",
            "reason": "Why the restated dates were run again, and who said so (midoffice run --reason).",
            "rewritten_marts": "Marts written whole from the build because a data file of theirs was changed "
                               "behind the catalog's back (not carried forward).",
        },
    ),
    "restatements": (
        "Grain version × as_of_date × mart (DOMAIN §10.2): for every business date a version published again, "
        "each mart's rows before (as the previous version published them) and after, the rows added, removed and "
        "changed (matched on the mart's grain, lineage aside), and the date's key figures before and after.",
        {
            "version": "The version that restated the date.",
            "as_of_date": "The restated business date.",
            "mart": "The mart compared.",
            "previous_version": "The version that had published the date before.",
            "rows_before": "The mart's rows of the date in the previous version (spans holding on it, for a spans mart).",
            "rows_after": "Its rows in the new version.",
            "rows_added": "Keys only in the new version.",
            "rows_removed": "Keys only in the previous version.",
            "rows_changed": "Keys in both whose other columns differ (numbers by more than a relative 1e-9).",
            "firm_exposure_before": "kpi_daily.firm_gross_exposure_usd of the date in the previous version.",
            "firm_exposure_after": "The same in the new version.",
            "firm_var_before": "kpi_daily.firm_var_99_usd before.",
            "firm_var_after": "kpi_daily.firm_var_99_usd after.",
            "open_breaks_before": "kpi_daily.open_breaks before.",
            "open_breaks_after": "kpi_daily.open_breaks after.",
            "pnl_before": "The firm's P&L of the date before, when kpi_daily has one (null otherwise).",
            "pnl_after": "The same after.",
            "reason": "Why the date was run again, and who said so.",
        },
    ),
}


@dataclass(frozen=True)
class MartDoc:
    model: Model
    types: dict[str, str]            # column -> SQL type ('' when unknown)
    upstream_feeds: tuple[str, ...]  # every feed the mart depends on, directly or through marts
    downstream: tuple[str, ...]      # marts that read this one, directly or indirectly


# --- lineage ----------------------------------------------------------------------------------
# upstream_feeds (midoffice.models): the feeds whose failed gate keeps a mart's previous rows

def downstream_marts(models: list[Model]) -> dict[str, tuple[str, ...]]:
    """model -> the marts that read it, directly or through other models (soft reads too)."""
    readers: dict[str, set[str]] = {m.name: set() for m in models}
    for m in models:
        for d in m.models_read:
            readers.setdefault(d, set()).add(m.name)

    def closure(name: str, seen: set[str]) -> set[str]:
        for r in readers.get(name, ()):
            if r not in seen:
                seen.add(r)
                closure(r, seen)
        return seen

    marts = [m.name for m in models if m.published]
    return {m.name: tuple(n for n in marts if n in closure(m.name, set())) for m in models}


def marts_fed_by(models: list[Model]) -> dict[str, tuple[str, ...]]:
    """feed -> marts that read it (directly or through other models, soft reads too)."""
    up = upstream_feeds(load_models(), hard_only=False)
    return {f: tuple(m.name for m in models if m.published and f in up.get(m.name, ())) for f in load_contracts()}


# --- column types ------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def inferred_types() -> dict[str, dict[str, str]]:
    """Column types of every mart, by running its SQL on empty core tables (in memory)."""
    from midoffice.duck import connect_scratch
    from midoffice.pseudonym import register
    from midoffice.warehouse import create_schema

    con = connect_scratch()
    out: dict[str, dict[str, str]] = {}
    try:
        register(con, b"type-inference-only")
        create_schema(con)
        con.execute("SET VARIABLE as_of_date = DATE '2000-01-03'")
        con.execute("SET VARIABLE reporting_currency = 'USD'")
        con.execute("SET VARIABLE var_scenarios = 250")
        con.execute("SET VARIABLE quarantine_threshold = 0.01")
        for m in load_models():
            if m.spans:  # its view (warehouse/marts.sql, made by create_schema) gives the rows
                out[m.name] = {r[0]: r[1] for r in con.execute(f'DESCRIBE main."{m.name}"').fetchall()}
                for table in m.stored_tables:
                    out[table] = {r[0]: r[1] for r in con.execute(f'DESCRIBE main."{table}"').fetchall()}
                continue
            lineage = ("CAST(NULL AS TIMESTAMP) AS loaded_at" if m.own_run_id
                       else "CAST(NULL AS VARCHAR) AS run_id, CAST(NULL AS TIMESTAMP) AS loaded_at")
            select = f"SELECT *, {lineage} FROM ({m.sql})"
            try:
                out[m.name] = {r[0]: r[1] for r in con.execute(f"DESCRIBE {select}").fetchall()}
                # the marts read by later models must exist for those to bind
                con.execute(f'CREATE TABLE IF NOT EXISTS main."{m.name}" AS {select} LIMIT 0')
            except Exception:  # untypable offline (e.g. reads a table only a real build has)
                out[m.name] = {}
    finally:
        con.close()
    return out


def model_docs(types: dict[str, dict[str, str]] | None = None) -> list[MartDoc]:
    """Every model, marts and intermediate ones, by name (so a domain's marts sit together)."""
    models = load_models()
    types = inferred_types() if types is None else types
    up, down = upstream_feeds(models), downstream_marts(models)
    return [MartDoc(m, {c: types.get(m.name, {}).get(c, "") for c in m.columns}, up[m.name], down[m.name])
            for m in sorted(models, key=lambda m: m.name)]


def mart_docs(types: dict[str, dict[str, str]] | None = None) -> list[MartDoc]:
    """The published models (marts)."""
    return [d for d in model_docs(types) if d.model.published]


def column_mismatches(types: dict[str, dict[str, str]] | None = None) -> list[str]:
    """Where a model's yml documents other columns (or another order) than its SQL gives, as
    DuckDB binds the query on empty tables: what the build would refuse (warehouse._build_model)."""
    types = inferred_types() if types is None else types
    out = []
    for m in load_models():
        given = list(types.get(m.name, {}))
        if given != list(m.columns):
            out.append(f"transforms/{m.name}.yml documents {list(m.columns)}, "
                       f"transforms/{m.name}.sql gives {given or 'nothing (it does not bind)'}")
    return out


def published_columns(con) -> dict[str, list[tuple[str, str]]]:
    """table -> [(column, type)] of the published warehouse (main schema)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for table, col, typ in con.execute(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'main' ORDER BY table_name, column_index"
    ).fetchall():
        out.setdefault(table, []).append((col, typ))
    return out


def storage_tables(m: Model) -> dict[str, tuple[str, dict[str, str]]]:
    """The tables behind a mart stored as spans (its name is a view over them), documented from
    the mart's own columns."""
    if not m.spans:
        return {}
    state = {c: m.columns[c] for c in m.state_columns}
    return {
        m.spans_table: (
            f"How {m.name} is stored: one row per trade and run of consecutive dates over which its "
            f"state (every column of {m.name} but {', '.join(m.per_date_columns)}) stays the same. "
            f"Query {m.name} (a view over this table) for a row per trade and date.",
            state | {
                "valid_from": "First date of the run (a date of " + m.dates_table + ").",
                "valid_to": "Last date of the run; null while the state still holds on the latest date.",
                "run_id": "Pipeline run that recorded the state.",
                "loaded_at": "When the state was recorded (UTC, lineage).",
            },
        ),
        m.dates_table: (f"The dates {m.name} was built for.",
                        {"as_of_date": f"A business date {m.name} has rows for."}),
    }


def side_tables() -> dict[str, tuple[str, dict[str, str]]]:
    """Every published table that is not a mart: the control tables and the marts' storage."""
    return CONTROL_TABLES | {t: v for m in published_models() for t, v in storage_tables(m).items()}


def described_columns() -> dict[str, dict[str, str]]:
    """table -> {column: description} for every table the dictionary documents."""
    out = {m.name: dict(m.columns) for m in published_models()}
    out.update({t: dict(cols) for t, (_, cols) in side_tables().items()})
    return out


def undocumented(published: dict[str, list[tuple[str, str]]]) -> list[str]:
    """'table.column' for every published column without a description."""
    described = described_columns()
    return [f"{t}.{c}" for t, cols in published.items() for c, _ in cols
            if not (described.get(t, {}).get(c) or "").strip()]


# --- feed rules in words -----------------------------------------------------------------------

def column_rules(feed: Feed, c: Column) -> str:
    rules = []
    if c.required:
        rules.append("not null")
    if c.unique or feed.key == (c.name,):
        rules.append("unique")
    if c.values:
        rules.append("one of " + ", ".join(c.values))
    for op, bound in ((">=", c.min), (">", c.min_exclusive), ("<=", c.max), ("<", c.max_exclusive)):
        if bound is not None:
            rules.append(f"{op} {bound}")
    if c.pattern:
        rules.append(f"matches `{c.pattern}`")
    if c.ref:
        rules.append(f"in {c.ref[0]}.{c.ref[1]}")
    if c.pii:
        rules.append("PII (never published)")
    return "; ".join(rules)


# --- Markdown ----------------------------------------------------------------------------------

def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _para(text: str) -> str:
    return "\n\n".join(" ".join(p.split()) for p in str(text).split("\n") if p.strip())


def _reads(names: tuple[str, ...], soft: tuple[str, ...], link: bool) -> str:
    shown = [(f"[{x}](#{x})" if link else x) + (" (soft)" if x in soft else "") for x in sorted(names)]
    return ", ".join(shown) or "—"


def _column_rows(d: MartDoc) -> list[str]:
    m = d.model
    tests: dict[str, list[str]] = {}
    # a spans model's per-date columns are its view's: the audit reads the stored spans
    audited = [(c, typ) for c, typ in d.types.items() if typ and not (m.spans and c in m.per_date_columns)]
    for t in column_tests(m, audited):
        tests.setdefault(t.column, []).append(str(t))
    out = ["| column | type | tests | description |", "|---|---|---|---|"]
    for col, desc in m.columns.items():
        key = " (grain)" if col in m.grain else ""
        checks = _cell("; ".join(tests.get(col, [])))
        out.append(f"| `{col}`{key} | {d.types.get(col, '')} | {checks} | {_cell(desc)} |")
    return out


def _union_rows(m: Model) -> list[str]:
    """The declarations a union_of model is made of: each with what it reads and whether it is built."""
    from midoffice.models import transforms_dir, union_parts

    rows = [f"Declarations (`transforms/{m.union_of}/<name>.sql`, one SELECT each; built when what they read "
            "exists):", "", "| declaration | reads | built | what it is |", "|---|---|---|---|"]
    for part in union_parts(transforms_dir() / m.union_of):
        lead = []  # the declaration's opening comment, up to its first sentence's end
        for ln in part.sql.splitlines():
            if not ln.startswith("--") or (lead and lead[-1].endswith(".")):
                break
            lead.append(ln[2:].strip())
        lead = " ".join(lead).split(". ")[0].rstrip(".") + "."
        reads = ", ".join([f"[{x}](#{x})" for x in part.models] + [f"`{f}`" for f in part.feeds]) or "—"
        built = "yes" if not part.missing else "waits for " + ", ".join(f"`{x}`" for x in part.missing)
        rows.append(f"| {part.name} | {reads} | {built} | {_cell(lead)} |")
    return rows


def _model_section(d: MartDoc) -> list[str]:
    m = d.model
    out = [f"### {m.name}", "", _para(m.description), ""]
    out.append(f"- **Grain** (unique, not null per date): {', '.join(f'`{g}`' for g in m.grain)}")
    out.append(f"- **Partition**: `{m.partition}` (the build replaces one business date at a time)")
    pipeline = f"; **pipeline tables read**: {', '.join(m.reads_pipeline_tables)}" if m.reads_pipeline_tables else ""
    out.append(f"- **Feeds read**: {_reads(m.feeds_read, m.reads_feeds, False)}; **models read**: "
               f"{_reads(m.models_read, m.reads_models, True)}{pipeline}")
    out.append(f"- **Lineage**: kept from an earlier run for a date when any of these fails its gate: "
               f"{', '.join(d.upstream_feeds) or 'none (always rebuilt)'}")
    if d.downstream:
        out.append(f"- **Read by**: {', '.join(f'[{x}](#{x})' for x in d.downstream)}")
    out += ["", *_column_rows(d)]
    if m.union_of:
        out += ["", *_union_rows(m)]
    if m.example.strip():
        out += ["", "Example:", "", "```sql", m.example.strip(), "```"]
    out.append("")
    return out


def render_markdown(docs: list[MartDoc] | None = None) -> str:
    every = model_docs() if docs is None else docs
    docs = [d for d in every if d.model.published]
    intermediate = [d for d in every if not d.model.published]
    feeds = load_contracts()
    models = [d.model for d in every]
    fed_by = marts_fed_by(models)
    out = [
        "# Data dictionary",
        "",
        "<!-- Generated by `python -m midoffice.dictionary` from transforms/*.yml and "
        "contracts/feeds.yaml: edit those, not this file. -->",
        "",
        "Every mart of the published warehouse (the DuckLake `<home>/warehouse/lake.sqlite` + `lake_data/`; any version: `midoffice query --as-of-version N`), every column, where it "
        "comes from, and the feed contracts behind it. Amounts are USD unless a column says otherwise. "
        "Each mart holds one partition per business date (its *partition* column); query it read-only "
        "with `midoffice query \"SQL\"`. The daily pack carries the same dictionary as "
        "`reports/<date>/dictionary.html`, with the rows published for that date.",
        "",
        "The extracts in `reports/<date>/extracts/` hold each mart's rows for the date as Parquet (values as "
        "published) and CSV. In the CSV, a text value that starts with `=`, `+`, `-`, `@`, a tab or a carriage "
        "return gets a leading apostrophe (`'`), so that a spreadsheet shows it as text instead of running it "
        "as a formula: strip that apostrophe, or read the Parquet file, to get the value exactly.",
        "",
        "## Marts",
        "",
        "| mart | grain | partition | feeds (all upstream) | description |",
        "|---|---|---|---|---|",
    ]
    for d in docs:
        first = _cell(d.model.description.split(". ")[0].rstrip(".")) + "."
        out.append(f"| [{d.model.name}](#{d.model.name}) | {', '.join(d.model.grain)} | {d.model.partition} | "
                   f"{', '.join(d.upstream_feeds) or '—'} | {first} |")
    out += ["", "Control and storage tables published beside the marts: "
            + ", ".join(f"[{t}](#{t})" for t in side_tables()) + ".", ""]
    if intermediate:
        out += ["Intermediate models, built for the marts to read and not published: "
                + ", ".join(f"[{d.model.name}](#{d.model.name})" for d in intermediate) + ".", ""]
    out += ["## Lineage", "", "What each mart's SQL reads: feeds (left), intermediate models (rounded) and "
            "marts. A mart is rebuilt for a date only when every feed upstream of it through its hard reads "
            "(solid arrows) passed its gate, otherwise it keeps its previously published rows (`build_log` "
            "says which); a soft read (dotted) is read as it stands.", "", "```mermaid", "flowchart LR"]
    for f in feeds:
        out.append(f"  feed_{f}[/{f}/]")
    for d in intermediate:
        out.append(f"  {d.model.name}({d.model.name})")
    for m in models:
        for f in m.feeds_read:
            out.append(f"  feed_{f} {'-.->' if f in m.reads_feeds else '-->'} {m.name}")
        for dep in m.models_read:
            out.append(f"  {dep} {'-.->' if dep in m.reads_models else '-->'} {m.name}")
    out += ["```", ""]
    for d in docs:
        out += _model_section(d)
    if intermediate:
        out += ["## Intermediate models", "", "Built with the marts, for them to read; not published "
                "(`published: false` in their yml), so not queryable in the published warehouse.", ""]
        for d in intermediate:
            out += _model_section(d)
    out += ["## Control and storage tables", ""]
    for t, (desc, cols) in side_tables().items():
        out += [f"### {t}", "", desc, "", "| column | description |", "|---|---|"]
        out += [f"| `{c}` | {_cell(v)} |" for c, v in cols.items()]
        out.append("")
    out += ["## Feeds", "", "The senders' files, as the contracts in `contracts/feeds.yaml` define them "
            "(see DOMAIN §3). A record that breaks a rule is quarantined with the rule's name "
            "(`dq_quarantine`); a feed whose quarantined share passes the threshold fails its gate.", "",
            "| feed | file | kind | deadline (UTC) | key | marts fed |", "|---|---|---|---|---|---|"]
    for f in feeds.values():
        out.append(f"| [{f.name}](#feed-{f.name}) | `{f.file}` | {f.kind} | {f.deadline} | {', '.join(f.key)} | "
                   f"{len(fed_by[f.name])} |")
    out.append("")
    for f in feeds.values():
        out += [f'### <a id="feed-{f.name}"></a>Feed {f.name}', "", _para(f.description), ""]
        out.append(f"- **File**: `{f.file}` ({f.format}), {f.kind}, due by {f.deadline} UTC; "
                   f"**key**: {', '.join(f.key)}")
        if f.depends_on:
            out.append(f"- **References checked against**: {', '.join(f.depends_on)}")
        out.append(f"- **Marts fed**: {', '.join(f'[{x}](#{x})' for x in fed_by[f.name]) or '—'}")
        out += ["", "| column | type | rules | description |", "|---|---|---|---|"]
        out += [f"| `{c.name}` | {c.type} | {_cell(column_rules(f, c))} | {_cell(c.description)} |" for c in f.columns]
        if f.rules:
            out += ["", "Row rules: " + "; ".join(f"`{r.name}`: `{_cell(r.sql)}`" for r in f.rules)]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def write_markdown(path: Path = DICTIONARY_MD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(), encoding="utf-8")
    return path


# --- HTML (for the daily pack) -----------------------------------------------------------------

def _mart_view(d: MartDoc, published: dict[str, list[tuple[str, str]]], rows: dict[str, int],
               business_date: str | None) -> dict:
    """What the dictionary page shows of one mart (plain values: the template does the layout)."""
    m = d.model
    here = m.name in published
    state = (("present", f"published: {rows[m.name]:,} row{'' if rows[m.name] == 1 else 's'} for {business_date}")
             if here and m.name in rows else ("present", "published") if here else
             ("absent", "not in the published warehouse") if published else None)
    actual = dict(published.get(m.name, []))
    columns = [{"name": c, "type": actual.get(c) or d.types.get(c, ""), "description": desc, "grain": c in m.grain}
               for c, desc in m.columns.items()]
    columns += [{"name": c, "type": actual[c], "description": None, "grain": False}
                for c in actual if c not in m.columns]  # published but not in the yml
    return {"name": m.name, "state": state, "paragraphs": _para(m.description).split("\n\n"),
            "grain": ", ".join(m.grain), "partition": m.partition,
            "feeds": ", ".join(f + (" (soft)" if f in m.reads_feeds else "") for f in m.feeds_read) or "—",
            "marts_read": list(m.models_read), "upstream_feeds": ", ".join(d.upstream_feeds) or "none",
            "read_by": list(d.downstream), "columns": columns, "example": m.example.strip()}


def _feed_view(f: Feed, marts: tuple[str, ...]) -> dict:
    return {"name": f.name, "description": f.description, "file": f.file, "format": f.format, "kind": f.kind,
            "deadline": f.deadline, "key": ", ".join(f.key), "references": ", ".join(f.depends_on),
            "marts": list(marts),
            "columns": [{"name": c.name, "type": c.type, "rules": column_rules(f, c), "description": c.description}
                        for c in f.columns],
            "rules": [(r.name, r.sql) for r in f.rules]}


def render_html(business_date: str | None = None, published: dict[str, list[tuple[str, str]]] | None = None,
                rows: dict[str, int] | None = None, back_link: str | None = "index.html") -> str:
    """The dictionary as one self-contained page; with `published`, say what the warehouse holds.

    The layout is midoffice/report/templates/dictionary.html.j2 (autoescaped), beside the pack's.
    """
    from midoffice.report.render import render

    published = published or {}
    rows = rows or {}
    docs = mart_docs({t: dict(cols) for t, cols in published.items()} or None)
    feeds = load_contracts()
    fed_by = marts_fed_by([d.model for d in docs])
    return render("dictionary.html.j2", business_date=business_date, back_link=back_link,
                  marts=[_mart_view(d, published, rows, business_date) for d in docs],
                  side_tables=[{"name": t, "description": desc, "columns": cols} for t, (desc, cols) in side_tables().items()],
                  feeds=[_feed_view(f, fed_by[f.name]) for f in feeds.values()])


# --- command line ------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="midoffice dictionary",
                                description="Write the data dictionary (docs/DATA_DICTIONARY.md).")
    p.add_argument("--out", default=str(DICTIONARY_MD), help="where to write (default docs/DATA_DICTIONARY.md)")
    p.add_argument("--check", action="store_true", help="exit 1 if the file is not up to date; write nothing")
    args = p.parse_args(argv)
    out = Path(args.out)
    mismatches = column_mismatches()
    if mismatches:  # the build would refuse these models: documenting them would be wrong
        print("the yml columns disagree with the SQL:\n" + "\n".join(mismatches), file=sys.stderr)
        return 1
    if args.check:
        current = out.read_text(encoding="utf-8") if out.is_file() else ""
        if current != render_markdown():
            print(f"{out} is stale: run `python -m midoffice.dictionary`", file=sys.stderr)
            return 1
        print(f"{out} is up to date")
        return 0
    print(write_markdown(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
