"""The back office's worklist (DOMAIN §9), as a scenario over generated dates with --faults.

Five business dates from 2026-01-07 (Coming of Age Day, 2026-01-12, is a JPY holiday and a FIRM
business date) are generated with faults, then the test plants the defects a back office works
on, as a sender would deliver them (the file rewritten, the manifest with it):
- a JPY settlement delivered FAILED (SSI_MISSING) on 2026-01-09: SETTLEMENT_FAIL, due two JPY
  business days later, which the JPY holiday moves from the 13th to the 14th;
- a trade booked on 2026-01-07 at the far edge of the 20-day recon window and never settled: a
  RECON_BREAK worth more than P1_VALUE_USD that leaves the window the next day and must stay;
- a trade booked on 2026-01-08 for a client whose KYC is REJECTED: KYC_EXCEPTION;
- the generator's own late settlements file (2026-01-09): FEED_FAILURE, cleared the next date.
Each must open one item of its type, routed by the teams rules, with its due date, all
recomputed here in plain Python from the landing files (numpy's business-day arithmetic over
calendars.csv, the routing rules of teams.csv, the thresholds of control_parameters.csv). Then
two people close the P1 break through `midoffice case` (the resolver's own approval refused),
and a full rebuild of every date gives the same worklist and keeps every action.

The run goes through the stages the DAGs call (tests/conftest.py run_stages), without Airflow.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from datetime import date
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest

from conftest import REPO, generate_landing, published, run_stages

from midoffice.config import settings_from
from midoffice.contracts import load_contracts
from midoffice.people import store
from midoffice.restate import record_reason

DATES = ["2026-01-07", "2026-01-08", "2026-01-09", "2026-01-12", "2026-01-13"]
P1_BREAK_TRADE = "T9900000001"
KYC_DATE, FAIL_DATE = "2026-01-08", "2026-01-09"
MIDOFFICE = [sys.executable, "-m", "midoffice.cli"]


# --- planting defects as a sender delivers them ---------------------------------------------------

def _read(landing: Path, day: str, feed: str) -> list[dict]:
    path = landing / day / load_contracts()[feed].file
    return list(csv.DictReader(path.open(newline="")))


def _write(landing: Path, day: str, feed: str, rows: list[dict]) -> None:
    spec = load_contracts()[feed]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=spec.column_names, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    data = out.getvalue().encode()
    (landing / day / spec.file).write_bytes(data)
    manifest_path = landing / day / "_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["feeds"][feed].update(rows=len(rows), sha256=hashlib.sha256(data).hexdigest())
    manifest_path.write_text(json.dumps(manifest, indent=1))


def _clients(landing: Path, day: str) -> dict[str, dict]:
    path = landing / day / load_contracts()["clients"].file
    return {c["client_id"]: c for c in map(json.loads, path.read_text().splitlines()) if c}


def _holidays(landing: Path, day: str, calendar_id: str) -> np.ndarray:
    rows = _read(landing, day, "calendars")
    return np.array(sorted(r["holiday_date"] for r in rows if r["calendar_id"] == calendar_id), dtype="datetime64[D]")


def add_bd(landing: Path, day: str, calendar_id: str, n: int) -> str:
    """day + n business days of the calendar (numpy, over calendars.csv): the oracle's arithmetic."""
    return str(np.busday_offset(np.datetime64(day), n, roll="backward", holidays=_holidays(landing, day, calendar_id)))


def _usd_per_unit(landing: Path, day: str, currency: str) -> float:
    """The latest rate of the currency delivered up to the day."""
    best = None
    for d in sorted(p.name for p in landing.iterdir() if p.name[:2] == "20" and p.name <= day):
        for r in _read(landing, d, "fx_rates"):
            if r["currency"] == currency and r["rate_date"] <= day and (best is None or r["rate_date"] >= best[0]):
                best = (r["rate_date"], float(r["usd_per_unit"]))
    return best[1]


