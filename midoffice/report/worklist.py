"""The pack's worklist sections (issue 25: the pack at 8 am) and the per-team worklist extracts.

- "What changed since yesterday": worklist_changes of the date counted by change and item type
  (new and cleared items, closes, escalations, items that went overdue, people's actions), with
  the limits newly breached and the targets newly missed (alerts of the date).
- "Worklist": the open items by team and priority, the ten largest open items with their owner
  and due date, and a link to each team's extract.
- extracts/worklist/<team>.csv: each owner team's open items of the date, largest first, what a
  team lead hands out in the morning (written with the other extracts by build_report).
"""

from __future__ import annotations

import os
import re

from midoffice.duck import sql_literal_path
from midoffice.report.formats import fmt_count, fmt_plain, fmt_usd
from midoffice.report.queries import Pack
from midoffice.report.view import Cell, NotAvailable, Para, Row, Section, Source, Table, data_table

CHANGES = ("NEW", "CLEARED", "CLOSED", "ESCALATED", "OVERDUE")
ACTIONS = ("ACK", "ASSIGN", "COMMENT", "RESOLVE", "APPROVE")
TEAM_DIR = "worklist"
EXTRACT_COLUMNS = ("item_id", "item_type", "priority", "state", "value_usd", "opened_date", "age_bd", "due_date",
                   "overdue", "owner_team", "assigned_to", "description", "last_action")


