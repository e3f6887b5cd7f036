"""Models: transforms/<name>.sql (the query) + transforms/<name>.yml (docs, grain, column tests).

Each model is a SELECT made of named CTEs ending in `final`, computed for one business date,
read through `getvariable('as_of_date')`. What a model reads is not declared: it is read from
its SQL (sqlglot, DuckDB dialect), where every table is schema-qualified: `core.<feed>` (a feed
of contracts/feeds.yaml, or one of the pipeline's own tables of warehouse/*.sql) and
`main.<model>` (another model, the storage of one, or a table macro of warehouse/marts.sql over
it). The build order is a topological sort of that graph, ties broken by name.

A read is hard by default: the model is skipped for a date when a feed it reads failed its gate
or a model it reads was skipped. The yml's `soft_reads` names the reads (as the SQL spells them,
`core.<feed>` or `main.<model>`) that are read as they are instead (the latest delivery loaded,
the rows as built): build order only. A model with `published: false` is intermediate: built
and read by later models, never published nor listed as a mart. A model with `union_of: <folder>`
has no SQL file of its own: it is the union of the folder's declarations (one SELECT a file; the
worklist's item types), of those whose sources exist, so that a declaration whose source mart is
not there yet waits for it (union_sql).
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import sqlglot
from sqlglot import exp

from midoffice.config import TRANSFORMS_DIR, WAREHOUSE_DDL_DIR
from midoffice.contracts import IDENTIFIER, ContractError, feed_names, load_contracts, read_yaml

# Points every reader of the models (build, publication, dictionary, extracts) at another
# transforms folder: a deployment's own marts, or a test's copy with one more.
TRANSFORMS_DIR_ENV = "MIDOFFICE_TRANSFORMS_DIR"
SQL_DIALECT = "duckdb"
# the yml keys that once declared by hand what the SQL reads (and the order): now derived
RETIRED_KEYS = ("order", "depends_on_feeds", "depends_on_models", "reads_models")
COLUMN_TESTS = ("not_null", "unique", "finite", "accepted_values", "range")


@dataclass(frozen=True)
class ColumnTest:
    """One test of a column's values in a date's rows (the build's audit, warehouse._audit_model)."""
    column: str
    test: str  # one of COLUMN_TESTS
    values: tuple = ()  # accepted_values
    min: float | None = None  # range, inclusive
    max: float | None = None

    def __str__(self) -> str:
        if self.test == "accepted_values":
            return "one of " + ", ".join(str(v) for v in self.values)
        if self.test == "range":
            return " and ".join(f"{op} {b}" for op, b in ((">=", self.min), ("<=", self.max)) if b is not None)
        return self.test.replace("_", " ")

    @property
    def label(self) -> str:
        """How an audit failure names it: `finite`, `accepted_values (one of A, B)`."""
        return f"{self.test} ({self})" if self.values or self.test == "range" else self.test


@dataclass(frozen=True)
class Model:
    name: str
    description: str
    grain: tuple[str, ...]
    partition: str  # the date column whose value the build replaces for each business date
    depends_on_feeds: tuple[str, ...]  # hard: the model is skipped for a date when one failed its gate
    depends_on_models: tuple[str, ...]  # hard: the model is skipped for a date when one of them is
    columns: dict[str, str]  # name -> description
    sql: str
    own_run_id: bool = False  # the model's rows carry their own run_id (the ledger tables)
    example: str = ""
    # soft: read as built for the date (build order only); a skipped one leaves its rows as they are
    reads_models: tuple[str, ...] = ()
    # soft: the feed's latest delivery loaded is read, whether or not the date's passed its gate
    reads_feeds: tuple[str, ...] = ()
    # the pipeline's own tables read (core.feed_health, ...): written by every build, never gated
    reads_pipeline_tables: tuple[str, ...] = ()
    # intermediate when False: built and read by later models, not published, not a mart
    published: bool = True
    tests: tuple[ColumnTest, ...] = ()  # declared beside the columns in the yml
    # reads its own rows of the previous business date (getvariable('carry_from_date'), NULL when
    # they may be stale) to evaluate only what can have changed; its table is in warehouse/marts.sql
    carries_previous_date: bool = False
    # built in chunks of its trades (hash(trade_id) % chunk_count = chunk, read through
    # getvariable) so that no thread holds more than chunk_rows records of feed `chunk_feed` at a
    # time: the memory a chunk needs is a share of the date's, so a 10M-trade date fits the limit
    # (warehouse.build_plan)
    chunk_feed: str | None = None
    chunk_rows: int = 0
    # stored as status spans (midoffice.spans): the query gives each row's state, every column but
    # these, which the model's view (warehouse/marts.sql) computes for each date
    spans: bool = False
    per_date_columns: tuple[str, ...] = ()
    # the folder of declarations the model is the union of (union_sql), relative to transforms/
    union_of: str = ""

    @property
    def lineage(self) -> tuple[str, ...]:
        return ("loaded_at",) if self.own_run_id else ("run_id", "loaded_at")

    @property
    def state_columns(self) -> list[str]:
        """The columns the query gives: for a spans model, what a span holds."""
        return [c for c in self.columns if c not in self.per_date_columns and c not in self.lineage]

    @property
    def spans_table(self) -> str:
        return f"{self.name}_spans"

    @property
    def dates_table(self) -> str:
        return f"{self.name}_dates"

    @property
    def stored_tables(self) -> list[str]:
        """The tables holding the model's rows (a spans model's name is its view)."""
        return [self.spans_table, self.dates_table] if self.spans else [self.name]

    @property
    def feeds_read(self) -> tuple[str, ...]:
        return tuple(sorted(self.depends_on_feeds + self.reads_feeds))

    @property
    def models_read(self) -> tuple[str, ...]:
        return tuple(sorted(self.depends_on_models + self.reads_models))


# --- what a query reads ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Reads:
    """What a statement reads, as written."""
    tables: frozenset[tuple[str, str]] = frozenset()  # (schema, name), '' when unqualified; no CTE
    # every function called by a name DuckDB does not know natively: a macro (of warehouse/*.sql)
    # or a function registered at run time (client_key)
    functions: frozenset[str] = frozenset()


def statement_reads(tree: exp.Expression) -> Reads:
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    tables = {((t.db or "").lower(), t.name.lower()) for t in tree.find_all(exp.Table)
              if not isinstance(t.this, exp.Func) and (t.db or t.name.lower() not in ctes)}
    return Reads(frozenset(tables), frozenset(f.name.lower() for f in tree.find_all(exp.Anonymous)))


def sql_reads(sql: str) -> Reads:
    return statement_reads(sqlglot.parse_one(sql, dialect=SQL_DIALECT))


def ddl_objects(text: str, kinds: tuple[str, ...]) -> dict[str, Reads]:
    """name -> what its body reads, of every CREATE <kind> of a DDL text (a macro's or view's)."""
    out = {}
    for statement in sqlglot.parse(text, dialect=SQL_DIALECT):
        if isinstance(statement, exp.Create) and statement.args.get("kind") in kinds:
            target = statement.this.this if isinstance(statement.this, (exp.Schema, exp.UserDefinedFunction)) \
                else statement.this
            body = statement.expression
            out[target.name.lower()] = statement_reads(body) if body is not None else Reads()
    return out


@lru_cache(maxsize=1)
def pipeline_tables() -> frozenset[str]:
    """The core tables the pipeline writes itself (warehouse/*.sql: core.sql, and calendar.sql's
    calendar_days, rebuilt from the calendars feed by every build), not feeds."""
    tables = set()
    for ddl in sorted(WAREHOUSE_DDL_DIR.glob("*.sql")):
        text = ddl.read_text()
        tables |= {name for name in ddl_objects(text, ("TABLE",)) if f"core.{name}" in text}
    return frozenset(tables)


@lru_cache(maxsize=1)
def ddl_relations() -> dict[str, Reads]:
    """The macros and views of the warehouse's DDL (warehouse/*.sql), and what each reads."""
    out: dict[str, Reads] = {}
    for path in sorted(WAREHOUSE_DDL_DIR.glob("*.sql")):
        try:
            out |= ddl_objects(path.read_text(), ("MACRO", "VIEW"))
        except sqlglot.errors.ParseError as exc:  # its macros' reads would be missing from the lineage
            raise ContractError(f"{path}: cannot be parsed for the models' lineage: {exc}") from exc
    return out


@dataclass(frozen=True)
class Found:
    """What a read resolves to: core tables (feeds or the pipeline's) and models."""
    core: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()

    def __or__(self, other: Found) -> Found:
        return Found(self.core | other.core, self.models | other.models)


@dataclass
class _Graph:
    """Resolves what a query reads, through the warehouse's macros and views, to core tables and models."""
    models: set[str]
    owners: dict[str, str]  # storage table -> its model
    relations: dict[str, Reads]  # macro or view -> its reads

    def model_of(self, table: str) -> str | None:
        return table if table in self.models else self.owners.get(table)

    def _main(self, reads: Reads) -> set[str]:
        return {n for s, n in reads.tables if s in ("", "main")}

    def through(self, name: str, seen: frozenset[str] = frozenset()) -> Found:
        """What calling (or selecting from) the macro or view reads. One over a model's storage
        stands for that model: its other reads are the model's own (storage_dependencies)."""
        if name not in self.relations or name in seen:
            return Found()  # a built-in or registered function: reads nothing
        reads, seen = self.relations[name], seen | {name}
        core = frozenset(n for s, n in reads.tables if s == "core")
        owning = {self.owners[r] for r in self._main(reads) if r in self.owners}
        if owning:
            return Found(core, frozenset(owning))
        found = Found(core, frozenset(m for r in self._main(reads) if (m := self.model_of(r))))
        for r in self._main(reads) - self.models:
            found |= self.through(r, seen)
        for f in reads.functions:
            found |= self.through(f, seen)
        return found

    def storage_dependencies(self, model: str) -> Found:
        """What the macros and views over the model's storage read besides it (the recon's view: fx_daily)."""
        found = Found()
        for name, reads in self.relations.items():
            inner = self._main(reads)
            if any(self.owners.get(r) == model for r in inner):
                found |= Found(frozenset(n for s, n in reads.tables if s == "core"),
                               frozenset(m for r in inner - set(self.owners) if (m := self.model_of(r))))
                for f in reads.functions | (inner - set(self.owners) - self.models):
                    found |= self.through(f, frozenset({name}))
        return Found(found.core, found.models - {model})


@dataclass(frozen=True)
class Lineage:
    feeds: tuple[str, ...]
    models: tuple[str, ...]
    pipeline_tables: tuple[str, ...]


def derive_lineage(where: str, name: str, sql: str, graph: _Graph, feeds: set[str]) -> Lineage:
    """What the model's SQL reads, directly or through the warehouse's macros: feeds, other
    models, the pipeline's tables. A read of anything else is an error (the lineage would miss it)."""
    try:
        reads = sql_reads(sql)
    except sqlglot.errors.ParseError as exc:
        raise ContractError(f"{where}: the SQL cannot be parsed for its lineage: {exc}") from exc
    found = Found()
    for schema, table in sorted(reads.tables):
        if schema == "core":
            found |= Found(core=frozenset({table}))
        elif schema == "main" and graph.model_of(table):
            found |= Found(models=frozenset({graph.model_of(table)}))
        elif schema == "main" and table in graph.relations:
            found |= graph.through(table)
        elif not schema:
            raise ContractError(f"{where}: reads table {table!r} unqualified: write core.<feed> or main.<model>")
        else:
            raise ContractError(f"{where}: reads {schema}.{table}, which is no model, model storage, or "
                                "macro or view of warehouse/*.sql")
    for function in sorted(reads.functions):
        found |= graph.through(function)
    found |= graph.storage_dependencies(name)
    unknown = sorted(found.core - feeds - pipeline_tables())
    if unknown:
        raise ContractError(f"{where}: reads core.{unknown[0]}, which is no feed of contracts/feeds.yaml "
                            "nor pipeline table of warehouse/*.sql")
    return Lineage(tuple(sorted(found.core & feeds)),
                   tuple(sorted(found.models - {name})),  # its own earlier rows (the recon's previous date)
                   tuple(sorted(found.core & pipeline_tables() - feeds)))


# --- the yml -------------------------------------------------------------------------------------

def _test_and_argument(entry) -> tuple[str | None, object]:
    """`not_null` -> ('not_null', None); `{range: {min: 0}}` -> ('range', {'min': 0})."""
    if isinstance(entry, str):
        return entry, None
    if isinstance(entry, dict) and len(entry) == 1:
        return next(iter(entry.items()))
    return None, None


def _column_tests(where: str, column: str, raw) -> list[ColumnTest]:
    out = []
    for entry in raw or []:
        test, arg = _test_and_argument(entry)
        if test not in COLUMN_TESTS:
            raise ContractError(f"{where}: column {column}: unknown test {entry!r} (one of {', '.join(COLUMN_TESTS)})")
        if test == "accepted_values":
            if not isinstance(arg, list) or not arg:
                raise ContractError(f"{where}: column {column}: accepted_values needs a list of values")
            out.append(ColumnTest(column, test, values=tuple(arg)))
        elif test == "range":
            if not isinstance(arg, dict) or not set(arg) or not set(arg) <= {"min", "max"} \
                    or not all(isinstance(b, (int, float)) for b in arg.values()):
                raise ContractError(f"{where}: column {column}: range needs {{min: x}} and/or {{max: y}}, numbers")
            out.append(ColumnTest(column, test, min=arg.get("min"), max=arg.get("max")))
        elif arg is not None:
            raise ContractError(f"{where}: column {column}: {test} takes no argument")
        else:
            out.append(ColumnTest(column, test))
    return out


def _columns(where: str, meta: dict) -> tuple[dict[str, str], list[ColumnTest]]:
    columns, tests = {}, []
    for c in meta["columns"]:
        # An unquoted comma in a flow mapping silently splits a description into a new key.
        if not {"name", "description"} <= set(c) <= {"name", "description", "tests"}:
            raise ContractError(f"{where}: column entry {c} must have name, description and optionally "
                                "tests (quote a description with a comma)")
        if not IDENTIFIER.match(c["name"]):
            raise ContractError(f"{where}: column {c['name']!r} is not an identifier")
        columns[c["name"]] = c["description"]
        tests += _column_tests(where, c["name"], c.get("tests"))
    return columns, tests


def _split_soft(where: str, meta: dict, lineage: Lineage) -> tuple[set[str], set[str]]:
    """(soft feeds, soft models) from `soft_reads`, each a read the SQL makes."""
    soft_feeds, soft_models = set(), set()
    for entry in meta.get("soft_reads") or []:
        schema, _, table = str(entry).partition(".")
        if schema == "core" and table in lineage.feeds:
            soft_feeds.add(table)
        elif schema == "main" and table in lineage.models:
            soft_models.add(table)
        else:
            raise ContractError(f"{where}: soft_reads names {entry!r}, which the SQL does not read "
                                f"(it reads feeds {list(lineage.feeds)}, models {list(lineage.models)})")
    return soft_feeds, soft_models


# --- a model that is the union of declarations (the worklist's item types) ------------------------

@dataclass(frozen=True)
class Part:
    """One declaration of a `union_of` folder: <folder>/<NAME>.sql, a SELECT whose rows are the
    part's (an item type's open conditions); active when every model and feed it reads exists."""
    name: str
    sql: str
    models: tuple[str, ...]  # the models it reads (its source marts)
    feeds: tuple[str, ...]  # the feeds it reads straight from core
    missing: tuple[str, ...]  # what it reads that does not exist (yet): the part is inactive


def union_parts(folder: Path, graph: _Graph | None = None, feeds: set[str] | None = None) -> list[Part]:
    """The declarations of the folder, by name, each with its sources and what of them is missing."""
    if graph is None:  # the repository's models, for a caller outside the loading (the docs, the CLI)
        metas = [read_yaml(y) for y in transforms_dir().glob("*.yml")]
        spans = {m["name"] for m in metas if m.get("stored_as", "rows") == "spans"}
        graph = _Graph({m["name"] for m in metas}, {f"{n}_{t}": n for n in spans for t in ("spans", "dates")},
                       ddl_relations())
    feeds = set(feed_names()) if feeds is None else feeds
    parts = []
    for path in sorted(folder.glob("*.sql")):
        text = path.read_text()
        try:
            reads = sql_reads(text)
        except sqlglot.errors.ParseError as exc:
            raise ContractError(f"{path}: the SQL cannot be parsed for its lineage: {exc}") from exc
        missing, models, read_feeds = [], set(), set()
        for schema, table in sorted(reads.tables):
            if schema == "main":
                if graph.model_of(table):
                    models.add(graph.model_of(table))
                elif table not in graph.relations:
                    missing.append(f"main.{table}")
            elif schema == "core" and table in feeds:
                read_feeds.add(table)
            elif schema == "core" and table not in pipeline_tables():
                missing.append(f"core.{table}")
        for function in sorted(reads.functions):  # a table macro over a model's storage is that model
            through = graph.through(function)
            models |= set(through.models)
            read_feeds |= set(through.core) & feeds
        for schema, table in sorted(reads.tables):
            if schema == "main" and table in graph.relations and not graph.model_of(table):
                through = graph.through(table)
                models |= set(through.models)
                read_feeds |= set(through.core) & feeds
        parts.append(Part(path.stem, text, tuple(sorted(models)), tuple(sorted(read_feeds)), tuple(missing)))
    return parts


def union_sql(where: str, folder: Path, columns: list[dict], graph: _Graph, feeds: set[str],
              part_column: str = "part", partition: str = "as_of_date") -> str:
    """The SQL of a `union_of` model: the active parts' rows (UNION ALL BY NAME: a column a part
    leaves out is null), each tagged with its name (column `part_column`), in the documented columns. A part
    whose sources were skipped for the date (a failed gate upstream) gives one row, key '*' and
    source_skipped true, in place of its rows: the model that reads it carries the type's
    items rather than taking them for cleared."""
    if not folder.is_dir():
        raise ContractError(f"{where}: union_of names {folder}, which is no folder")
    parts = [p for p in union_parts(folder, graph, feeds) if not p.missing]
    if not parts:
        raise ContractError(f"{where}: no declaration of {folder} can be built")
    names = [c["name"] for c in columns if c["name"] not in ("run_id", "loaded_at")]
    ctes, selects = [], []
    date = f"CAST(getvariable('as_of_date') AS DATE) AS {partition}"
    for i, part in enumerate(parts):
        body = part.sql.strip().rstrip(";")
        sources = ", ".join(f"'{m}'" for m in part.models) or "NULL"
        ctes.append(f"part_{i} AS (\n{body}\n)")
        # a reference feed that failed falls back to its latest delivery; a date's events do not
        events = ", ".join(f"'{f}'" for f in part.feeds if load_contracts()[f].kind != "reference") or "NULL"
        ctes.append(
            f"skipped_{i} AS (SELECT (SELECT count(*) FROM core.build_log WHERE business_date = getvariable('as_of_date') "
            f"AND status = 'SKIPPED' AND mart IN ({sources})) + (SELECT count(*) FROM core.feed_health "
            f"WHERE business_date = getvariable('as_of_date') AND gate <> 'PASS' AND feed IN ({events})) > 0 AS skipped)")
        selects.append(f"SELECT {date}, '{part.name}' AS {part_column}, false AS source_skipped, p.* FROM part_{i} p "
                       f"WHERE NOT (SELECT skipped FROM skipped_{i})")
        selects.append(f"SELECT {date}, '{part.name}' AS {part_column}, true AS source_skipped, '*' AS natural_key "
                       f"FROM skipped_{i} WHERE skipped")
    union = "\nUNION ALL BY NAME\n".join(selects)
    return ("WITH " + ",\n".join(ctes) + f",\nunioned AS (\n{union}\n),\n"
            f"final AS (SELECT {', '.join(names)} FROM unioned)\nSELECT * FROM final\n")


def transforms_dir() -> Path:
    return Path(os.environ.get(TRANSFORMS_DIR_ENV) or TRANSFORMS_DIR).resolve()


def load_models(directory: Path | None = None) -> list[Model]:
    """Every model of the transforms folder (default: MIDOFFICE_TRANSFORMS_DIR, else the repo's), in build order."""
    return _load_models(Path(directory).resolve() if directory else transforms_dir())


@lru_cache(maxsize=4)
def _load_models(directory: Path) -> list[Model]:
    metas = {}
    for yml in sorted(directory.glob("*.yml")):
        meta = read_yaml(yml)
        name = meta["name"]
        if not IDENTIFIER.match(name) or yml.stem != name:
            raise ContractError(f"{yml}: model name {name!r} must be an identifier equal to the file name")
        retired = [k for k in RETIRED_KEYS if k in meta]
        if retired:
            raise ContractError(f"{yml}: remove {retired}: what a model reads and the build order come from "
                                "its SQL (soft_reads marks the reads that do not skip it)")
        metas[name] = meta
    spans = {n for n, m in metas.items() if m.get("stored_as", "rows") == "spans"}
    graph = _Graph(set(metas), {f"{n}_{t}": n for n in spans for t in ("spans", "dates")}, ddl_relations())
    known_feeds = set(feed_names())
    models = []
    for name, meta in metas.items():
        where = str(directory / f"{name}.yml")
        if meta.get("union_of"):
            sql = union_sql(where, directory / meta["union_of"], list(meta["columns"]), graph, known_feeds,
                            meta.get("part_column", "part"), meta["partition"])
        else:
            sql = (directory / f"{name}.sql").read_text()
        lineage = derive_lineage(where, name, sql, graph, known_feeds)
        soft_feeds, soft_models = _split_soft(where, meta, lineage)
        if meta.get("union_of"):  # each part's sources are its own: one skipped skips only that part
            soft_feeds, soft_models = set(lineage.feeds), set(lineage.models)
        columns, tests = _columns(where, meta)
        unknown = sorted({t.column for t in tests} - set(columns))
        if unknown:
            raise ContractError(f"{where}: tests on undocumented columns {unknown}")
        per_date = sorted({t.column for t in tests} & set(meta.get("per_date_columns", [])))
        if per_date:  # the view computes them for each date, the audit reads the stored spans
            raise ContractError(f"{where}: tests on per-date columns {per_date} cannot run")
        models.append(Model(
            name=name,
            description=meta["description"].strip(),
            grain=tuple(meta["grain"]),
            partition=meta["partition"],
            depends_on_feeds=tuple(f for f in lineage.feeds if f not in soft_feeds),
            depends_on_models=tuple(m for m in lineage.models if m not in soft_models),
            reads_models=tuple(sorted(soft_models)),
            reads_feeds=tuple(sorted(soft_feeds)),
            reads_pipeline_tables=lineage.pipeline_tables,
            columns=columns,
            tests=tuple(tests),
            sql=sql,
            published=bool(meta.get("published", True)),
            own_run_id=bool(meta.get("own_run_id", False)),
            example=meta.get("example", ""),
            carries_previous_date=bool(meta.get("carries_previous_date", False)),
            chunk_feed=(meta.get("chunks") or {}).get("feed"),
            chunk_rows=int((meta.get("chunks") or {}).get("rows", 0)),
            spans=name in spans,
            per_date_columns=tuple(meta.get("per_date_columns", [])),
            union_of=str(meta.get("union_of") or ""),
        ))
    return build_order(models)


def build_order(models: list[Model]) -> list[Model]:
    """Topological order of the models' reads (hard and soft); among those ready, by name."""
    by_name = {m.name: m for m in models}
    waiting_on = {m.name: set(m.models_read) for m in models}
    for m in models:
        unknown = waiting_on[m.name] - set(by_name)
        if unknown:
            raise ContractError(f"{m.name} reads unknown models {sorted(unknown)}")
    ready = [n for n, deps in waiting_on.items() if not deps]
    heapq.heapify(ready)
    done: list[Model] = []
    while ready:
        name = heapq.heappop(ready)
        done.append(by_name[name])
        for other, deps in waiting_on.items():
            if name in deps:
                deps.discard(name)
                if not deps:
                    heapq.heappush(ready, other)
    if len(done) != len(models):
        raise ContractError(f"model dependency cycle among {sorted(n for n, d in waiting_on.items() if d)}")
    return done


def upstream_feeds(models: list[Model], hard_only: bool = True) -> dict[str, tuple[str, ...]]:
    """Feeds each model depends on through its whole chain. Hard only: if one fails its gate, the
    model keeps its previous rows (the build skips a model whose feeds failed or whose hard
    models were skipped). With soft reads too: every feed whose loads can change its rows."""
    by_name = {m.name: m for m in models}
    memo: dict[str, set[str]] = {}

    def feeds_of(name: str) -> set[str]:
        if name not in memo:
            m = by_name[name]
            own = m.depends_on_feeds if hard_only else m.feeds_read
            through = m.depends_on_models if hard_only else m.models_read
            memo[name] = set(own).union(*(feeds_of(d) for d in through if d in by_name))
        return memo[name]

    order = feed_names()
    return {m.name: tuple(f for f in order if f in feeds_of(m.name)) for m in models}


NUMERIC_TYPES = ("DOUBLE", "FLOAT", "REAL", "DECIMAL")


def column_tests(model: Model, types: list[tuple[str, str]]) -> list[ColumnTest]:
    """The yml's tests, plus finite on every numeric column: a mart never publishes inf or NaN."""
    declared = [t for t in model.tests if t.column in dict(types)]
    finite = {t.column for t in declared if t.test == "finite"}
    return declared + [ColumnTest(c, "finite") for c, typ in types
                       if typ.startswith(NUMERIC_TYPES) and c not in finite]


def published_models() -> list[Model]:
    """The marts: the models the publication copies, the extracts and the dictionary list."""
    return [m for m in load_models() if m.published]


def mart_names() -> list[str]:
    return [m.name for m in published_models()]

