"""Front-to-back reconciliation and settlement efficiency (DOMAIN §4.4) against the feed files.

The oracle (tests/oracles/recon.py) is written from the contract, separately from the SQL, and works the other way
round: it replays the landing files date by date in plain Python and carries each break's
first_seen_date from the previous business date (the SQL recomputes it from change dates). Both
must agree on every row of every date.

Two data sets: a hand-made landing (a few trades, each telling one story: a break of every kind
that ages over several business dates, across a weekend, and then resolves), and the shared
generated sample (`sample_run`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from conftest import published, generate_landing
from midoffice.restate import record_reason
from oracles.recon import BREAKS, break_age, read_csv, recon_history, summary_oracle, efficiency_oracle

STATUSES = ["BO_ONLY", "AWAITING_BO", "FO_ONLY", "VERSION_BREAK", "QTY_BREAK", "AMOUNT_BREAK", "MATCHED"]
LINEAGE = ("run_id", "loaded_at")


# --- reading the marts ---------------------------------------------------------------------------

@contextmanager
def reading(db: Path | duckdb.DuckDBPyConnection):
    """A connection to the published lake of `db` for a whole check (opening one loads the lake's
    extensions and attaches the catalog: ~0.3 s, paid once a check instead of once a date), or
    the connection `db` already is."""
    if isinstance(db, duckdb.DuckDBPyConnection):
        yield db
        return
    con = published(db)
    try:
        yield con
    finally:
        con.close()


def query(db: Path | duckdb.DuckDBPyConnection, sql: str, params=()) -> list[dict]:
    with reading(db) as con:
        cur = con.execute(sql, list(params))
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]


def recon_mart(db: Path | duckdb.DuckDBPyConnection, as_of: str) -> dict[str, dict]:
    rows = query(db, "SELECT * EXCLUDE (run_id, loaded_at) FROM ops_trade_recon WHERE as_of_date = ?", [as_of])
    for r in rows:
        r["first_seen_date"] = str(r["first_seen_date"]) if r["first_seen_date"] else None
    return {r["trade_id"]: r for r in rows}


def recon_marts(db: Path, dates: list[str]) -> dict[str, dict[str, dict]]:
    """recon_mart of every date, through one connection."""
    with reading(db) as con:
        return {d: recon_mart(con, d) for d in dates}


def close(a, b, rel=1e-9, abs_=1e-6) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def check_recon(db: Path, history: dict[str, dict[str, dict]]) -> None:
    marts = recon_marts(db, list(history))
    for d, expected in history.items():
        got = marts[d]
        assert set(got) == set(expected), (d, sorted(set(got) ^ set(expected))[:10])
        for tid, e in expected.items():
            g = got[tid]
            assert (g["status"], g["first_seen_date"], g["age_bd"], g["age_bucket"]) == \
                (e["status"], e["first_seen_date"], e["age_bd"], e["age_bucket"]), (d, tid, g, e)
            assert (g["book"], g["front_version"], g["settlement_id"], g["back_version"]) == \
                (e["book"], e["front_version"], e["settlement_id"], e["back_version"]), (d, tid)
            assert close(g["quantity_diff"], e["quantity_diff"]) and close(g["amount_diff"], e["amount_diff"], abs_=1e-6)
            assert close(g["notional_usd"], e["notional_usd"]), (d, tid)


def check_summary(db: Path, history: dict[str, dict[str, dict]]) -> None:
    with reading(db) as con:
        marts = {d: query(con, "SELECT * FROM ops_recon_summary WHERE as_of_date = ?", [d]) for d in history}
    for d, rows in history.items():
        expected = summary_oracle(rows)
        got = {(r["book"], r["status"], r["age_bucket"]): r for r in marts[d]}
        assert set(got) == set(expected), d
        for key, e in expected.items():
            g = got[key]
            assert g["trades"] == e["trades"] and close(g["notional_usd"], e["notional_usd"], abs_=1e-4), (d, key)
            assert close(g["match_rate"], e["match_rate"]), (d, key)
            assert g["status_order"] == STATUSES.index(key[1]) + 1
            assert g["is_break"] == (key[1] in BREAKS)


def check_efficiency(db: Path, landing: Path, dates: list[str]) -> None:
    fields = ["due", "settled_on_time", "settled_late", "failed", "partial", "pending"]
    ratios = ["efficiency_count", "efficiency_value", "due_amount", "settled_on_time_amount",
              "due_amount_usd", "settled_on_time_amount_usd", "avg_fail_age_bd"]
    with reading(db) as con:
        marts = {d: query(con, "SELECT * FROM ops_settlement_efficiency WHERE as_of_date = ?", [d]) for d in dates}
    for d in dates:
        expected = efficiency_oracle(landing, d)
        got = {(str(r["intended_settle_date"]), r["custodian"], r["currency"]): r for r in marts[d]}
        assert set(got) == set(expected), d
        for key, e in expected.items():
            assert {f: got[key][f] for f in fields} == {f: e[f] for f in fields}, (d, key)
            for f in ratios:
                assert close(got[key][f], e[f], abs_=1e-4), (d, key, f)


def check_incremental_equals_full(settings, dates: list[str], chunked_every: int = 1) -> None:
    """The recon as built (carried from the previous date where possible) has exactly the rows,
    bit for bit, that evaluating every trade of the window from the core tables gives, whole and
    in three chunks of trades (as a date with many trades is built): in chunks on every
    `chunked_every`-th date and the last."""
    from midoffice.models import load_models

    model = next(m for m in load_models() if m.name == "ops_trade_recon")
    sql, state = model.sql, ", ".join(model.state_columns)  # the query gives each trade's state
    con = duckdb.connect(str(settings.build_db), read_only=True)
    try:
        con.execute("SET VARIABLE carry_from_date = NULL")
        for i, d in enumerate(dates):
            con.execute("SET VARIABLE as_of_date = CAST(? AS DATE)", [d])
            built = f"SELECT {state} FROM main.ops_trade_recon WHERE as_of_date = DATE '{d}'"
            n = con.execute(f"SELECT count(*) FROM ({built})").fetchone()[0]
            assert n > 0, d
            # the build's marts read a date through ops_trade_recon_between(d, d): the view's rows
            view, on = (f"SELECT * FROM main.ops_trade_recon WHERE as_of_date = DATE '{d}'",
                        f"SELECT * FROM main.ops_trade_recon_between(DATE '{d}', DATE '{d}')")
            assert con.execute(f"SELECT (SELECT count(*) FROM ({view} EXCEPT ALL {on})), "
                               f"(SELECT count(*) FROM ({on} EXCEPT ALL {view}))").fetchone() == (0, 0), d
            in_chunks = i % chunked_every == 0 or i == len(dates) - 1
            for chunks in (1, 3) if in_chunks else (1,):
                con.execute(f"SET VARIABLE chunk_count = {chunks}")
                for chunk in range(chunks):
                    con.execute(f"SET VARIABLE chunk = {chunk}")
                    con.execute(f"CREATE OR REPLACE TEMP TABLE full_recon AS {sql}" if chunk == 0
                                else f"INSERT INTO full_recon {sql}")
                only_built, only_full = con.execute(
                    f"SELECT (SELECT count(*) FROM ({built} EXCEPT ALL SELECT * FROM full_recon)), "
                    f"(SELECT count(*) FROM (SELECT * FROM full_recon EXCEPT ALL {built}))").fetchone()
                assert (only_built, only_full) == (0, 0), (d, chunks, only_built, only_full)
    finally:
        con.close()


def carried_dates(settings, dates: list[str]) -> list[str]:
    """The dates whose recon a build now would carry from the previous date's rows (those are
    current: built after every load of a date up to theirs)."""
    from midoffice.models import load_models
    from midoffice.warehouse import carry_from_date

    model = next(m for m in load_models() if m.name == "ops_trade_recon")
    con = duckdb.connect(str(settings.build_db), read_only=True)
    try:
        return [d for d in dates if carry_from_date(con, model, d)]
    finally:
        con.close()


# --- a hand-made landing: one story per trade --------------------------------------------------

DAYS = ["2026-03-04", "2026-03-05", "2026-03-06", "2026-03-09", "2026-03-10",   # Wed .. Tue, a weekend
        "2026-03-11", "2026-03-12", "2026-03-13"]                               # inside
# A holiday of EUR's settlement calendar (not FIRM's: a business date like any other), added to
# every date's calendars.csv: T06's EUR break ages one business day less across it.
EUR_HOLIDAY = "2026-03-09"
RECON_FEEDS = ["books", "instruments", "clients", "fx_rates", "trades", "settlements", "calendars"]


class Story:
    """Trade and settlement events of the hand-made landing, by delivery day index."""

    def __init__(self, book: str, client: str, usd_inst: str, eur_inst: str):
        self.book, self.client, self.usd, self.eur = book, client, usd_inst, eur_inst
        self.trades: dict[int, list[dict]] = defaultdict(list)
        self.settlements: dict[int, list[dict]] = defaultdict(list)

    def trade(self, day: int, tid: str, version: int, event: str, trade_day: int, settle_day: int,
              qty: int, price: float, eur: bool = False) -> None:
        self.trades[day].append({
            "trade_id": tid, "version": version, "event_type": event, "trade_date": DAYS[trade_day],
            "settle_date": DAYS[settle_day], "book": self.book, "trader_id": "TRD-TEST", "client_id": self.client,
            "instrument_id": self.eur if eur else self.usd, "side": "BUY", "quantity": qty, "price": price,
            "currency": "EUR" if eur else "USD", "commission": round(qty * price * 0.0005, 2), "venue": "XTST",
            "exec_timestamp": f"{DAYS[trade_day]}T10:00:00Z"})

    def settle(self, day: int, sid: str, tid: str, version: int, qty: int, amount: float, intended_day: int,
               status: str, actual_day: int | None = None, settled: int = 0, eur: bool = False) -> None:
        self.settlements[day].append({
            "settlement_id": sid, "trade_id": tid, "trade_version": version, "quantity": qty,
            "settlement_amount": amount, "currency": "EUR" if eur else "USD",
            "intended_settle_date": DAYS[intended_day],
            "actual_settle_date": DAYS[actual_day] if actual_day is not None else "",
            "status": status, "settled_quantity": settled,
            "fail_reason": "SSI_MISSING" if status == "FAILED" else "",
            "custodian": "EUROCLEAR" if eur else "BNY_MELLON"})


def write_story(story: Story) -> None:
    s = story
    # T01 matched from the start, settled on time
    s.trade(0, "T01", 1, "NEW", 0, 2, 100, 10.0)
    s.settle(0, "S01", "T01", 1, 100, 1000.0, 2, "PENDING")
    s.settle(2, "S01", "T01", 1, 100, 1000.0, 2, "SETTLED", 2, 100)
    # T02 awaiting the back office for a day; settles late after a fail
    s.trade(0, "T02", 1, "NEW", 0, 2, 50, 20.0)
    s.settle(1, "S02", "T02", 1, 50, 1000.0, 2, "PENDING")
    s.settle(2, "S02", "T02", 1, 50, 1000.0, 2, "FAILED")
    s.settle(4, "S02", "T02", 1, 50, 1000.0, 2, "SETTLED", 4, 50)
    # T03 FO_ONLY: no instruction until day 5 (awaiting on days 0-1, a break on days 2-4)
    s.trade(0, "T03", 1, "NEW", 0, 2, 10, 30.5)
    s.settle(5, "S03", "T03", 1, 10, 305.0, 2, "SETTLED", 5, 10)
    # T04 VERSION_BREAK: amended on day 1, re-booked by operations on day 4
    s.trade(0, "T04", 1, "NEW", 0, 3, 100, 5.0)
    s.settle(0, "S04", "T04", 1, 100, 500.0, 3, "PENDING")
    s.trade(1, "T04", 2, "AMEND", 0, 3, 120, 5.0)
    s.settle(4, "S04", "T04", 1, 100, 500.0, 3, "CANCELLED")
    s.settle(4, "S04B", "T04", 2, 120, 600.0, 3, "SETTLED", 4, 120)
    # T05 QTY_BREAK for seven business dates (ages 0..6, across the weekend), re-booked on day 7
    s.trade(0, "T05", 1, "NEW", 0, 2, 500, 2.0)
    s.settle(0, "S05", "T05", 1, 50, 100.0, 2, "PENDING")
    s.settle(2, "S05", "T05", 1, 50, 100.0, 2, "FAILED")
    s.settle(7, "S05", "T05", 1, 50, 100.0, 2, "CANCELLED")
    s.settle(7, "S05B", "T05", 1, 500, 1000.0, 2, "SETTLED", 7, 500)
    # T06 AMOUNT_BREAK (EUR): amount 1 % off, re-booked on day 5
    s.trade(1, "T06", 1, "NEW", 1, 3, 10, 99.5, eur=True)
    s.settle(1, "S06", "T06", 1, 10, 1004.95, 3, "PENDING", eur=True)
    s.settle(3, "S06", "T06", 1, 10, 1004.95, 3, "FAILED", eur=True)
    s.settle(5, "S06", "T06", 1, 10, 1004.95, 3, "CANCELLED", eur=True)
    s.settle(5, "S06B", "T06", 1, 10, 995.0, 3, "SETTLED", 5, 10, eur=True)
    # T07 BO_ONLY: an instruction the front office never booked, from its intended date; then void
    s.settle(0, "S07", "T07", 1, 40, 400.0, 2, "PENDING")
    s.settle(6, "S07", "T07", 1, 40, 400.0, 2, "CANCELLED")
    # T08 BO_ONLY: cancelled on the front on day 2, the instruction only on day 5
    s.trade(0, "T08", 1, "NEW", 0, 3, 30, 10.0)
    s.settle(0, "S08", "T08", 1, 30, 300.0, 3, "PENDING")
    s.trade(2, "T08", 2, "CANCEL", 0, 3, 30, 10.0)
    s.settle(5, "S08", "T08", 1, 30, 300.0, 3, "CANCELLED")
    # T09 one run of two kinds: QTY_BREAK (days 0-1) then VERSION_BREAK (days 2-3), re-booked on day 4
    s.trade(0, "T09", 1, "NEW", 0, 4, 200, 1.5)
    s.settle(0, "S09", "T09", 1, 210, 315.0, 4, "PENDING")
    s.trade(2, "T09", 2, "AMEND", 0, 4, 210, 1.5)
    s.settle(4, "S09", "T09", 1, 210, 315.0, 4, "CANCELLED")
    s.settle(4, "S09B", "T09", 2, 210, 315.0, 4, "SETTLED", 4, 210)
    # T10 a break that resolves and opens again: amended on day 3 (re-booked day 5) and on day 6
    s.trade(0, "T10", 1, "NEW", 0, 6, 70, 3.0)
    s.settle(0, "S10", "T10", 1, 70, 210.0, 6, "PENDING")
    s.trade(3, "T10", 2, "AMEND", 0, 6, 80, 3.0)
    s.settle(5, "S10", "T10", 1, 70, 210.0, 6, "CANCELLED")
    s.settle(5, "S10B", "T10", 2, 80, 240.0, 6, "PENDING")
    s.trade(6, "T10", 3, "AMEND", 0, 6, 90, 3.0)
    # T11 a late booking (trade date day 1, delivered day 3): FO_ONLY at once, partly settled day 4
    s.trade(3, "T11", 1, "NEW", 1, 3, 60, 7.25)
    s.settle(4, "S11", "T11", 1, 60, 435.0, 3, "PARTIAL", 4, 25)
    # T12 cancelled on the front before any instruction: out of the recon
    s.trade(0, "T12", 1, "NEW", 0, 2, 15, 4.0)
    s.trade(1, "T12", 2, "CANCEL", 0, 2, 15, 4.0)
    # T13 fails and stays failed (matched for the recon, a fail for efficiency)
    s.trade(2, "T13", 1, "NEW", 2, 4, 25, 8.0)
    s.settle(2, "S13", "T13", 1, 25, 200.0, 4, "PENDING")
    s.settle(4, "S13", "T13", 1, 25, 200.0, 4, "FAILED")
    # T14 pending past its intended date
    s.trade(5, "T14", 1, "NEW", 5, 7, 12, 9.0)
    s.settle(5, "S14", "T14", 1, 12, 108.0, 7, "PENDING")
    # T15 booked on a Friday: awaiting over the weekend, FO_ONLY on Tuesday, matched on Wednesday
    s.trade(2, "T15", 1, "NEW", 2, 4, 44, 2.5)
    s.settle(5, "S15", "T15", 1, 44, 110.0, 4, "SETTLED", 5, 44)


def _csv_text(columns: list[str], rows: list[dict]) -> bytes:
    lines = [",".join(columns)] + [",".join(str(r[c]) for c in columns) for r in rows]
    return ("\n".join(lines) + "\n").encode()


def build_handmade_landing(root: Path) -> Path:
    """A small generated landing whose trades and settlements are replaced by the stories."""
    from midoffice.contracts import load_contracts

    landing = generate_landing(root / "landing", DAYS[0], len(DAYS), 20, seed=3)
    assert sorted(p.name for p in landing.iterdir() if p.is_dir()) == DAYS
    first = landing / DAYS[0]
    book = read_csv(first / "books.csv")[0]["book"]
    instruments = read_csv(first / "instruments.csv")
    usd = next(i["instrument_id"] for i in instruments if i["currency"] == "USD")
    eur = next(i["instrument_id"] for i in instruments if i["currency"] == "EUR")
    everyday = set.intersection(*[{json.loads(line)["client_id"] for line in (landing / d / "clients.jsonl").open()}
                                  for d in DAYS])
    story = Story(book, min(everyday), usd, eur)
    write_story(story)
    contracts = load_contracts()
    for i, d in enumerate(DAYS):
        manifest = json.loads((landing / d / "_manifest.json").read_text())
        for feed, rows in (("trades", story.trades[i]), ("settlements", story.settlements[i])):
            data = _csv_text(contracts[feed].column_names, rows)
            (landing / d / contracts[feed].file).write_bytes(data)
            manifest["feeds"][feed].update(rows=len(rows), sha256=hashlib.sha256(data).hexdigest())
        calendars = landing / d / contracts["calendars"].file
        data = calendars.read_bytes() + f"EUR,{EUR_HOLIDAY},Test settlement holiday\n".encode()
        calendars.write_bytes(data)
        manifest["feeds"]["calendars"].update(rows=manifest["feeds"]["calendars"]["rows"] + 1,
                                              sha256=hashlib.sha256(data).hexdigest())
        (landing / d / "_manifest.json").write_text(json.dumps(manifest, indent=1))
    return landing


def run_direct(settings, dates: list[str], feeds: list[str], publish_at_end: bool = True,
               references_once: bool = True, unchanged_references_once: bool = False) -> None:
    """The DAG's steps without Airflow: ingest, validate and gate the feeds, build; publish once.

    With references_once, the reference feeds (books, instruments, clients) load on the first
    date only: the trades' references are checked against the latest delivery that loaded, and no
    recon mart needs them (generated trades of later dates can name clients added since).
    Without it they load on every date, or, with unchanged_references_once, on every date whose
    delivery differs from the last one loaded: the latest delivery that loaded then has the same
    content as loading every date gives (the generator delivers the same books, instruments and
    calendars every day, and new clients daily), for a third of the ingests and validations.
    """
    from midoffice.contracts import load_contracts
    from midoffice.ingest import ingest_feed
    from midoffice.publish import publish
    from midoffice.stages import validate_and_gate
    from midoffice.warehouse import build_warehouse

    contracts = load_contracts()
    loaded: dict[str, bytes] = {}  # reference feed -> the delivery last loaded
    for i, d in enumerate(dates):
        run_id = f"test_recon__{d}"
        for feed in feeds:
            if i > 0 and contracts[feed].kind in ("reference", "snapshot"):
                if references_once:
                    continue
                if unchanged_references_once:
                    delivered = (settings.landing / d / contracts[feed].file).read_bytes()
                    if loaded.get(feed) == delivered:
                        continue
            if unchanged_references_once and contracts[feed].kind in ("reference", "snapshot"):
                loaded[feed] = (settings.landing / d / contracts[feed].file).read_bytes()
            ingest_feed(settings, d, feed, run_id)
            validate_and_gate(settings, d, feed, run_id)
        build_warehouse(settings, d, run_id)
    if publish_at_end:
        publish(settings, dates[-1], f"test_recon__{dates[-1]}")


@pytest.fixture(scope="module")
def handmade(tmp_path_factory, airflow_home):
    # airflow_home first: the build may look up an Airflow connection, and Airflow must not be
    # configured before the session's metadata DB is chosen
    from midoffice.config import settings_from
    from midoffice.contracts import ingest_order

    root = tmp_path_factory.mktemp("recon")
    landing = build_handmade_landing(root)
    settings = settings_from(landing, root / "home")
    run_direct(settings, DAYS, [f for f in ingest_order() if f in RECON_FEEDS])
    return {"landing": landing, "settings": settings, "db": settings.home,
            "history": recon_history(landing, DAYS)}


def test_the_handmade_landing_tells_every_story(handmade):
    """The fixture itself: every status, every reachable age bucket, and every break resolves."""
    history = handmade["history"]
    seen = Counter(r["status"] for rows in history.values() for r in rows.values())
    assert set(seen) == set(STATUSES), seen
    assert {r["age_bucket"] for rows in history.values() for r in rows.values()} == {None, "0-1", "2-5", "6-30"}
    timeline = defaultdict(list)
    for d in DAYS:
        for tid, r in history[d].items():
            timeline[tid].append(r["status"])
    assert timeline["T05"] == ["QTY_BREAK"] * 7 + ["MATCHED"]
    assert timeline["T09"][:4] == ["QTY_BREAK"] * 2 + ["VERSION_BREAK"] * 2
    assert [history[d]["T09"]["first_seen_date"] for d in DAYS[:4]] == [DAYS[0]] * 4  # one run, two kinds
    assert history[DAYS[6]]["T10"]["first_seen_date"] == DAYS[6]                      # a new run
    assert "T12" not in history[DAYS[1]]                                              # cancelled, no settlement
    for kind in BREAKS:
        resolved = [tid for tid, states in timeline.items() if kind in states and states[-1] == "MATCHED"]
        assert resolved, f"no {kind} that resolves"


def test_recon_statuses_and_ages_match_the_files(handmade):
    check_recon(handmade["db"], handmade["history"])


def test_a_break_ages_on_its_settlement_currency_s_calendar(handmade):
    """T06 settles in EUR and breaks from DAYS[1] on: after EUR's holiday its age is the weekdays
    counted less one, in the oracle and in the published mart (whose view reads the calendar the
    publication copied); T05 settles in USD, whose calendar has no holiday then: every weekday."""
    history, first = handmade["history"], DAYS.index(EUR_HOLIDAY)
    marts = recon_marts(handmade["db"], DAYS[first:5])
    for d in DAYS[first:5]:
        t06, t05 = history[d]["T06"], history[d]["T05"]
        assert t06["status"] in BREAKS and t05["status"] in BREAKS, d
        assert t06["age_bd"] == break_age(t06["first_seen_date"], d, frozenset()) - 1, d
        assert t05["age_bd"] == break_age(t05["first_seen_date"], d, frozenset()), d
        mart = marts[d]
        assert (mart["T06"]["age_bd"], mart["T05"]["age_bd"]) == (t06["age_bd"], t05["age_bd"]), d
    # the build's own view agrees (its marts read one date through it)
    con = duckdb.connect(str(handmade["settings"].build_db), read_only=True)
    try:
        got = con.execute("SELECT age_bd FROM main.ops_trade_recon_between(CAST(? AS DATE), CAST(? AS DATE)) "
                          "WHERE trade_id = 'T06'", [DAYS[4], DAYS[4]]).fetchone()[0]
    finally:
        con.close()
    assert got == history[DAYS[4]]["T06"]["age_bd"]


def test_recon_summary_matches_the_files(handmade):
    check_summary(handmade["db"], handmade["history"])


def test_settlement_efficiency_by_count_and_value_matches_the_files(handmade):
    check_efficiency(handmade["db"], handmade["landing"], DAYS)
    rows = query(handmade["db"], "SELECT * FROM ops_settlement_efficiency WHERE as_of_date = ?", [DAYS[-1]])
    # the stories cover every outcome, and count and value efficiency differ
    assert all(sum(r[f] for r in rows) > 0 for f in ("settled_on_time", "settled_late", "failed", "partial", "pending"))
    assert any(r["efficiency_count"] != r["efficiency_value"] for r in rows)


def test_the_incremental_recon_equals_evaluating_every_trade(handmade):
    """Each date after the first was built from the previous date's rows (only the touched trades
    evaluated); evaluating every trade of the window instead gives the same rows."""
    assert carried_dates(handmade["settings"], DAYS[1:5]) == DAYS[1:5]
    check_incremental_equals_full(handmade["settings"], DAYS)


def test_a_rebuild_of_an_earlier_date_gives_the_daily_ages(handmade, tmp_path):
    """Backfill: rebuilding a middle date after later ones reproduces its rows exactly."""
    from midoffice.publish import publish
    from midoffice.warehouse import build_warehouse

    settings = handmade["settings"]
    before = recon_marts(handmade["db"], DAYS)
    build_warehouse(settings, DAYS[4], "test_recon__rebuild")
    # DAYS[4] is published: publishing it again is a restatement, whose reason is recorded first
    record_reason(settings, [DAYS[4]], "recon rebuild after later dates", by="test")
    publish(settings, DAYS[4], "test_recon__rebuild")
    assert recon_marts(handmade["db"], DAYS) == before
    # DAYS[5:] were built before this rerun loaded DAYS[4] again: a rebuild of a date after them
    # must evaluate every trade, not carry their rows; DAYS[5] may carry from the rebuilt DAYS[4]
    assert carried_dates(settings, DAYS[5:]) == DAYS[5:6]


def test_a_rebuild_in_chunks_of_trades_gives_the_same_rows(handmade, monkeypatch):
    """A date with many trades is built chunk by chunk (each chunk's trades' spans written on
    their own): two middle dates, rebuilt in chunks of one trade, give the rows they had, and so
    does every other date (the spans they share were cut and joined again)."""
    from dataclasses import replace

    import midoffice.warehouse as warehouse
    from midoffice.publish import publish

    settings = handmade["settings"]
    models = [replace(m, chunk_rows=1) if m.name == "ops_trade_recon" else m for m in warehouse.load_models()]
    recon = next(m for m in models if m.name == "ops_trade_recon")
    monkeypatch.setattr(warehouse, "load_models", lambda: models)
    before = recon_marts(handmade["db"], DAYS)
    con = duckdb.connect(str(settings.build_db), read_only=True)
    try:
        assert all(warehouse.build_plan(con, recon, d, 2)[0] > 1 for d in (DAYS[1], DAYS[3]))
    finally:
        con.close()
    for d in (DAYS[1], DAYS[3]):
        warehouse.build_warehouse(settings, d, f"test_recon__chunked_{d}")
        record_reason(settings, [d], "recon rebuilt in chunks", by="test")  # a published date: a restatement
        publish(settings, d, f"test_recon__chunked_{d}")
    assert recon_marts(handmade["db"], DAYS) == before


@pytest.mark.slow
@pytest.mark.long
def test_trades_leave_the_recon_window_after_20_business_dates(tmp_path, airflow_home):
    """Twenty-two generated dates (the window and two more): trades age out of the window, breaks
    keep their ages, and the incremental build equals both the oracle and evaluating every trade
    on every date."""
    from midoffice.config import settings_from
    from midoffice.contracts import ingest_order

    landing = generate_landing(tmp_path / "landing", "2026-02-02", 22, 100, seed=11)
    dates = sorted(p.name for p in landing.iterdir() if p.is_dir())
    settings = settings_from(landing, tmp_path / "home")
    run_direct(settings, dates, [f for f in ingest_order() if f in RECON_FEEDS], references_once=False,
               unchanged_references_once=True)
    history = recon_history(landing, dates)
    first_trades = {r["trade_id"] for r in read_csv(landing / dates[0] / "trades.csv")}
    assert first_trades & set(history[dates[19]]) and not first_trades & set(history[dates[20]])
    check_recon(settings.home, history)
    check_incremental_equals_full(settings, dates, chunked_every=4)
    assert carried_dates(settings, dates) == dates[1:]


# --- the generated sample (6 business dates through the real DAG) -------------------------------

@pytest.fixture(scope="module")
def sample_recon(sample_run):
    landing, dates = sample_run["landing"], sample_run["dates"]
    return {"db": sample_run["home"] / "warehouse" / "marts.duckdb", "landing": landing, "dates": dates,
            "history": recon_history(landing, dates)}


@pytest.mark.slow
def test_sample_recon_matches_the_files(sample_recon):
    check_recon(sample_recon["db"], sample_recon["history"])
    statuses = {r["status"] for rows in sample_recon["history"].values() for r in rows.values()}
    assert statuses == set(STATUSES), statuses


@pytest.mark.slow
def test_sample_recon_summary_matches_the_files(sample_recon):
    check_summary(sample_recon["db"], sample_recon["history"])


@pytest.mark.slow
def test_sample_settlement_efficiency_matches_the_files(sample_recon):
    check_efficiency(sample_recon["db"], sample_recon["landing"], sample_recon["dates"])
