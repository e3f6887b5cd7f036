"""`midoffice case list|show|ack|assign|comment|resolve|approve`: people act on worklist items.

The worklist (bo_worklist) is read from the published warehouse; every action is appended to the
people store (kind case_actions, midoffice/people/store.py), never to the warehouse, with the
business date it is taken on (effective_date: the business date after the worklist the person
acted on, by default the latest published). The build of that date and of every later date
applies it (DOMAIN §9.2), so a rebuild of any date gives the worklist the daily run gave. What a person sees here is the published worklist with the
store's actions, including those recorded since the last build.

Rules the command enforces (the build applies the same records the same way):
- an action names an item open on the worklist of its date;
- RESOLVE gives a reason: FIXED_AT_SOURCE (the data should clear it; while the data still
  shows it, the item stays open as "resolved, still in the data"), WRITTEN_OFF or DUPLICATE
  (closes it);
- APPROVE needs a RESOLVE of the item's open run by a different person (four-eyes; the build
  requires it at or above FOUR_EYES_USD); the resolver's own approval is refused.

Exit status: 0 done; 1 refused (no such open item, approval by the resolver, nothing to
approve); 2 usage error (bad arguments, nothing published, no name given).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from midoffice.people import store

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
ACTIONS = ("ACK", "ASSIGN", "COMMENT", "RESOLVE", "APPROVE")
REASONS = ("FIXED_AT_SOURCE", "WRITTEN_OFF", "DUPLICATE")
PRIORITIES = ("P1", "P2", "P3")
USER_ENV = "MIDOFFICE_USER"
EPILOG = ("exit status: 0 done; 1 refused (no such open item on the worklist of the date, an approval by the "
          "person who resolved, nothing to approve); 2 usage error (bad arguments, nothing published, no --by). "
          "Dates are YYYY-MM-DD; --by defaults to $MIDOFFICE_USER.")


class CaseError(Exception):
    """The command refuses: exit 1, one line."""


class CaseUsage(Exception):
    """Bad usage or nothing to work on: exit 2, one line."""


@dataclass(frozen=True)
class Item:
    """One open worklist item as a person needs it to act."""
    item_id: str
    item_type: str
    priority: str
    owner_team: str
    state: str
    value_usd: float
    age_bd: int
    opened_date: date
    due_date: date
    overdue: bool
    description: str
    assigned_to: str | None


ITEM_COLUMNS = ("item_id", "item_type", "priority", "owner_team", "state", "value_usd", "age_bd", "opened_date",
                "due_date", "overdue", "description", "assigned_to")


# --- reading ---------------------------------------------------------------------------------------

def _settings(home: str | None):
    from midoffice.config import Settings, default_home

    h = Path(home).resolve() if home else default_home()
    return Settings(landing=h, home=h)


def _published(settings):
    from midoffice import lake
    from midoffice.query import open_published

    if not lake.exists(settings):
        raise CaseUsage(f"nothing published yet in {settings.home} (run `midoffice run` first)")
    con = open_published(settings)  # the lake's current version, read-only
    has = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'bo_worklist'").fetchone()[0]
    if not has:
        con.close()
        raise CaseUsage(f"the published warehouse in {settings.home} has no worklist yet (run `midoffice run`)")
    return con


def worklist_date(con, wanted: date | None) -> date:
    """The worklist's date: the one asked for (it must be built), else the latest built."""
    latest = con.execute("SELECT max(as_of_date) FROM bo_worklist").fetchone()[0]
    if wanted is None:
        if latest is None:
            raise CaseUsage("the worklist is empty: no date built yet")
        return latest
    built = con.execute("SELECT count(*) FROM build_log WHERE business_date = ? AND mart = 'bo_worklist' "
                        "AND status = 'BUILT'", [wanted]).fetchone()[0]
    if not built:
        raise CaseUsage(f"no worklist was built for {wanted} (latest: {latest})")
    return wanted