def plant_defects(landing: Path) -> dict:
    """The defects of the scenario, planted in the landing; what each must open."""
    planted = {}
    instruments = {r["instrument_id"]: r for r in _read(landing, DATES[0], "instruments")}

    # A trade booked on the first date at the recon window's far edge, never settled: FO_ONLY on
    # that date, out of the window the next (its trade date is 19 FIRM business days back).
    trades = _read(landing, DATES[0], "trades")
    clients = _clients(landing, DATES[0])
    base = next(r for r in trades if r["event_type"] == "NEW" and r["currency"] == "USD"
                and clients[r["client_id"]]["kyc_status"] == "APPROVED" and clients[r["client_id"]]["status"] == "ACTIVE")
    edge = add_bd(landing, DATES[0], "FIRM", -19)
    quantity = round(6_000_000 / float(base["price"]))
    trades.append(base | {"trade_id": P1_BREAK_TRADE, "trade_date": edge, "settle_date": edge,
                          "quantity": str(quantity)})
    _write(landing, DATES[0], "trades", trades)
    planted["RECON_BREAK"] = {"item_id": f"RECON_BREAK:{P1_BREAK_TRADE}", "opened": DATES[0], "calendar": "USD",
                              "value_usd": quantity * float(base["price"]) * _usd_per_unit(landing, DATES[0], "USD"),
                              "scope": {"book": base["book"], "currency": "USD",
                                        "asset_class": instruments[base["instrument_id"]]["asset_class"]}}

    # A trade of the second date for a client whose KYC is REJECTED (on every date of the run).
    trades = _read(landing, KYC_DATE, "trades")
    rejected = sorted(cid for cid, c in _clients(landing, KYC_DATE).items()
                      if c["kyc_status"] == "REJECTED" and all(_clients(landing, d)[cid]["kyc_status"] == "REJECTED"
                                                               for d in DATES if cid in _clients(landing, d)))
    assert rejected, "the sample has no client with a rejected KYC"
    later_trades = {r["trade_id"] for d in DATES if d > KYC_DATE for r in _read(landing, d, "trades")}
    target = next(r for r in trades if r["event_type"] == "NEW" and r["trade_id"] not in later_trades
                  and _clients(landing, KYC_DATE)[r["client_id"]]["kyc_status"] == "APPROVED"
                  and _clients(landing, KYC_DATE)[r["client_id"]]["status"] != "CLOSED")
    target["client_id"] = rejected[0]
    _write(landing, KYC_DATE, "trades", trades)
    client = _clients(landing, KYC_DATE)[rejected[0]]
    planted["KYC_EXCEPTION"] = {"item_id": f"KYC_EXCEPTION:{target['trade_id']}", "opened": KYC_DATE,
                                "calendar": "FIRM", "segment": client["segment"],
                                "rm": client["relationship_manager_id"],
                                "scope": {"book": target["book"], "currency": target["currency"],
                                          "asset_class": instruments[target["instrument_id"]]["asset_class"]}}

    # A JPY instruction delivered FAILED for a missing SSI on the day before the JPY holiday.
    settlements = _read(landing, FAIL_DATE, "settlements")
    failed = next(r for r in settlements if r["currency"] == "JPY" and r["status"] == "PENDING")
    failed.update(status="FAILED", fail_reason="SSI_MISSING")
    _write(landing, FAIL_DATE, "settlements", settlements)
    for later in DATES[DATES.index(FAIL_DATE) + 1:]:  # and the custodian sends nothing more on it
        kept = [r for r in _read(landing, later, "settlements") if r["settlement_id"] != failed["settlement_id"]]
        _write(landing, later, "settlements", kept)
    planted["SETTLEMENT_FAIL"] = {
        "item_id": f"SETTLEMENT_FAIL:{failed['settlement_id']}", "opened": FAIL_DATE, "calendar": "JPY",
        "value_usd": float(failed["settlement_amount"]) * _usd_per_unit(landing, FAIL_DATE, "JPY"),
        "scope": {"custodian": failed["custodian"], "currency": "JPY"}, "settlement_id": failed["settlement_id"]}
    return planted


# --- the oracle's routing, deadlines and priorities ----------------------------------------------

def route(landing: Path, day: str, item_type: str, scope: dict) -> str:
    """The first teams rule by priority_order that matches (DOMAIN §7.3)."""
    rules = sorted(_read(landing, day, "teams"), key=lambda r: int(r["priority_order"]))
    keys = {"BOOK": "book", "CUSTODIAN": "custodian", "CURRENCY": "currency", "ASSET_CLASS": "asset_class"}
    for r in rules:
        if r["item_type"] in ("*", item_type) and (
                r["scope_type"] == "*" or scope.get(keys[r["scope_type"]]) == r["scope_id"]):
            return r["team_id"]
    return "UNROUTED"


def parameter(landing: Path, day: str, name: str, scope: str = "ALL") -> float:
    rows = {(r["parameter"], r["scope_id"]): r["value"] for r in _read(landing, day, "control_parameters")}
    return float(rows.get((name, scope)) or rows[(name, "ALL")])


