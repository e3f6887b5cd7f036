"""Client marts (DOMAIN §4.3): client_dim, client_portfolio, client_stats, and the privacy rule.

Every figure is checked against a computation of its own in plain Python from the landing files
(csv, json, pyarrow; tests/oracles/clients.py), never from the project's SQL or core tables. The
pseudonym is recomputed there with hmac/hashlib from the key the run used (the environment's, else the documented
development key of sample data).

Two runs: the shared `sample_run` (8 January dates), and `client_history`, a small generated
landing across a month end in which one client's file is scripted (segment changes twice, then
the client closes) and run through ingest → validate → build → publish directly; a clients-only
copy of it receives one snapshot late, to show that a late snapshot makes no phantom version and
that rebuilding a date range gives the same history.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections import defaultdict
from datetime import date
from pathlib import Path

import duckdb
import pytest

from conftest import published as open_lake, generate_landing
from oracles.clients import (
    TRACKED, landing_dates, read_clients, pseudonym_key, client_key, age_band, expected_history,
    expected_portfolios, expected_client_stats, STATS_FIGURES,
)


# --------------------------------------------------------------------------------------------
# helpers on the published warehouse
# --------------------------------------------------------------------------------------------
def published(home: Path):
    return open_lake(home / "warehouse" / "marts.duckdb")


def rows(con, sql: str, params=()) -> list[dict]:
    cur = con.execute(sql, list(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def close(a, b, rel=1e-9, abs_=1e-6) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def as_str(d) -> str | None:
    return None if d is None else str(d)


def dim_as_of(con, as_of: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for r in rows(con, "SELECT * FROM client_dim WHERE as_of_date = ? ORDER BY client_key, valid_from", [as_of]):
        out[r["client_key"]].append(r)
    return out


def assert_dim_matches(con, landing: Path, as_of: str) -> None:
    expected = expected_history(landing, as_of)
    actual = dim_as_of(con, as_of)
    assert set(actual) == {client_key(c) for c in expected}, as_of
    snapshot = {c["client_id"]: c for c in read_clients(landing, as_of)}
    on = date.fromisoformat(as_of)
    for client_id, versions in expected.items():
        got = actual[client_key(client_id)]
        assert [(as_str(r["valid_from"]), as_str(r["valid_to"]), r["is_current"], r["version"])
                + tuple(r[a] for a in TRACKED) for r in got] == \
               [(v["valid_from"], v["valid_to"], v["is_current"], v["version"])
                + tuple(v[a] for a in TRACKED) for v in versions], (as_of, client_id)
        c = snapshot[client_id]
        assert {(r["client_type"], r["age_band"], as_str(r["onboarding_date"])) for r in got} == \
               {(c["client_type"], age_band(c, on), c["onboarding_date"])}


def assert_scd2_shape(con) -> None:
    """Exactly one current version per client and date; versions tile time without overlap."""
    bad_current = con.execute("""
        SELECT as_of_date, client_key FROM client_dim GROUP BY ALL HAVING count(*) FILTER (WHERE is_current) <> 1
    """).fetchall()
    assert bad_current == []
    broken_chain = con.execute("""
        SELECT * FROM (
            SELECT as_of_date, client_key, version, valid_from, valid_to, is_current,
                   lead(valid_from) OVER (PARTITION BY as_of_date, client_key ORDER BY valid_from) AS next_from,
                   row_number() OVER (PARTITION BY as_of_date, client_key ORDER BY valid_from) AS n
            FROM client_dim)
        WHERE valid_to IS DISTINCT FROM next_from OR version <> n OR valid_from >= coalesce(valid_to, DATE '9999-12-31')
           OR is_current <> (valid_to IS NULL) OR valid_from > as_of_date
    """).fetchall()
    assert broken_chain == []


def text_columns(con) -> list[tuple[str, str]]:
    return con.execute("""
        SELECT table_name, column_name FROM duckdb_columns()
        WHERE database_name = current_database() AND schema_name = 'main' AND data_type = 'VARCHAR'
        ORDER BY 1, 2
    """).fetchall()


def published_text_values(home: Path) -> dict[tuple[str, str], set[str]]:
    """(table, column) -> the distinct non-null values of every text column: one query a table
    (a query a column read each table of the lake once per text column)."""
    by_table: dict[str, list[str]] = defaultdict(list)
    out: dict[tuple[str, str], set[str]] = {}
    with published(home) as con:
        for t, c in text_columns(con):
            by_table[t].append(c)
        for t, cols in by_table.items():
            lists = con.execute("SELECT " + ", ".join(f'list(DISTINCT "{c}") FILTER (WHERE "{c}" IS NOT NULL)'
                                                      for c in cols) + f' FROM "{t}"').fetchone()
            out.update({(t, c): set(values or ()) for c, values in zip(cols, lists)})
    return out


def any_inside(needles: set[str], values: dict[tuple[str, str], set[str]]) -> bool:
    """Whether any needle occurs in any value: one substring search a needle over all the values
    joined by NUL (no name, e-mail or id holds one), instead of one a needle and value."""
    haystack = "\0".join(v for vs in values.values() for v in vs)
    return any(n in haystack for n in needles)


def personal_data(landing: Path) -> tuple[set[str], set[str]]:
    """(legal names and e-mail addresses, client ids) of every client in every delivered file."""
    pii, ids = set(), set()
    for day in landing_dates(landing):
        for c in read_clients(landing, day):
            pii.update((c["legal_name"], c["email"]))
            ids.add(c["client_id"])
    return pii, ids


def assert_no_personal_data(home: Path, landing: Path) -> None:
    pii, ids = personal_data(landing)
    published_values = published_text_values(home)
    leaks = []
    if not any_inside(pii, published_values):  # the exact search below names the leaks
        published_values = {}
    for (table, column), values in published_values.items():
        for v in values:
            if any(p in v for p in pii):
                leaks.append((table, column, "personal data", v[:80]))
    assert leaks == [], leaks[:10]


def assert_no_client_ids(home: Path, landing: Path) -> None:
    _, ids = personal_data(landing)
    published_values = published_text_values(home)
    if not any_inside(ids, published_values):  # the exact search below names the leaks
        published_values = {}
    leaks = sorted({(table, column) for (table, column), values in published_values.items()
                    for v in values if v in ids or any(i in v for i in ids if len(v) > len(i))})
    assert leaks == [], f"client ids published in {leaks}"


# --------------------------------------------------------------------------------------------
# the shared sample run
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample(sample_run):
    with published(sample_run["home"]) as con:
        yield sample_run, con


def test_client_key_in_sql_is_the_hmac_whether_or_not_the_build_remembered_the_id():
    """The build computes the client file's keys once and client_key() looks them up; an id it
    did not remember gets the same HMAC from Python, on any number of threads."""

    from midoffice.pseudonym import register, remember_clients

    con = duckdb.connect(config={"threads": 2})
    register(con, pseudonym_key())
    assert remember_clients(con, "SELECT 'C' || lpad(range::VARCHAR, 6, '0') FROM range(0, 300000, 2)") == 150_000
    assert remember_clients(con, "SELECT * FROM (VALUES ('C000000'), (NULL)) ids(id)") == 0  # known, or no id
    con.execute("PRAGMA verify_parallelism")
    got = con.execute("SELECT id, client_key(id) FROM (SELECT 'C' || lpad(range::VARCHAR, 6, '0') AS id "
                      "FROM range(1000) UNION ALL SELECT NULL)").fetchall()
    assert len(got) == 1001
    assert all(key == (client_key(i) if i is not None else None) for i, key in got)


def test_client_dim_is_the_history_of_the_client_file(sample):
    run, con = sample
    for day in run["dates"]:
        assert_dim_matches(con, run["landing"], day)
    assert_scd2_shape(con)
    # the sample exercises the dimension: changes of segment and status (closures)
    last = run["dates"][-1]
    changed = con.execute("""
        SELECT count(DISTINCT client_key) FILTER (WHERE version > 1),
               count(*) FILTER (WHERE is_current AND status = 'CLOSED' AND version > 1)
        FROM client_dim WHERE as_of_date = ?""", [last]).fetchone()
    assert changed[0] >= 5 and changed[1] >= 1


def test_client_changes_is_the_snapshot_to_snapshot_log(sample):
    run, con = sample
    days = run["dates"]
    for prev, day in zip([None] + days[:-1], days):
        before = {c["client_id"]: c for c in read_clients(run["landing"], prev)} if prev else {}
        expected = {}
        for c in read_clients(run["landing"], day):
            old = before.get(c["client_id"])
            changed = [a for a in TRACKED if old and old[a] != c[a]]
            if old is None or changed:
                expected[client_key(c["client_id"])] = ("NEW" if old is None else "CHANGED",
                                                         None if old is None else ",".join(changed))
        got = {r[0]: (r[1], r[2]) for r in con.execute(
            "SELECT client_key, change, changed_attributes FROM client_changes WHERE business_date = ?", [day]).fetchall()}
        assert got == expected, day


def test_client_portfolio_against_positions_prices_and_targets(sample):
    run, con = sample
    for day in (run["dates"][0], run["dates"][-1]):
        expected = expected_portfolios(run["landing"], day)
        got = {r["client_key"]: r for r in rows(con, "SELECT * FROM client_portfolio WHERE as_of_date = ?", [day])}
        assert set(got) == set(expected)
        for key, e in expected.items():
            g = got[key]
            for col in ("aum_usd", "hhi", "effective_n", "top_holding_share", "hhi_max"):
                assert close(g[col], e[col]), (day, key, col, g[col], e[col])
            for col in ("segment", "relationship_manager_id", "risk_profile", "n_positions", "n_asset_classes",
                        "risk_profile_breach"):
                assert g[col] == e[col], (day, key, col)
        # the targets bite, on the exceptions: some portfolios are more concentrated than their
        # profile allows, fewer than one client in ten (a control that flags most clients is noise)
        assert 0 < sum(bool(e["risk_profile_breach"]) for e in expected.values()) < 0.1 * len(expected)


def test_client_limits_name_segment_and_relationship_manager(sample):
    """DOMAIN §12: a CLIENT limit's row names the client's segment and relationship manager (client
    file as of the date) beside its client_key; other scopes leave them empty."""
    run, con = sample
    for day in (run["dates"][0], run["dates"][-1]):
        latest = max(d for d in landing_dates(run["landing"]) if d <= day)
        profile = {client_key(c["client_id"]): (c["segment"], c["relationship_manager_id"])
                   for c in read_clients(run["landing"], latest)}
        got = rows(con, "SELECT scope_type, scope_id, segment, relationship_manager_id FROM risk_limit_utilisation "
                        "WHERE as_of_date = ?", [day])
        clients = [r for r in got if r["scope_type"] == "CLIENT"]
        assert clients  # the sample has client limits
        for r in clients:
            assert (r["segment"], r["relationship_manager_id"]) == profile[r["scope_id"]], (day, r["scope_id"])
        assert all(r["segment"] is None and r["relationship_manager_id"] is None
                   for r in got if r["scope_type"] != "CLIENT")


def test_client_stats_against_the_client_file(sample):
    run, con = sample
    for day in (run["dates"][0], run["dates"][-1]):
        assert_client_stats(con, run["landing"], day)
    day = run["dates"][-1]
    totals = con.execute("SELECT clients_new, clients_churned FROM client_stats WHERE as_of_date = ? "
                         "AND segment = 'ALL' AND country = 'ALL' AND age_band = 'ALL'", [day]).fetchone()
    assert totals[0] > 0 and totals[1] > 0  # the sample has onboarding and churn to show
    # Small cells (DOMAIN §10.4): the sample has cells of a single client, and they show nothing;
    # the totals count every client, suppressed cells included (computed before suppression)
    cells = rows(con, "SELECT * FROM client_stats WHERE as_of_date = ? AND age_band <> 'ALL'", [day])
    suppressed = [r for r in cells if r["suppressed"]]
    assert suppressed and all(r[f] is None for r in suppressed for f in STATS_FIGURES)
    assert all(r["clients"] >= 5 for r in cells if not r["suppressed"])
    firm = con.execute("SELECT clients FROM client_stats WHERE as_of_date = ? AND segment = 'ALL'", [day]).fetchone()[0]
    assert firm > sum(r["clients"] for r in cells if not r["suppressed"])
    assert firm == len(read_clients(run["landing"], day))


def assert_client_stats(con, landing: Path, day: str) -> None:
    expected = expected_client_stats(landing, day)
    got = {(r["segment"], r["country"], r["age_band"]): r
           for r in rows(con, "SELECT * FROM client_stats WHERE as_of_date = ?", [day])}
    assert set(got) == set(expected), day
    for key, e in expected.items():
        g = got[key]
        assert str(g["month"]) == day[:8] + "01"
        assert g["suppressed"] == e["suppressed"], (day, key)
        for col in ("clients", "clients_active", "clients_active_at_month_start", "clients_new",
                    "clients_churned", "touches", "deals"):
            assert g[col] == e[col], (day, key, col, g[col], e[col])
        for col in ("churn_rate", "aum_usd", "revenue_usd", "revenue_per_client", "median_client_hhi"):
            assert close(g[col], e[col]), (day, key, col, g[col], e[col])


def test_no_personal_data_in_any_published_table(sample):
    run, con = sample
    assert_no_personal_data(run["home"], run["landing"])
    forbidden = con.execute("""
        SELECT table_name, column_name FROM duckdb_columns()
        WHERE database_name = current_database() AND schema_name = 'main'
          AND (column_name IN ('client_id', 'legal_name', 'email') OR column_name LIKE '%birth%')
    """).fetchall()
    assert forbidden == []


def test_no_client_id_in_any_published_table(sample):
    """Analysts see client_key, never client_id: in every published table (risk marts included)."""
    run, _ = sample
    assert_no_client_ids(run["home"], run["landing"])


def test_client_key_is_a_keyed_pseudonym(sample):
    run, con = sample
    keys = {k for (k,) in con.execute("SELECT DISTINCT client_key FROM client_dim").fetchall()}
    _, ids = personal_data(run["landing"])
    assert keys == {client_key(i) for i in ids}
    unkeyed = {hashlib.sha256(i.encode()).hexdigest()[:20] for i in ids}
    assert not keys & unkeyed  # not a plain hash that anyone could recompute from an id


# --------------------------------------------------------------------------------------------
# a scripted client history across a month end, run directly (no Airflow)
# --------------------------------------------------------------------------------------------
HISTORY_DATES = ["2026-01-28", "2026-01-29", "2026-01-30", "2026-02-02", "2026-02-03"]
# the scripted client: RETAIL → PRIVATE → (re-delivered unchanged with a new updated_at) → RETAIL → CLOSED
SCRIPT = {
    "2026-01-28": {"segment": "RETAIL", "status": "ACTIVE"},
    "2026-01-29": {"segment": "PRIVATE", "status": "ACTIVE"},
    "2026-01-30": {"segment": "PRIVATE", "status": "ACTIVE"},
    "2026-02-02": {"segment": "RETAIL", "status": "ACTIVE"},
    "2026-02-03": {"segment": "RETAIL", "status": "CLOSED"},
}


def rewrite_clients(landing: Path, day: str, clients: list[dict]) -> None:
    """Deliver a different client file for the date, with a manifest that matches it."""
    body = "".join(json.dumps(c, separators=(",", ":")) + "\n" for c in clients).encode()
    (landing / day / "clients.jsonl").write_bytes(body)
    manifest_path = landing / day / "_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["feeds"]["clients"].update(rows=len(clients), sha256=hashlib.sha256(body).hexdigest())
    manifest_path.write_text(json.dumps(manifest, indent=1))


def script_client(landing: Path) -> str:
    first = read_clients(landing, HISTORY_DATES[0])
    chosen = next(c for c in first if c["client_type"] == "INDIVIDUAL" and c["status"] == "ACTIVE"
                  and c["segment"] == "RETAIL")
    fixed = {a: chosen[a] for a in TRACKED}
    for i, day in enumerate(HISTORY_DATES):
        clients = read_clients(landing, day)
        for c in clients:
            if c["client_id"] == chosen["client_id"]:
                c.update(fixed)
                c.update(SCRIPT[day])
                c["updated_at"] = f"{day}T0{i}:00:00Z"
        rewrite_clients(landing, day, clients)
    return chosen["client_id"]


def run_direct(landing: Path, home: Path, dates: list[str], feeds: list[str] | None = None,
               build: bool = True) -> None:
    """ingest → validate and gate → build, per date, as the DAG's tasks do; then one publish.

    A publish takes every date built since the last one (core.unpublished_dates): one version
    for the dates, not one a date (each publish rewrites the lake's catalog: seconds a date). A
    date published before is a restatement: its reason is recorded first. Only the alerts mart
    reads which version published a date, and no test of these runs reads it."""
    from midoffice.config import settings_from
    from midoffice.contracts import ingest_order
    from midoffice.ingest import ingest_feed
    from midoffice import lake
    from midoffice.publish import publish
    from midoffice.restate import record_reason
    from midoffice.stages import validate_and_gate
    from midoffice.warehouse import build_warehouse

    settings = settings_from(landing, home)
    for day in dates:
        run_id = f"test-{day}"
        for feed in feeds if feeds is not None else ingest_order():
            ingest_feed(settings, day, feed, run_id)
            validate_and_gate(settings, day, feed, run_id)
        if build:
            build_warehouse(settings, day, run_id)
    if build and dates:
        published = lake.published_dates(settings)
        restated = [day for day in dates if day in published]
        if restated:  # running a date again is a restatement: its reason first
            record_reason(settings, restated, "test rerun of a published date", by="test")
        publish(settings, dates[-1], f"test-{dates[-1]}")


def lineage_free(con, table: str) -> list[tuple]:
    cols = [c for (c,) in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() AND table_name = ? "
        "AND column_name NOT IN ('run_id', 'loaded_at') ORDER BY column_index", [table]).fetchall()]
    return con.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY ALL").fetchall()


def month_end_run(tmp_path_factory) -> dict:
    """The scripted landing across the month end, run through every stage; made once per session
    and shared with test_cost_income (the second module to ask finds it on disk)."""
    root = tmp_path_factory.getbasetemp() / "month_end_run"
    done = root / "done.json"
    if not done.is_file():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        landing = generate_landing(root / "landing", HISTORY_DATES[0], len(HISTORY_DATES), 200, seed=11)
        scripted = script_client(landing)
        run_direct(landing, root / "home", HISTORY_DATES)
        done.write_text(json.dumps({"client_id": scripted}))
    return {"landing": root / "landing", "home": root / "home", "root": root, "dates": list(HISTORY_DATES),
            "client_id": json.loads(done.read_text())["client_id"]}


@pytest.fixture(scope="module")
def client_history(tmp_path_factory, airflow_home):
    return month_end_run(tmp_path_factory)


def test_scripted_client_has_four_versions(client_history):
    h = client_history
    with published(h["home"]) as con:
        got = rows(con, "SELECT * FROM client_dim WHERE as_of_date = ? AND client_key = ? ORDER BY version",
                   [HISTORY_DATES[-1], client_key(h["client_id"])])
        log = con.execute("SELECT business_date FROM client_changes WHERE client_key = ? ORDER BY 1",
                          [client_key(h["client_id"])]).fetchall()
    assert [(str(r["valid_from"]), as_str(r["valid_to"]), r["segment"], r["status"], r["is_current"]) for r in got] == [
        ("2026-01-28", "2026-01-29", "RETAIL", "ACTIVE", False),
        ("2026-01-29", "2026-02-02", "PRIVATE", "ACTIVE", False),  # 01-30 re-delivered it unchanged
        ("2026-02-02", "2026-02-03", "RETAIL", "ACTIVE", False),
        ("2026-02-03", None, "RETAIL", "CLOSED", True),
    ]
    assert [str(d) for (d,) in log] == ["2026-01-28", "2026-01-29", "2026-02-02", "2026-02-03"]


def test_history_run_matches_the_files_across_the_month_end(client_history):
    h = client_history
    with published(h["home"]) as con:
        for day in HISTORY_DATES:
            assert_dim_matches(con, h["landing"], day)
        assert_scd2_shape(con)
        for day in ("2026-01-30", "2026-02-02", "2026-02-03"):
            assert_client_stats(con, h["landing"], day)
        # the scripted client churned in February, from an ACTIVE start of month
        churned = con.execute("""
            SELECT clients_churned FROM client_stats WHERE as_of_date = '2026-02-03' AND segment = 'RETAIL'
              AND country = 'ALL' AND age_band = 'ALL'
        """).fetchone()[0]
    assert churned >= 1
    assert_no_personal_data(h["home"], h["landing"])


def test_rebuilding_a_date_range_gives_the_same_history(client_history):
    h = client_history
    with published(h["home"]) as con:
        before = {t: lineage_free(con, t) for t in ("client_changes", "client_dim", "client_stats", "client_portfolio")}
    run_direct(h["landing"], h["home"], ["2026-01-30", "2026-02-02"], feeds=[])
    with published(h["home"]) as con:
        after = {t: lineage_free(con, t) for t in before}
    assert after == before


def test_late_snapshot_makes_no_phantom_version(client_history):
    """The 01-29 client file (the scripted change) arrives only after 01-30 was built: 01-30 logs
    the change against 01-28, the late 01-29 logs it again; the history as of the next date must
    be the on-time one (clients-only runs: the other marts are skipped)."""
    h = client_history
    root = h["root"] / "late"
    shutil.rmtree(root, ignore_errors=True)
    landing = root / "landing"
    shutil.copytree(h["landing"], landing)
    held_back = root / "held_back_clients.jsonl"
    shutil.move(landing / "2026-01-29" / "clients.jsonl", held_back)
    home = root / "home"
    key = client_key(h["client_id"])
    run_direct(landing, home, ["2026-01-28", "2026-01-29", "2026-01-30"], feeds=["clients"])
    with published(home) as con:
        assert con.execute("SELECT count(*) FROM client_dim WHERE as_of_date = '2026-01-29'").fetchone()[0] == 0
    shutil.move(held_back, landing / "2026-01-29" / "clients.jsonl")
    run_direct(landing, home, ["2026-01-29", "2026-02-02"], feeds=["clients"])
    with published(home) as late, published(h["home"]) as on_time:
        seen = late.execute("SELECT business_date FROM client_changes WHERE client_key = ? ORDER BY 1", [key]).fetchall()
        assert [str(d) for (d,) in seen] == ["2026-01-28", "2026-01-29", "2026-01-30", "2026-02-02"]
        for day in ("2026-01-29", "2026-02-02"):
            sql = "SELECT * EXCLUDE (run_id, loaded_at) FROM client_dim WHERE as_of_date = ? ORDER BY ALL"
            assert late.execute(sql, [day]).fetchall() == on_time.execute(sql, [day]).fetchall(), day
