"""The client marts (client_dim, client_portfolio, client_stats) in plain Python from the delivered
files.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import os
import statistics
from collections import defaultdict
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq


TRACKED = ("segment", "country", "kyc_status", "risk_profile", "relationship_manager_id", "status")


SUPPORT_FUNCTIONS = ("OPERATIONS", "TECHNOLOGY", "COMPLIANCE", "SALES")


# --------------------------------------------------------------------------------------------
# reading the landing files (the senders' side, independent of the pipeline)
# --------------------------------------------------------------------------------------------
def landing_dates(landing: Path) -> list[str]:
    return sorted(p.name for p in landing.iterdir() if p.is_dir() and (p / "_manifest.json").is_file())


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [{k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(fh)]


def targets_in_force(rows: list[dict], as_of: str) -> dict[str, dict]:
    """target_id -> the delivered targets' milestone in force on the date (latest effective_date on
    or before it, an empty one being in force from the start), with the path's baseline (first
    milestone), final value and next milestone (DOMAIN §7.3, §12). A target whose first milestone
    is still to come is not in force."""
    paths: dict[str, list[dict]] = defaultdict(list)
    for r in rows:  # an empty effective_date (None or "", as the reader gives it) is in force from the start
        paths[r["target_id"]].append(dict(r, effective_date=r.get("effective_date") or None))
    out = {}
    for tid, path in paths.items():
        path = sorted(path, key=lambda r: r["effective_date"] or "")
        started = [r for r in path if (r["effective_date"] or "") <= as_of]
        if not started:
            continue
        coming = [r for r in path if (r["effective_date"] or "") > as_of]
        out[tid] = dict(started[-1], baseline=float(path[0]["target_value"]), final=float(path[-1]["target_value"]),
                        next_value=float(coming[0]["target_value"]) if coming else None,
                        next_date=coming[0]["effective_date"] if coming else None)
    return out


def read_clients(landing: Path, day: str) -> list[dict]:
    path = landing / day / "clients.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def pseudonym_key() -> bytes:
    from midoffice.config import DEV_PSEUDONYM_KEY

    return (os.environ.get("MIDOFFICE_PSEUDONYM_KEY") or DEV_PSEUDONYM_KEY).encode()


def client_key(client_id: str) -> str:
    """HMAC-SHA256 of the client id with the run's key, first 20 hex digits (DOMAIN §4.3)."""
    return hmac.new(pseudonym_key(), client_id.encode(), hashlib.sha256).hexdigest()[:20]


def age_band(client: dict, on: date) -> str:
    if client["client_type"] != "INDIVIDUAL":
        return client["client_type"]
    born = date.fromisoformat(client["birth_or_incorporation_date"])
    age = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    return "<30" if age < 30 else "30-44" if age < 45 else "45-59" if age < 60 else "60+"


def fx_as_known(landing: Path, as_of: str) -> dict[str, list[tuple[str, float]]]:
    """currency -> [(rate_date, usd_per_unit)] sorted, a later delivery of the same date winning."""
    rates: dict[tuple[str, str], float] = {}
    for day in landing_dates(landing):
        if day <= as_of:
            for r in read_csv(landing / day / "fx_rates.csv"):
                rates[(r["currency"], r["rate_date"])] = float(r["usd_per_unit"])
    by_ccy: dict[str, list] = defaultdict(list)
    for (ccy, d), v in sorted(rates.items()):
        by_ccy[ccy].append((d, v))
    return by_ccy


def rate_on(fx: dict, currency: str, on: str) -> float:
    candidates = [v for d, v in fx[currency] if d <= on]
    return candidates[-1]


def current_trades(landing: Path, as_of: str) -> dict[str, dict]:
    """Each trade's current version as of the date: highest version delivered up to it."""
    current: dict[str, tuple] = {}
    for day in landing_dates(landing):
        if day > as_of:
            continue
        for t in read_csv(landing / day / "trades.csv"):
            rank = (int(t["version"]), day)
            if t["trade_id"] not in current or rank > current[t["trade_id"]][0]:
                current[t["trade_id"]] = (rank, t)
    return {k: v[1] for k, v in current.items()}


def client_revenue(landing: Path, as_of: str, start: str) -> dict[str, float]:
    """client_id -> commission (USD, fx of the trade date) of non-cancelled trades dated start..as_of."""
    fx = fx_as_known(landing, as_of)
    revenue: dict[str, float] = defaultdict(float)
    for t in current_trades(landing, as_of).values():
        if t["event_type"] != "CANCEL" and start <= t["trade_date"] <= as_of:
            revenue[t["client_id"]] += float(t["commission"]) * rate_on(fx, t["currency"], t["trade_date"])
    return revenue