def priority(landing: Path, day: str, value: float, overdue: bool) -> str:
    if overdue or value >= parameter(landing, day, "P1_VALUE_USD"):
        return "P1"
    return "P2" if value >= parameter(landing, day, "P2_VALUE_USD") else "P3"


# --- the scenario ----------------------------------------------------------------------------------

@contextmanager
def reading(home: Path):
    """One connection to the published lake for a test's queries (opening one loads the lake's
    extensions and attaches the catalog: ~0.5 s on a loaded machine, paid once, not per query).
    Open it after the last publication the queries must see."""
    con = published(home)
    try:
        yield con
    finally:
        con.close()


def rows(con, sql: str, params: list | None = None) -> list[dict]:
    """The rows of a query on a connection from reading()."""
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def case(home: Path, *args: str, by: str | None = None) -> subprocess.CompletedProcess:
    """`midoffice case ARGS [--by BY]` on the home, run in this process (the command's own code,
    main(), without a new interpreter's second of imports a call); test_case_help_and_usage_errors
    runs it as a process."""
    from midoffice.cli import main

    argv = ["case", *args] + (["--by", by] if by else [])
    out, err = io.StringIO(), io.StringIO()
    with patch.dict(os.environ, {"MIDOFFICE_HOME": str(home)}), redirect_stdout(out), redirect_stderr(err):
        os.environ.pop("MIDOFFICE_USER", None)  # put back with the rest when the block ends
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code if isinstance(exit_.code, int) else 1
    return subprocess.CompletedProcess(["midoffice", *argv], code, out.getvalue(), err.getvalue())


WORKLIST_TABLES = ("bo_worklist", "worklist_changes")


def snapshot(home: Path) -> dict[str, list[tuple]]:
    out = {}
    con = published(home)
    try:
        for table in WORKLIST_TABLES:
            out[table] = con.execute(f"SELECT * EXCLUDE (run_id, loaded_at) FROM {table} ORDER BY ALL").fetchall()
    finally:
        con.close()
    return out


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    root = tmp_path_factory.mktemp("worklist")
    landing = generate_landing(root / "landing", DATES[0], len(DATES), 120, seed=7, faults=True)
    assert [p.name for p in sorted(landing.iterdir()) if p.name[:2] == "20"] == DATES
    planted = plant_defects(landing)
    settings = settings_from(landing, root / "home")
    for day in DATES[:-1]:
        run_stages(settings, day, f"run-{day}")
    return {"landing": landing, "home": root / "home", "settings": settings, "planted": planted}


def test_each_planted_defect_opens_one_item_of_its_type_team_and_due_date(scenario):
    with reading(scenario["home"]) as con:
        check_each_planted_defect(scenario["landing"], con, scenario["planted"])


def check_each_planted_defect(landing: Path, con, planted: dict) -> None:
    for item_type, p in planted.items():
        opened = rows(con, "SELECT * FROM bo_worklist WHERE item_id = ? AND as_of_date = ?", [p["item_id"], p["opened"]])
        assert len(opened) == 1, (item_type, p["item_id"])
        item = opened[0]
        assert item["item_type"] == item_type
        assert str(item["opened_date"]) == p["opened"]
        sla = int(parameter(landing, p["opened"], "SLA_BUSINESS_DAYS", item_type))
        assert str(item["due_date"]) == add_bd(landing, p["opened"], p["calendar"], sla), item_type
        assert item["owner_team"] == route(landing, p["opened"], item_type, p["scope"]), item_type
        if "value_usd" in p:
            assert item["value_usd"] == pytest.approx(p["value_usd"], rel=1e-9)
            assert item["priority"] == priority(landing, p["opened"], p["value_usd"], False)
        new = rows(con, "SELECT * FROM worklist_changes WHERE item_id = ? AND change = 'NEW'", [p["item_id"]])
        assert [str(r["as_of_date"]) for r in new] == [p["opened"]], item_type
        # not there the business date before it was planted
        assert not rows(con, "SELECT 1 FROM bo_worklist WHERE item_id = ? AND as_of_date < ?", [p["item_id"], p["opened"]])


def test_a_holiday_inside_the_sla_moves_the_due_date(scenario):
    p = scenario["planted"]["SETTLEMENT_FAIL"]
    with reading(scenario["home"]) as con:
        item = rows(con, "SELECT * FROM bo_worklist WHERE item_id = ? AND as_of_date = ?", [p["item_id"], FAIL_DATE])[0]
    # two JPY business days after Friday 9 January: Monday 12 is Coming of Age Day
    assert str(item["due_date"]) == "2026-01-14"
    assert add_bd(scenario["landing"], FAIL_DATE, "FIRM", 2) == "2026-01-13"
    assert item["fail_reason"] == "SSI_MISSING" and "SSI_MISSING" in item["description"]
    assert item["owner_team"] == "SETTLE_APAC"


