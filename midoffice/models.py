"""Mart models: transforms/<mart>.sql (the query) + transforms/<mart>.yml (docs, grain, lineage).

Each model is a SELECT made of named CTEs ending in `final`, computed for one business date,
read through `getvariable('as_of_date')`. The yml carries what the build needs (grain, the
column replaced per date, the feeds it depends on) and what the data dictionary shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from midoffice.config import TRANSFORMS_DIR
from midoffice.contracts import IDENTIFIER, ContractError, feed_names, read_yaml


@dataclass(frozen=True)
class Model:
    name: str
    description: str
    grain: tuple[str, ...]
    partition: str  # the date column whose value the build replaces for each business date
    depends_on_feeds: tuple[str, ...]
    depends_on_models: tuple[str, ...]  # hard: the model is skipped for a date when one of them is
    columns: dict[str, str]  # name -> description
    sql: str
    order: int
    own_run_id: bool = False  # the model's rows carry their own run_id (the ledger tables)
    example: str = ""
    # soft: read as built for the date (build order only); a skipped one leaves its rows as they are
    reads_models: tuple[str, ...] = ()
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


@lru_cache(maxsize=2)
def load_models(directory: Path = TRANSFORMS_DIR) -> list[Model]:
    models = []
    known_feeds = set(feed_names())
    for yml in sorted(directory.glob("*.yml")):
        meta = read_yaml(yml)
        name = meta["name"]
        if not IDENTIFIER.match(name) or yml.stem != name:
            raise ContractError(f"{yml}: model name {name!r} must be an identifier equal to the file name")
        feeds = tuple(meta.get("depends_on_feeds", []))
        if not set(feeds) <= known_feeds:
            raise ContractError(f"{yml}: unknown feeds {set(feeds) - known_feeds}")
        for c in meta["columns"]:
            # An unquoted comma in a flow mapping silently splits a description into a new key.
            if set(c) != {"name", "description"}:
                raise ContractError(f"{yml}: column entry {c} must have exactly name and description (quote it)")
        columns = {c["name"]: c["description"] for c in meta["columns"]}
        for col in columns:
            if not IDENTIFIER.match(col):
                raise ContractError(f"{yml}: column {col!r} is not an identifier")
        models.append(Model(
            name=name,
            description=meta["description"].strip(),
            grain=tuple(meta["grain"]),
            partition=meta["partition"],
            depends_on_feeds=feeds,
            depends_on_models=tuple(meta.get("depends_on_models", [])),
            columns=columns,
            sql=(directory / f"{name}.sql").read_text(),
            order=int(meta.get("order", 100)),
            own_run_id=bool(meta.get("own_run_id", False)),
            example=meta.get("example", ""),
            reads_models=tuple(meta.get("reads_models", [])),
            carries_previous_date=bool(meta.get("carries_previous_date", False)),
            chunk_feed=(meta.get("chunks") or {}).get("feed"),
            chunk_rows=int((meta.get("chunks") or {}).get("rows", 0)),
            spans=meta.get("stored_as", "rows") == "spans",
            per_date_columns=tuple(meta.get("per_date_columns", [])),
        ))
    return _dependency_order(models)


def _dependency_order(models: list[Model]) -> list[Model]:
    by_name = {m.name: m for m in models}
    done: list[Model] = []
    pending = sorted(models, key=lambda m: (m.order, m.name))
    while pending:
        progressed = False
        for m in list(pending):
            if all(d in {x.name for x in done} for d in m.depends_on_models + m.reads_models):
                done.append(m)
                pending.remove(m)
                progressed = True
        if not progressed:
            raise ContractError(f"model dependency cycle or unknown model among {[m.name for m in pending]}")
    for m in done:
        for d in m.depends_on_models + m.reads_models:
            if d not in by_name:
                raise ContractError(f"{m.name} depends on unknown model {d}")
    return done


def mart_names() -> list[str]:
    return [m.name for m in load_models()]