def touches_in(landing: Path, as_of: str, start: str) -> list[dict]:
    return [a for day in landing_dates(landing) if day <= as_of
            for a in read_csv(landing / day / "client_activity.csv") if start <= a["activity_date"] <= as_of]


# --------------------------------------------------------------------------------------------
# the expected marts
# --------------------------------------------------------------------------------------------
def expected_history(landing: Path, as_of: str) -> dict[str, list[dict]]:
    """client_id -> its versions as of the date: a new one whenever a tracked attribute differs
    from the client's previous snapshot; valid_to is the next version's valid_from."""
    versions: dict[str, list[dict]] = defaultdict(list)
    for day in landing_dates(landing):
        if day > as_of:
            continue
        for c in read_clients(landing, day):
            attrs = {a: c[a] for a in TRACKED}
            mine = versions[c["client_id"]]
            if not mine or {a: mine[-1][a] for a in TRACKED} != attrs:
                mine.append({"valid_from": day, **attrs})
    for mine in versions.values():
        for i, v in enumerate(mine):
            v["version"] = i + 1
            v["valid_to"] = mine[i + 1]["valid_from"] if i + 1 < len(mine) else None
            v["is_current"] = v["valid_to"] is None
    return versions


def expected_portfolios(landing: Path, as_of: str) -> dict[str, dict]:
    days = [d for d in landing_dates(landing) if d <= as_of]
    closes: dict[str, tuple] = {}
    for day in days:
        table = pq.read_table(landing / day / "prices.parquet").to_pylist()
        for p in table:
            price_date = str(p["price_date"])
            rank = (price_date, day)
            if price_date <= as_of and (p["instrument_id"] not in closes or rank > closes[p["instrument_id"]][0]):
                closes[p["instrument_id"]] = (rank, float(p["close_price"]))
    fx = fx_as_known(landing, as_of)
    instruments = {i["instrument_id"]: i for i in read_csv(landing / days[-1] / "instruments.csv")}
    targets = {t["scope_id"]: float(t["target_value"])
               for t in targets_in_force(read_csv(landing / days[-1] / "targets.csv"), as_of).values()
               if t["metric"] == "CLIENT_HHI_MAX"}
    clients = {c["client_id"]: c for c in read_clients(landing, days[-1])}
    quantity: dict[tuple[str, str], float] = defaultdict(float)
    for p in read_csv(landing / as_of / "positions.csv"):
        if p["holder_type"] == "CLIENT":
            quantity[(p["holder_id"], p["instrument_id"])] += float(p["quantity"])
    values: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for (client, inst), q in quantity.items():
        ccy = instruments[inst]["currency"]
        values[client].append((inst, q * closes[inst][1] * rate_on(fx, ccy, as_of)))
    out = {}
    for client, holdings in values.items():
        gross = sum(abs(v) for _, v in holdings)
        shares = [abs(v) / gross for _, v in holdings]
        # a fund counts as diversified: its share squared times the UCITS 5/10/40 bound on a
        # fund's own HHI (4 issuers at 10 %, 12 at 5 %)
        ucits_hhi = 4 * 0.10 ** 2 + 12 * 0.05 ** 2
        hhi = sum(s * s * (ucits_hhi if instruments[i]["asset_class"] == "FUND" else 1.0)
                  for (i, _), s in zip(holdings, shares))
        profile = clients[client]["risk_profile"]
        hhi_max = targets.get(profile)
        out[client_key(client)] = {
            "client_id": client, "segment": clients[client]["segment"], "risk_profile": profile,
            "relationship_manager_id": clients[client]["relationship_manager_id"],
            "aum_usd": sum(v for _, v in holdings), "n_positions": len(holdings),
            "n_asset_classes": len({instruments[i]["asset_class"] for i, _ in holdings}),
            "hhi": hhi, "effective_n": 1 / hhi, "top_holding_share": max(shares),
            "hhi_max": hhi_max, "risk_profile_breach": None if hhi_max is None else hhi > hhi_max,
        }
    return out


