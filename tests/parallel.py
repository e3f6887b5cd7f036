"""`make test`: a few pytest processes side by side, their progress as they go, one total at the end.

    python tests/parallel.py "NAME: PYTEST ARGS" ["NAME: PYTEST ARGS" ...]

Each group runs in its own `python -m pytest -v` process (the machine's cores are used, and the
tests that read the shared sample run make it once, in their process). While they run, each
test's result line is printed as it comes, prefixed with its group, and a line every minute
says how far each group is (a sample run or a scheduler test can be silent for minutes). Each
process's whole output is kept in .pytest-<name>.log. At the end: each group's closing line and,
for a group that failed, its failures; then one closing line for the whole run in pytest's
form (`==== 220 passed, 1 skipped in 612.3s ====`). The exit status is non-zero when any group
failed.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HEARTBEAT_SECONDS = 60
WIDTH = 80
NO_TESTS_COLLECTED = 5  # pytest's exit status when a selection is empty
RESULT_LINE = re.compile(r"^\S+::\S.* (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b")
# "collecting ... collected 120 items / 80 deselected / 40 selected"
SELECTED = re.compile(r"\bcollected (\d+) items?(?: / (\d+) deselected)?(?: / (\d+) selected)?")
OUTCOMES = ("failed", "passed", "skipped", "xfailed", "xpassed", "warnings", "errors")
COUNT = re.compile(r"(\d+) (failed|passed|skipped|deselected|xfailed|xpassed|warnings?|errors?)\b")
DETAIL_HEADERS = re.compile(r"^=+ (FAILURES|ERRORS) =+$")
SHORT_SUMMARY = re.compile(r"^=+ short test summary info =+$")


@dataclass
class Group:
    name: str
    args: list[str]
    log: Path
    lines: list[str] = field(default_factory=list)
    done: int = 0
    selected: int | None = None
    returncode: int | None = None

    def counts(self) -> dict[str, int]:
        """Outcome -> count, from pytest's closing line (the last line of the log that has counts)."""
        for line in reversed(self.lines):
            found = COUNT.findall(line)
            if found and line.startswith("="):
                out: dict[str, int] = {}
                for n, word in found:
                    key = {"warning": "warnings", "error": "errors"}.get(word, word)
                    out[key] = out.get(key, 0) + int(n)
                return out
        return {}

    def closing_line(self) -> str:
        return next((ln for ln in reversed(self.lines) if ln.startswith("=")), "(no closing line)")

    def details(self) -> list[str]:
        """The failures (a failed group) or the short summary (skips), as pytest printed them."""
        header = DETAIL_HEADERS if self.returncode not in (0, NO_TESTS_COLLECTED) else SHORT_SUMMARY
        start = next((i for i, ln in enumerate(self.lines) if header.match(ln)), None)
        return [] if start is None else self.lines[start:-1]


def parse_groups(specs: list[str]) -> list[Group]:
    groups = []
    for spec in specs:
        name, _, args = spec.partition(":")
        if args.strip():  # an empty selection (e.g. SCHEDULER_TESTS=) runs no process
            slug = re.sub(r"\W+", "-", name.strip()).strip("-")
            groups.append(Group(name.strip(), shlex.split(args), Path(f".pytest-{slug}.log")))
    return groups


def follow(group: Group, proc: subprocess.Popen, say) -> None:
    """Keep every line in the group's log; show its result lines as they come."""
    with group.log.open("w", encoding="utf-8") as log:
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            log.write(raw)
            log.flush()
            group.lines.append(line)
            m = SELECTED.search(line)
            if m:
                collected, deselected, selected = (int(x) if x else None for x in m.groups())
                group.selected = selected if selected is not None else collected - (deselected or 0)
            if RESULT_LINE.match(line):
                group.done += 1
                say(f"[{group.name}] {line}")
    group.returncode = proc.wait()


def progress(groups: list[Group], started: float) -> str:
    parts = [f"{g.name} {'done' if g.returncode is not None else 'running'} {g.done}/{g.selected or '?'}"
             for g in groups]
    return f"[{time.monotonic() - started:5.0f}s] " + ", ".join(parts)


def total_line(groups: list[Group], seconds: float) -> str:
    total: dict[str, int] = {}
    for g in groups:
        for k, v in g.counts().items():
            total[k] = total.get(k, 0) + v
    words = [f"{total[k]} {k}" for k in OUTCOMES if total.get(k)]
    text = f"{', '.join(words) or 'no tests ran'} in {seconds:.1f}s"
    return f" {text} ".center(WIDTH, "=")


def exit_status(groups: list[Group]) -> int:
    codes = [g.returncode for g in groups]
    if codes and all(c == NO_TESTS_COLLECTED for c in codes):
        return NO_TESTS_COLLECTED
    return next((c for c in codes if c not in (0, NO_TESTS_COLLECTED)), 0)


def main(specs: list[str]) -> int:
    groups = parse_groups(specs)
    if not groups:
        print("nothing to run", file=sys.stderr)
        return 2
    lock = threading.Lock()

    def say(text: str) -> None:
        with lock:
            print(text, flush=True)

    say(f"== {len(groups)} pytest processes side by side: "
        + "; ".join(f"{g.name} ({shlex.join(g.args)}; log {g.log})" for g in groups))
    started = time.monotonic()
    # unbuffered: the children's lines reach us as each test ends, not in blocks
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs = [subprocess.Popen([sys.executable, "-m", "pytest", "-v", *g.args], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env) for g in groups]
    readers = [threading.Thread(target=follow, args=(g, p, say), daemon=True) for g, p in zip(groups, procs)]
    for r in readers:
        r.start()
    last_heartbeat = started
    while any(r.is_alive() for r in readers):
        next(r for r in readers if r.is_alive()).join(timeout=1)
        if time.monotonic() - last_heartbeat >= HEARTBEAT_SECONDS and any(r.is_alive() for r in readers):
            last_heartbeat = time.monotonic()
            say(progress(groups, started))
    seconds = time.monotonic() - started
    for g in groups:
        say(f"== {g.name}: {g.closing_line().strip('= ')} (exit {g.returncode}; log {g.log})")
        for line in g.details():
            say(f"[{g.name}] {line}")
    say(total_line(groups, seconds))
    return exit_status(groups)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
