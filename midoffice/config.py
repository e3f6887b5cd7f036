"""Settings: where things live and the knobs of a run, in one dataclass."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from midoffice.sizes import parse_bytes

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTRACTS_FILE = REPO_ROOT / "contracts" / "feeds.yaml"
CONTROL_PARAMETERS_FILE = REPO_ROOT / "contracts" / "control_parameters.yaml"
TRANSFORMS_DIR = REPO_ROOT / "transforms"
EXPECTATIONS_DIR = REPO_ROOT / "expectations"
WAREHOUSE_DDL_DIR = REPO_ROOT / "warehouse"

DEV_PSEUDONYM_KEY = "midoffice-DEVELOPMENT-ONLY-key-do-not-use-in-production"


@dataclass(frozen=True)
class Settings:
    """Everything a stage needs to know to find its inputs and outputs."""

    landing: Path
    home: Path
    reporting_currency: str = "USD"
    quarantine_threshold: float = 0.01  # share of received records that fails a feed's gate
    var_scenarios: int = 250
    # DuckDB's own limit; the process also holds Python, Arrow and what DuckDB allocates outside
    # its buffer pool (~0.2-0.6 GB), so 3 GB keeps a stage's peak under 4 GB at 10M trades a day
    duckdb_memory_limit: str = "3GB"
    # What the process holds when a connection opens plus that connection's DuckDB limit: a
    # process that already holds more than 0.5 GB gives DuckDB less (duck.duckdb_memory_limit)
    memory_budget: str | None = "3.5GB"
    duckdb_threads: int = 2
    # GX (pandas) checks at most this many records of a partition, a seeded sample above it: every
    # record already went through the same rules in ingest's SQL (research: GX pandas is the
    # bottleneck, full-volume invariants belong in SQL); GX is the documented second opinion.
    gx_max_rows: int = 20_000
    extra: dict = field(default_factory=dict)
    # Where people's actions are kept (midoffice.people.store): None = the SQLite file
    # <home>/people/actions.sqlite; a postgresql:// URL on the distributed deployment, where every
    # worker must reach the same store.
    actions_url: str | None = field(default_factory=lambda: os.environ.get("MIDOFFICE_ACTIONS_URL") or None)
    # The published warehouse is a DuckLake (midoffice.lake): its catalog is the SQLite file
    # <home>/warehouse/lake.sqlite unless this names a postgresql:// database (the distributed
    # deployment), and its data files are under <home>/warehouse/lake_data/ unless lake_data names
    # a folder every worker reaches.
    lake_catalog: str | None = field(default_factory=lambda: os.environ.get("MIDOFFICE_LAKE_CATALOG") or None)
    lake_data: str | None = field(default_factory=lambda: os.environ.get("MIDOFFICE_LAKE_DATA") or None)

    # --- the folders of the flow -------------------------------------------------------
    @property
    def lake(self) -> Path:
        return self.home / "lake"

    @property
    def staged(self) -> Path:
        return self.lake / "staged"

    @property
    def quarantine(self) -> Path:
        return self.lake / "quarantine"

    @property
    def control(self) -> Path:
        """Per feed and date bookkeeping: ingest and validation results (JSON)."""
        return self.lake / "control"

    @property
    def warehouse_dir(self) -> Path:
        return self.home / "warehouse"

    @property
    def build_db(self) -> Path:
        """The single-writer working warehouse: core tables and marts before publication."""
        return self.warehouse_dir / "build.duckdb"

    @property
    def lake_catalog_file(self) -> Path:
        """The embedded lake's catalog (SQLite), when no PostgreSQL catalog is configured."""
        return self.warehouse_dir / "lake.sqlite"

    @property
    def lake_data_path(self) -> Path:
        """Where the lake's Parquet data files are."""
        return Path(self.lake_data).resolve() if self.lake_data else self.warehouse_dir / "lake_data"

    @property
    def people_dir(self) -> Path:
        """People's actions (sign-offs, worklist actions): not derived, never rebuilt; back it up."""
        return self.home / "people"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def tmp(self) -> Path:
        return self.home / "tmp"

    def staged_partition(self, feed: str, business_date: str) -> Path:
        return self.staged / feed / f"business_date={business_date}" / "data.parquet"

    def latest_staged_partition(self, feed: str, business_date: str) -> tuple[str, Path] | None:
        """(date, path) of the feed's staged partition for the date, else the latest earlier one."""
        root = self.staged / feed
        if not root.is_dir():
            return None
        dates = sorted(
            p.name.split("=", 1)[1] for p in root.iterdir()
            if p.name.startswith("business_date=") and (p / "data.parquet").is_file()
        )
        usable = [d for d in dates if d <= business_date]
        return (usable[-1], self.staged_partition(feed, usable[-1])) if usable else None

    def quarantine_partition(self, feed: str, business_date: str) -> Path:
        return self.quarantine / feed / f"business_date={business_date}" / "data.parquet"

    def control_file(self, kind: str, feed: str, business_date: str) -> Path:
        return self.control / kind / feed / f"{business_date}.json"


def default_home() -> Path:
    return Path(os.environ.get("MIDOFFICE_HOME") or "./.midoffice").resolve()


# Resource knobs a deployment sets for its machine (a bigger one than the 2-core, 24 GB one the
# defaults are for): environment variable -> Settings field.
RESOURCE_ENV = {
    "MIDOFFICE_DUCKDB_MEMORY_LIMIT": "duckdb_memory_limit",  # e.g. 12GB
    "MIDOFFICE_MEMORY_BUDGET": "memory_budget",  # e.g. 14GB, or 'none': DuckDB gets its whole limit
    "MIDOFFICE_DUCKDB_THREADS": "duckdb_threads",
}


def _resources_from_env() -> dict:
    found = {}
    for var, name in RESOURCE_ENV.items():
        value = os.environ.get(var, "").strip()
        if not value:
            continue
        try:
            if name == "duckdb_threads":
                found[name] = int(value)
                if found[name] < 1:
                    raise ValueError(value)
            elif name == "memory_budget" and value.lower() == "none":
                found[name] = None
            else:
                parse_bytes(value)
                found[name] = value
        except ValueError:
            raise ValueError(f"{var}={value!r} is not a valid {name} (e.g. 3GB, 512MB; threads: a positive integer)")
    return found


def settings_from(landing: str | Path, home: str | Path | None = None) -> Settings:
    return Settings(
        landing=Path(landing).resolve(),
        home=Path(home).resolve() if home else default_home(),
        **_resources_from_env(),
    )