def test_client_items_name_segment_and_manager_never_the_client(scenario):
    p = scenario["planted"]["KYC_EXCEPTION"]
    with reading(scenario["home"]) as con:
        item = rows(con, "SELECT * FROM bo_worklist WHERE item_id = ? AND as_of_date = ?", [p["item_id"], KYC_DATE])[0]
        texts = rows(con, "SELECT DISTINCT description FROM bo_worklist")
    assert (item["segment"], item["relationship_manager_id"]) == (p["segment"], p["rm"])
    assert item["client_key"] and "REJECTED" in item["description"]
    clients = _clients(scenario["landing"], KYC_DATE)
    personal = {c["client_id"] for c in clients.values()} | {c["legal_name"] for c in clients.values()}
    assert not any(word in personal for t in texts for word in t["description"].replace(",", " ").split())


def test_feed_failures_open_and_clear_with_the_data(scenario):
    landing, home = scenario["landing"], scenario["home"]
    faults = json.loads((landing / "_faults.json").read_text())
    late = {(f["business_date"], f["feed"]) for f in faults if f["rule"] == "late_delivery"}
    assert late, "the generator's faults include a late file"
    with reading(home) as con:
        for day in DATES[:-1]:
            failed = {(day, path.parent.name) for path in (home / "lake" / "control" / "gate").glob(f"*/{day}.json")
                      if json.loads(path.read_text())["gate"] != "PASS"}
            expected = {f for d, f in (late | failed) if d == day}
            got = {r["feed"] for r in rows(con, "SELECT feed FROM bo_worklist WHERE item_type = 'FEED_FAILURE' "
                                                 "AND as_of_date = ?", [day])}
            assert got == expected, day
            for feed in got:
                item = rows(con, "SELECT * FROM bo_worklist WHERE item_id = ? AND as_of_date = ?",
                            [f"FEED_FAILURE:{feed}", day])[0]
                assert item["owner_team"] == route(landing, day, "FEED_FAILURE", {}) == "DATA_OPERATIONS"
        (day, feed), = sorted(late)
        nxt = DATES[DATES.index(day) + 1]
        cleared = rows(con, "SELECT * FROM worklist_changes WHERE item_id = ? AND change = 'CLEARED'", [f"FEED_FAILURE:{feed}"])
        assert [str(r["as_of_date"]) for r in cleared] == [nxt]


def test_a_break_that_leaves_the_recon_window_stays(scenario):
    p = scenario["planted"]["RECON_BREAK"]
    with reading(scenario["home"]) as con:
        in_recon = rows(con, "SELECT as_of_date FROM ops_trade_recon WHERE trade_id = ? ORDER BY 1", [P1_BREAK_TRADE])
        assert [str(r["as_of_date"]) for r in in_recon] == [DATES[0]]  # the window let it go
        kept = rows(con, "SELECT * FROM bo_worklist WHERE item_id = ? ORDER BY as_of_date", [p["item_id"]])
        assert [str(r["as_of_date"]) for r in kept] == DATES[:-1]
        assert [r["in_data"] for r in kept] == [True, False, False, False]
        assert {str(r["opened_date"]) for r in kept} == {DATES[0]}
        assert not rows(con, "SELECT 1 FROM worklist_changes WHERE item_id = ? AND change = 'CLEARED'", [p["item_id"]])