def open_items(con, on: date, team: str | None = None, priority: str | None = None, item_type: str | None = None,
               overdue: bool = False, item_id: str | None = None) -> list[Item]:
    """The open items of the date, by priority and then value (largest first), filtered."""
    where, params = ["as_of_date = ?"], [on]
    for column, value in (("owner_team", team), ("priority", priority), ("item_type", item_type),
                          ("item_id", item_id)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    if overdue:
        where.append("overdue")
    rows = con.execute(f"SELECT {', '.join(ITEM_COLUMNS)} FROM bo_worklist WHERE {' AND '.join(where)} "
                       "ORDER BY priority, value_usd DESC, item_id", params).fetchall()
    return [Item(*r) for r in rows]


def item_actions(settings, item: Item) -> list[dict]:
    """The store's actions on the item's open run (from its opened_date), oldest first."""
    return [a for a in store.records(settings, "case_actions")
            if a["item_id"] == item.item_id and a["effective_date"] >= item.opened_date]


def describe_action(a: dict) -> str:
    detail = a.get("reason") or a.get("assignee")
    text = f"{a['action']} by {a['by']} on {a['effective_date']}"
    text += f" ({detail})" if detail else ""
    return text + (f": {a['text']}" if a.get("text") else "")


# --- acting ----------------------------------------------------------------------------------------

def check_action(item: Item, action: str, by: str, history: list[dict]) -> None:
    """Refuse what the worklist's rules do not allow (CaseError)."""
    if action == "APPROVE":
        resolves = [a for a in history if a["action"] == "RESOLVE"]
        if not resolves:
            raise CaseError(f"{item.item_id} has no resolve to approve (resolve it first: midoffice case resolve)")
        resolver = resolves[-1]["by"]
        if resolver == by:
            raise CaseError(f"refused: {item.item_id} was resolved by {by}; four-eyes: the approval must come "
                            "from a different person")
        if any(a["action"] == "APPROVE" and a["action_id"] > resolves[-1]["action_id"] and a["by"] != resolver
               for a in history):
            raise CaseError(f"{item.item_id}: the latest resolve is already approved")


def effective_date_after(worklist_day: date) -> date:
    """The business date an action on the worklist of `worklist_day` is taken on: the next weekday
    (the worklist of D is read on the morning after D). The build of that date is the first to
    apply it, and every rebuild of it applies it too, so a rebuild gives the worklist the daily run
    gave. A FIRM holiday is never built: its actions count from the next business date's build."""
    return worklist_day + timedelta(days=3 if worklist_day.weekday() == 4 else 2 if worklist_day.weekday() == 5 else 1)


def act(settings, con, item_id: str, action: str, by: str, on: date | None, text: str | None = None,
        assignee: str | None = None, reason: str | None = None) -> tuple[int, Item, date]:
    """Record one action on an open item of the worklist of `on` (default: the latest); returns
    (action_id, item, effective date: the business date after the worklist's)."""
    seen = worklist_date(con, on)
    found = open_items(con, seen, item_id=item_id)
    if not found:
        raise CaseError(f"no open item {item_id} on the worklist of {seen} (see `midoffice case list`)")
    effective = effective_date_after(seen)
    item = found[0]
    check_action(item, action, by, item_actions(settings, item))
    action_id = store.append(settings, "case_actions", {
        "item_id": item.item_id, "action": action, "by": by, "effective_date": effective,
        "text": text, "assignee": assignee, "reason": reason})
    return action_id, item, effective


# --- the command -----------------------------------------------------------------------------------

def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}")


def _who(args) -> str:
    who = (args.by or os.environ.get(USER_ENV) or "").strip()
    if not who:
        raise CaseUsage(f"say who you are: --by NAME (or set {USER_ENV})")
    return who


