"""Feed contracts (contracts/feeds.yaml) as typed, validated objects.

The YAML is the single source of every feed rule: the ingest split (SQL) and the Great
Expectations suites are both derived from it. Names in it become SQL identifiers, so they are
checked against an allow-list pattern here, once, before anything uses them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from midoffice.config import CONTRACTS_FILE, CONTROL_PARAMETERS_FILE

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TYPES = {"VARCHAR", "BIGINT", "DOUBLE", "DATE", "TIMESTAMP"}
FORMATS = {"csv", "jsonl", "parquet"}
KINDS = {"reference", "snapshot", "event", "daily"}

# libyaml's loader where PyYAML has it: the pure-Python one takes ~0.8 s to read the contracts and
# the 26 model files, in every process that builds, publishes or reports.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path):
    """A YAML file of the project's own (contracts, model docs), safely loaded."""
    return yaml.load(Path(path).read_text(), Loader=_YAML_LOADER)


class ContractError(ValueError):
    """The contract file itself is wrong (a programming error, not bad input)."""


def _ident(name: str, where: str) -> str:
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise ContractError(f"{where}: {name!r} is not an allowed identifier")
    return name


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    required: bool = False
    unique: bool = False
    values: tuple[str, ...] | None = None
    min: float | str | None = None
    min_exclusive: float | str | None = None
    max: float | str | None = None
    max_exclusive: float | str | None = None
    pattern: str | None = None
    ref: tuple[str, str] | None = None  # (feed, column)
    pii: bool = False
    # Optional (DOMAIN §7): a file may leave the column out (it loads as null), because senders
    # migrate one at a time; when the column is there, its rules apply.
    optional: bool = False


@dataclass(frozen=True)
class Lookup:
    alias: str
    feed: str
    by: str  # the column of this feed matched against `key`
    key: str
    value: str | None = None


@dataclass(frozen=True)
class RowRule:
    name: str
    sql: str