def test_two_people_close_a_p1_item_and_a_rebuild_loses_nothing(scenario):
    home, settings, landing = scenario["home"], scenario["settings"], scenario["landing"]
    item_id = scenario["planted"]["RECON_BREAK"]["item_id"]
    seen = DATES[-2]  # the worklist the people read: the latest built
    with reading(home) as con:
        item = rows(con, "SELECT * FROM bo_worklist WHERE item_id = ? AND as_of_date = ?", [item_id, seen])[0]
    assert item["priority"] == "P1" and item["value_usd"] >= parameter(landing, seen, "FOUR_EYES_USD")

    listed = case(home, "list", "--priority", "P1", "--type", "RECON_BREAK", "--width", "200")
    assert listed.returncode == 0, listed.stderr
    assert item_id in listed.stdout and str(item["due_date"]) in listed.stdout
    assert all(line.split()[1] == "P1" for line in listed.stdout.splitlines()[3:-1])

    for args in (("ack", item_id), ("assign", item_id, "--to", "trade-support-eq"),
                 ("comment", item_id, "--text", "trader says booked in error"),
                 ("resolve", item_id, "--reason", "WRITTEN_OFF", "--text", "booking error, no settlement")):
        done = case(home, *args, by="alice")
        assert done.returncode == 0, done.stderr
        assert f"effective {DATES[-1]}" in done.stdout
    own = case(home, "approve", item_id, by="alice")
    assert own.returncode == 1 and "four-eyes" in own.stderr and "alice" in own.stderr
    approved = case(home, "approve", item_id, by="bob")
    assert approved.returncode == 0, approved.stderr
    shown = case(home, "show", item_id)
    assert shown.returncode == 0 and "RESOLVE by alice" in shown.stdout and "APPROVE by bob" in shown.stdout
    # a fix at source of the settlement fail, which the custodian never confirms
    fail = scenario["planted"]["SETTLEMENT_FAIL"]
    fixed = case(home, "resolve", fail["item_id"], "--reason", "FIXED_AT_SOURCE", "--text", "SSI sent", by="carol")
    assert fixed.returncode == 0, fixed.stderr
    if fail["value_usd"] >= parameter(landing, seen, "FOUR_EYES_USD"):
        assert case(home, "approve", fail["item_id"], by="dave").returncode == 0

    run_stages(settings, DATES[-1], f"run-{DATES[-1]}")
    with reading(home) as con:  # after the last date's publication
        gone = rows(con, "SELECT 1 FROM bo_worklist WHERE item_id = ? AND as_of_date = ?", [item_id, DATES[-1]])
        changes = rows(con, "SELECT change, action_by FROM worklist_changes WHERE item_id = ? AND as_of_date = ? "
                            "ORDER BY change_seq, change", [item_id, DATES[-1]])
        still = rows(con, "SELECT * FROM bo_worklist WHERE item_id = ? AND as_of_date = ?",
                     [fail["item_id"], DATES[-1]])
    assert not gone
    assert [(c["change"], c["action_by"]) for c in changes] == [
        ("CLOSED", None), ("ACK", "alice"), ("ASSIGN", "alice"), ("COMMENT", "alice"), ("RESOLVE", "alice"),
        ("APPROVE", "bob")]

    assert len(still) == 1 and still[0]["state"] == "RESOLVED_IN_DATA" and still[0]["resolved_by"] == "carol"
    assert still[0]["priority"] == priority(landing, DATES[-1], fail["value_usd"], DATES[-1] > str(still[0]["due_date"]))

    before = snapshot(home)
    actions = store.records(settings, "case_actions")
    for day in DATES:  # every date again, in order, from the same landing and people store
        record_reason(settings, [day], "worklist rebuild", by="test")  # a published date: a restatement
        run_stages(settings, day, f"rerun-{day}")
    assert snapshot(home) == before
    assert store.records(settings, "case_actions") == actions and len(actions) >= 6


def test_case_help_and_usage_errors(tmp_path):
    helped = subprocess.run(MIDOFFICE + ["case", "--help"], capture_output=True, text=True, cwd=REPO)
    assert helped.returncode == 0
    for word in ("list", "show", "ack", "assign", "comment", "resolve", "approve", "exit status"):
        assert word in helped.stdout
    for sub in ("list", "resolve", "approve"):
        h = subprocess.run(MIDOFFICE + ["case", sub, "--help"], capture_output=True, text=True, cwd=REPO)
        assert h.returncode == 0 and "exit status" in h.stdout and "YYYY-MM-DD" in h.stdout
    env = dict(os.environ, MIDOFFICE_HOME=str(tmp_path))
    nothing = subprocess.run(MIDOFFICE + ["case", "list"], capture_output=True, text=True, cwd=REPO, env=env)
    assert nothing.returncode == 2 and "nothing published" in nothing.stderr
    no_reason = subprocess.run(MIDOFFICE + ["case", "resolve", "X:1", "--by", "a"], capture_output=True, text=True,
                               cwd=REPO, env=env)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    env.pop("MIDOFFICE_USER", None)
    anonymous = subprocess.run(MIDOFFICE + ["case", "ack", "X:1"], capture_output=True, text=True, cwd=REPO, env=env)
    assert anonymous.returncode == 2 and "--by" in anonymous.stderr
    assert date.fromisoformat(DATES[0])  # the scenario's dates are ISO dates