def _money(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def cmd_list(args) -> int:
    from midoffice.query import render_table

    settings = _settings(args.home)
    con = _published(settings)
    try:
        on = worklist_date(con, args.date)
        items = open_items(con, on, args.team, args.priority, args.type, args.overdue)
    finally:
        con.close()
    if args.limit:
        shown = items[: args.limit]
    else:
        shown = items
    history = store.records(settings, "case_actions")
    last: dict[str, dict] = {}
    for a in history:
        last[a["item_id"]] = a
    rows = []
    for i in shown:
        a = last.get(i.item_id)
        rows.append((i.item_id, i.priority, i.owner_team, i.state, _money(i.value_usd), i.age_bd,
                     f"{i.due_date}{' OVERDUE' if i.overdue else ''}", i.description,
                     describe_action(a) if a and a["effective_date"] >= i.opened_date else "-"))
    filters = ", ".join(f"{k} {v}" for k, v in (("team", args.team), ("priority", args.priority),
                                                ("type", args.type), ("overdue", "only" if args.overdue else None))
                        if v)
    print(f"worklist of {on}: {len(items):,} open item{'s' if len(items) != 1 else ''}"
          + (f" ({filters})" if filters else "") + (f", the {len(shown)} largest shown" if len(shown) < len(items) else ""))
    if rows:
        for line in render_table(["item", "prio", "team", "state", "value_usd", "age_bd", "due", "description",
                                  "last action"], rows, width=args.width, null="-"):
            print(line)
    return EXIT_OK


def cmd_show(args) -> int:
    settings = _settings(args.home)
    con = _published(settings)
    try:
        on = worklist_date(con, args.date)
        found = open_items(con, on, item_id=args.item_id)
    finally:
        con.close()
    if not found:
        raise CaseError(f"no open item {args.item_id} on the worklist of {on} (see `midoffice case list`)")
    i = found[0]
    print(f"{i.item_id}  {i.priority}  {i.state}" + ("  OVERDUE" if i.overdue else ""))
    print(f"  {i.description}")
    print(f"  value {_money(i.value_usd)} USD; owner {i.owner_team}" + (f", assigned to {i.assigned_to}" if i.assigned_to else ""))
    print(f"  opened {i.opened_date}, {i.age_bd} business days old, due {i.due_date} (as built for the worklist "
          f"of {on}; actions recorded since apply from the next build)")
    history = item_actions(settings, i)
    print("  actions:" if history else "  no action yet")
    for a in history:
        print(f"    #{a['action_id']} {describe_action(a)}")
    return EXIT_OK


def _cmd_action(action: str):
    def run(args) -> int:
        by = _who(args)
        settings = _settings(args.home)
        con = _published(settings)
        try:
            action_id, item, effective = act(settings, con, args.item_id, action, by, args.date,
                                             text=args.text, assignee=getattr(args, "to", None),
                                             reason=getattr(args, "reason", None))
        finally:
            con.close()
        print(f"recorded {action} #{action_id} on {item.item_id} by {by}, effective {effective}: the worklist "
              f"of {effective} and later dates applies it when built")
        return EXIT_OK
    return run


def add_parser(sub) -> None:
    """`midoffice case ...` on the midoffice command's subparsers."""
    c = sub.add_parser("case", help="the back office's worklist: list items, and act on them",
                       description="List the open items of the back office's worklist and act on them "
                                   "(DOMAIN §9.2). Actions are kept in the people store, outside the warehouse, "
                                   "and applied by every build of their date and later.",
                       epilog=EPILOG)
    cs = c.add_subparsers(dest="case_command", required=True, metavar="{list,show,ack,assign,comment,resolve,approve}")

    def common(p, acting: bool) -> None:
        p.add_argument("--home", default=None, metavar="DIR", help="default $MIDOFFICE_HOME, else ./.midoffice")
        p.add_argument("--date", type=_date, metavar="YYYY-MM-DD",
                       help="the worklist's business date (default: the latest built)"
                            + ("; the action is effective on the business date after it" if acting else ""))
        if acting:
            p.add_argument("--by", metavar="NAME", help=f"who acts (default ${USER_ENV})")

    ls = cs.add_parser("list", help="the open items, P1 first, largest first within a priority", epilog=EPILOG,
                       description="The open items of the worklist: priority, team, state, value, age, due "
                                   "date, description and the last action.")
    common(ls, False)
    ls.add_argument("--team", metavar="TEAM", help="only this owner team")
    ls.add_argument("--priority", choices=PRIORITIES, help="only this priority")
    ls.add_argument("--type", metavar="ITEM_TYPE", help="only this item type (e.g. SETTLEMENT_FAIL)")
    ls.add_argument("--overdue", action="store_true", help="only items past their due date")
    ls.add_argument("--limit", type=int, default=0, metavar="N", help="show the N first only")
    ls.add_argument("--width", type=int, default=80, metavar="N", help="cut text columns at N characters")
    ls.set_defaults(func=run, case_func=cmd_list)

    sh = cs.add_parser("show", help="one item and every action on it", epilog=EPILOG)
    sh.add_argument("item_id", help="the item, <ITEM_TYPE>:<key>, e.g. SETTLEMENT_FAIL:S0000000182")
    common(sh, False)
    sh.set_defaults(func=run, case_func=cmd_show)

    for action, help_text in (("ack", "acknowledge: someone is on it"),
                              ("assign", "assign to a team or person"),
                              ("comment", "add a comment"),
                              ("resolve", "resolve with a reason"),
                              ("approve", "approve another person's resolve (four-eyes)")):
        p = cs.add_parser(action, help=help_text, epilog=EPILOG)
        p.add_argument("item_id", help="the item, <ITEM_TYPE>:<key>")
        common(p, True)
        p.add_argument("--text", required=action == "comment", metavar="TEXT",
                       help="the comment" if action == "comment" else "why, in a few words")
        if action == "assign":
            p.add_argument("--to", required=True, metavar="WHO", help="the team or person now working it")
        if action == "resolve":
            p.add_argument("--reason", required=True, choices=REASONS,
                           help="FIXED_AT_SOURCE (the data should clear it), WRITTEN_OFF or DUPLICATE (closes it)")
        p.set_defaults(func=run, case_func=_cmd_action(action.upper()))


def run(args) -> int:
    """Run a parsed `midoffice case ...`: one line on stderr and exit 1 or 2 when it cannot."""
    try:
        return args.case_func(args)
    except CaseError as exc:
        print(f"midoffice case: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (CaseUsage, store.StoreError) as exc:
        print(f"midoffice case: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