@dataclass(frozen=True)
class Feed:
    name: str
    file: str
    format: str
    kind: str
    deadline: str
    key: tuple[str, ...]
    description: str
    columns: tuple[Column, ...]
    depends_on: tuple[str, ...] = ()
    lookups: tuple[Lookup, ...] = ()
    rules: tuple[RowRule, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


# Ingest checks a pattern with DuckDB's RE2, where \s \w \d \b are ASCII-only; GX checks it with
# Python's re, where they are Unicode (\s also matches U+00A0, U+2003, \x85): a value could pass
# one engine and fail the other. Contract patterns spell their characters out instead.
ENGINE_DEPENDENT_REGEX = re.compile(r"(?<!\\)(?:\\\\)*\\[sSwWdDbB]")


def _column(feed: str, raw: dict) -> Column:
    where = f"{feed}.{raw.get('name')}"
    name = _ident(raw["name"], where)
    ctype = raw["type"]
    if ctype not in TYPES:
        raise ContractError(f"{where}: unknown type {ctype}")
    ref = None
    if "ref" in raw:
        rfeed, rcol = raw["ref"].split(".")
        ref = (_ident(rfeed, where), _ident(rcol, where))
    values = tuple(str(v) for v in raw["values"]) if "values" in raw else None
    pattern = raw.get("pattern")
    if pattern is not None and ENGINE_DEPENDENT_REGEX.search(pattern):
        raise ContractError(f"{where}: pattern {pattern!r} uses a shorthand class (\\s \\w \\d \\b) that "
                            "DuckDB (RE2: ASCII) and Great Expectations (Python: Unicode) read differently; "
                            "spell the characters out")
    for bound in ("min", "min_exclusive", "max", "max_exclusive"):
        value = raw.get(bound)
        # YAML 1.1 reads 1.0e9 (no exponent sign) as text: a bound must be a number, not a string.
        if value is not None and value != "business_date" and (
                isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ContractError(f"{where}: {bound} {value!r} is neither a number nor business_date "
                                "(write exponents with a sign: 1.0e+9)")
    return Column(
        name=name,
        type=ctype,
        description=raw.get("description", ""),
        required=bool(raw.get("required", False)),
        unique=bool(raw.get("unique", False)),
        values=values,
        min=raw.get("min"),
        min_exclusive=raw.get("min_exclusive"),
        max=raw.get("max"),
        max_exclusive=raw.get("max_exclusive"),
        pattern=raw.get("pattern"),
        ref=ref,
        pii=bool(raw.get("pii", False)),
        optional=bool(raw.get("optional", False)),
    )


def _feed(name: str, raw: dict) -> Feed:
    _ident(name, "feed")
    if raw["format"] not in FORMATS or raw["kind"] not in KINDS:
        raise ContractError(f"{name}: bad format or kind")
    if not re.fullmatch(r"[a-z_]+\.(csv|jsonl|parquet)", raw["file"]):
        raise ContractError(f"{name}: bad file name {raw['file']}")
    columns = tuple(_column(name, c) for c in raw["columns"])
    names = {c.name for c in columns}
    key = tuple(_ident(k, name) for k in raw["key"])
    if not set(key) <= names:
        raise ContractError(f"{name}: key {key} not in columns")
    lookups = tuple(
        Lookup(
            alias=_ident(lk["as"], name),
            feed=_ident(lk["feed"], name),
            by=_ident(lk["by"], name),
            key=_ident(lk["key"], name),
            value=_ident(lk["value"], name) if lk.get("value") else None,
        )
        for lk in raw.get("lookups", [])
    )
    for c in columns:
        # in a compound key an optional column's null is one key value: a file without the column
        # is keyed by the other columns, as before the column existed
        if c.optional and (c.required or c.unique or key == (c.name,)):
            raise ContractError(f"{name}.{c.name}: an optional column cannot be required, unique or the whole key")
    rules = tuple(RowRule(_ident(r["name"], name), r["sql"]) for r in raw.get("rules", []))
    return Feed(
        name=name,
        file=raw["file"],
        format=raw["format"],
        kind=raw["kind"],
        deadline=str(raw["deadline"]),
        key=key,
        description=raw.get("description", ""),
        columns=columns,
        depends_on=tuple(_ident(d, name) for d in raw.get("depends_on", [])),
        lookups=lookups,
        rules=rules,
    )


@lru_cache(maxsize=4)
def load_contracts(path: Path = CONTRACTS_FILE) -> dict[str, Feed]:
    raw = read_yaml(path)
    feeds = {name: _feed(name, body) for name, body in raw.items()}
    for feed in feeds.values():
        for dep in feed.depends_on:
            if dep not in feeds:
                raise ContractError(f"{feed.name}: depends on unknown feed {dep}")
        for col in feed.columns:
            if col.ref and col.ref[0] not in feed.depends_on:
                raise ContractError(f"{feed.name}.{col.name}: ref feed must be in depends_on")
    return feeds


def feed_names() -> list[str]:
    return list(load_contracts())


def ingest_order() -> list[str]:
    """Feeds ordered so that every feed comes after the feeds it references."""
    feeds = load_contracts()
    done: list[str] = []
    while len(done) < len(feeds):
        for name, feed in feeds.items():
            if name not in done and all(d in done for d in feed.depends_on):
                done.append(name)
    return done


def get_feed(name: str) -> Feed:
    feeds = load_contracts()
    if name not in feeds:
        raise KeyError(f"unknown feed {name!r}; known feeds: {', '.join(feeds)}")
    return feeds[name]


@dataclass(frozen=True)
class ControlParameter:
    """A control parameter of DOMAIN §7.2 (contracts/control_parameters.yaml)."""
    name: str
    scope: str
    description: str
    is_text: bool
    defaults: tuple[tuple[str, float | str], ...]  # (scope_id, default), ALL being the fallback

    def default_rows(self) -> list[tuple[str, str, float | None, str | None]]:
        """(parameter, scope_id, value, text_value) of each default."""
        return [(self.name, scope_id, None if self.is_text else float(v), str(v) if self.is_text else None)
                for scope_id, v in self.defaults]


@lru_cache(maxsize=2)
def control_parameters(path: Path = CONTROL_PARAMETERS_FILE) -> dict[str, ControlParameter]:
    """The control parameters and their defaults; the contract's `parameter` values must list them all."""
    out = {}
    for name, raw in read_yaml(path).items():
        if not re.fullmatch(r"[A-Z][A-Z0-9_]{0,62}", name):
            raise ContractError(f"control parameter {name!r} is not an allowed name")
        is_text = bool(raw.get("text", False))
        defaults = tuple((str(k), v) for k, v in (raw.get("defaults") or {}).items())
        for scope_id, v in defaults:
            if is_text != isinstance(v, str):
                raise ContractError(f"control parameter {name}: default for {scope_id} must be "
                                    + ("text" if is_text else "a number"))
        out[name] = ControlParameter(name, str(raw["scope"]), str(raw.get("description", "")), is_text, defaults)
    return out