def status_at_month_start(landing: Path, client_id: str, month_start: str, onboarded: str) -> str | None:
    """The client's status just before the month; if the landing starts inside the month, its
    first known status when it was onboarded before the month."""
    before = [d for d in landing_dates(landing) if d < month_start]
    for day in reversed(before):
        for c in read_clients(landing, day):
            if c["client_id"] == client_id:
                return c["status"]
    if onboarded < month_start:
        for day in landing_dates(landing):
            for c in read_clients(landing, day):
                if c["client_id"] == client_id:
                    return c["status"]
    return None


def expected_client_stats(landing: Path, as_of: str) -> dict[tuple, dict]:
    on = date.fromisoformat(as_of)
    month_start = on.replace(day=1).isoformat()
    portfolios = expected_portfolios(landing, as_of)
    revenue = client_revenue(landing, as_of, month_start)
    touches: dict[str, list] = defaultdict(list)
    for a in touches_in(landing, as_of, month_start):
        touches[a["client_id"]].append(a)
    # the month-start status, from the snapshots before the month (one pass, not per client)
    start_status: dict[str, str] = {}
    first_status: dict[str, str] = {}
    for day in landing_dates(landing):
        for c in read_clients(landing, day):
            first_status.setdefault(c["client_id"], c["status"])
            if day < month_start:
                start_status[c["client_id"]] = c["status"]
    groups: dict[tuple, dict] = {}
    for c in read_clients(landing, as_of):
        cell = (c["segment"], c["country"], age_band(c, on))
        was = start_status.get(c["client_id"])
        if was is None and c["onboarding_date"] < month_start:
            was = first_status.get(c["client_id"])
        p = portfolios.get(client_key(c["client_id"]))
        # the client counts in its cell, its segment's total and the firm's: totals come from the
        # clients, before any cell is suppressed
        for key in (cell, (cell[0], "ALL", "ALL"), ("ALL", "ALL", "ALL")):
            g = groups.setdefault(key, {"clients": 0, "clients_active": 0, "clients_active_at_month_start": 0,
                                        "clients_new": 0, "clients_churned": 0, "aum_usd": 0.0, "revenue_usd": 0.0,
                                        "hhis": [], "touches": 0, "deals": 0})
            g["clients"] += 1
            g["clients_active"] += c["status"] == "ACTIVE"
            g["clients_active_at_month_start"] += was == "ACTIVE"
            g["clients_new"] += c["onboarding_date"] >= month_start
            g["clients_churned"] += c["status"] == "CLOSED" and was != "CLOSED"
            if p:
                g["aum_usd"] += p["aum_usd"]
                g["hhis"].append(p["hhi"])
            g["revenue_usd"] += revenue.get(c["client_id"], 0.0)
            g["touches"] += len(touches[c["client_id"]])
            g["deals"] += sum(a["outcome"] == "DEAL" for a in touches[c["client_id"]])
    smallest = min_cell_clients(landing, as_of)
    for g in groups.values():
        g["churn_rate"] = g["clients_churned"] / g["clients_active_at_month_start"] if g["clients_active_at_month_start"] else None
        g["revenue_per_client"] = g["revenue_usd"] / g["clients_active"] if g["clients_active"] else None
        g["median_client_hhi"] = statistics.median(g.pop("hhis")) if g["hhis"] else None
        g["suppressed"] = g["clients"] < smallest
        if g["suppressed"]:  # DOMAIN §10.4: no figure of a row of fewer than MIN_CELL_CLIENTS clients
            for figure in STATS_FIGURES:
                g[figure] = None
    return groups


STATS_FIGURES = ("clients", "clients_active", "clients_active_at_month_start", "clients_new", "clients_churned",
                 "churn_rate", "aum_usd", "revenue_usd", "revenue_per_client", "median_client_hhi", "touches", "deals")


def min_cell_clients(landing: Path, as_of: str) -> float:
    """MIN_CELL_CLIENTS as delivered on the date (scope ALL), else the documented default."""
    return all_scope_parameter(landing, as_of, "MIN_CELL_CLIENTS")


def all_scope_parameter(landing: Path, as_of: str, name: str) -> float:
    """A scope-ALL control parameter of the latest delivery up to the date, else the documented default."""
    import yaml

    for day in sorted((d for d in landing_dates(landing) if d <= as_of), reverse=True):
        path = landing / day / "control_parameters.csv"
        if path.exists():
            for r in read_csv(path):
                if r["parameter"] == name and r["scope_id"] == "ALL" and r["value"] is not None:
                    return float(r["value"])
            break
    defaults = yaml.safe_load((Path(__file__).resolve().parents[2] / "contracts" / "control_parameters.yaml").read_text())
    return float(defaults[name]["defaults"]["ALL"])