def _safe_name(team: str) -> str:
    """A team id as a file name (team ids are [A-Z0-9_] by contract; anything else is replaced)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", team) or "_"


def team_extracts(con, out_dir, d: str) -> list[dict]:
    """extracts/worklist/<team>.csv for every owner team with open items on the date."""
    folder = out_dir / TEAM_DIR
    has = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'bo_worklist'").fetchone()[0]
    if not has:
        return []
    teams = [t for (t,) in con.execute("SELECT DISTINCT owner_team FROM bo_worklist WHERE as_of_date = ? "
                                       "ORDER BY 1", [d]).fetchall()]
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for team in teams:
        path = folder / f"{_safe_name(team)}.csv"
        tmp = path.with_name(f".tmp-{path.name}")
        rows = con.execute(
            f"COPY (SELECT {', '.join(EXTRACT_COLUMNS)} FROM bo_worklist WHERE as_of_date = CAST(? AS DATE) "
            "AND owner_team = ? ORDER BY priority, value_usd DESC, item_id) "
            f"TO {sql_literal_path(tmp)} (FORMAT csv, HEADER true)", [d, team]).fetchone()[0]
        os.replace(tmp, path)
        written.append({"team": team, "rows": rows, "csv": f"{TEAM_DIR}/{path.name}"})
    return written


def section_changes(p: Pack, tgts: dict) -> Section:
    title = "What changed since yesterday"
    why = p.missing("worklist_changes", "change", "item_type", "owner_team", "priority", "value_usd")
    if why:
        return Section("changes", title, [NotAvailable(why)])
    counts = p.rows("SELECT item_type, change, count(*) FROM worklist_changes WHERE as_of_date = ? "
                    "GROUP BY ALL ORDER BY item_type, change", [p.d])
    by_type: dict[str, dict[str, int]] = {}
    for item_type, change, n in counts:
        by_type.setdefault(item_type, {})[change] = n
    blocks: list = []
    if by_type:
        cols = [("item_type", "item type")] + [(c.lower(), c.lower()) for c in CHANGES] + [("actions", "people's actions")]
        rows = [Row([Cell(t, "item_type")] + [Cell(fmt_count(c.get(k, 0)), k.lower(), str(c.get(k, 0))) for k in CHANGES]
                    + [Cell(fmt_count(sum(c.get(a, 0) for a in ACTIONS)), "actions")],
                    "BREACH" if c.get("ESCALATED") or c.get("OVERDUE") else None)
                for t, c in sorted(by_type.items())]
        blocks.append(Table("worklist_changes", cols, rows))
    else:
        blocks.append(Para(["Nothing changed on the worklist since the previous business date."]))
    escalations = p.rows("SELECT item_id, previous_priority, priority, owner_team, due_date, description "
                         "FROM worklist_changes WHERE as_of_date = ? AND change IN ('ESCALATED', 'OVERDUE') "
                         "ORDER BY priority, value_usd DESC NULLS LAST, item_id", [p.d])
    if escalations:
        blocks.append(data_table("worklist_changes", [
            ("item_id", "escalated or overdue", fmt_plain), ("previous_priority", "was", fmt_plain),
            ("priority", "now", fmt_plain), ("owner_team", "owner", fmt_plain), ("due_date", "due", fmt_plain),
            ("description", "what", fmt_plain)], escalations, status=lambda r: "BREACH", limit=10))
    if p.has("alerts", "alert_type", "is_new"):
        limits = p.rows("SELECT subject_id, message FROM alerts WHERE business_date = ? AND alert_type = 'LIMIT_BREACH' "
                        "ORDER BY subject_id", [p.d])
        missed = p.rows("SELECT subject_id, message FROM alerts WHERE business_date = ? AND alert_type = 'TARGET_MISSED' "
                        "AND is_new ORDER BY subject_id", [p.d])
        blocks.append(Para([f"Limits newly in breach: {', '.join(s for s, _ in limits) or 'none'}. "
                            f"Targets newly missed: {', '.join(s for s, _ in missed) or 'none'}."]))
    blocks.append(Source(["worklist_changes.change", "alerts.alert_type", "alerts.is_new"]))
    return Section("changes", title, blocks)


def _overdue(v) -> str:
    return "OVERDUE" if v else ""


def section_worklist(p: Pack, tgts: dict) -> Section:
    title = "Worklist"
    why = p.missing("bo_worklist", "item_id", "owner_team", "priority", "value_usd", "due_date", "overdue")
    if why:
        return Section("worklist", title, [NotAvailable(why)])
    by_team = p.rows("SELECT owner_team, count(*) FILTER (WHERE priority = 'P1'), count(*) FILTER (WHERE priority = 'P2'), "
                     "count(*) FILTER (WHERE priority = 'P3'), count(*) FILTER (WHERE overdue), "
                     "CAST(sum(CAST(value_usd AS DECIMAL(38, 6))) AS DOUBLE) "
                     "FROM bo_worklist WHERE as_of_date = ? GROUP BY owner_team ORDER BY owner_team", [p.d])
    if not by_team:
        return Section("worklist", title, [Para(["No open item on the worklist for this date."]),
                                           Source(["bo_worklist"])])
    rows = [Row([Cell(t, "owner_team"), Cell(fmt_count(p1), "p1", str(p1)), Cell(fmt_count(p2), "p2", str(p2)),
                 Cell(fmt_count(p3), "p3", str(p3)), Cell(fmt_count(od), "overdue", str(od)),
                 Cell(fmt_usd(v), "value_usd", str(v)),
                 Cell("CSV", "extract", href=f"extracts/{TEAM_DIR}/{_safe_name(t)}.csv")],
                "BREACH" if od else None)
            for t, p1, p2, p3, od, v in by_team]
    teams = Table("bo_worklist", [("owner_team", "team"), ("p1", "P1"), ("p2", "P2"), ("p3", "P3"),
                                  ("overdue", "overdue"), ("value_usd", "value (USD)"), ("extract", "team extract")], rows)
    largest = p.rows("SELECT item_id, item_type, value_usd, owner_team, due_date, overdue, state FROM bo_worklist "
                     "WHERE as_of_date = ? ORDER BY value_usd DESC, item_id LIMIT 10", [p.d])
    top = data_table("bo_worklist", [("item_id", "item", fmt_plain), ("item_type", "type", fmt_plain),
                                     ("value_usd", "value (USD)", fmt_usd), ("owner_team", "owner", fmt_plain),
                                     ("due_date", "due", fmt_plain), ("overdue", "overdue", _overdue),
                                     ("state", "state", fmt_plain)],
                     largest, status=lambda r: "BREACH" if r[5] else None)
    total = sum(r[1] + r[2] + r[3] for r in by_team)
    return Section("worklist", f"Worklist ({total:,} open)", [
        teams, Para(["The ten largest open items:"]), top,
        Source(["bo_worklist.owner_team", "bo_worklist.priority", "bo_worklist.value_usd", "bo_worklist.due_date"])])
