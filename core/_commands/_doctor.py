"""``sdready doctor [--user] [UNIT]``: the unit checks from outside, on a named unit.

Reads the unit's settings with one ``systemctl show`` and its ``ExecStart=`` line to tell
which server and front end it runs, then applies the same rules as the engine's startup
self-check (:mod:`sdready._units._unitcheck`). Prints one row per rule (setting, value, verdict,
fix) and, for each finding or note, the line the self-check would log; ``--json`` for
scripts (also when the unit cannot be read: ``error`` and ``hint`` say why). Exit status:
0 clean (notes are no fault), 1 warnings, 2 errors, 3 the unit could not be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from .._env import user_manager
from .._units._unitcheck import FINDINGS, Result, check, facts_for
from .._units._unitinfo import UnitError, own_unit, read_unit

__all__ = ["EXIT_UNREADABLE", "run"]

EXIT_CLEAN = 0
EXIT_WARNINGS = 1
EXIT_ERRORS = 2
EXIT_UNREADABLE = 3
#: Asking systemd from a shell may meet a busy manager: more patience than the self-check.
TIMEOUT = 10.0


#: What went wrong and what to do, as systemctl says it (``Unit x could not be found.``).
#: ``.format(name=, said=, list=)``; *list* is the systemctl command listing the units.
_PROBLEMS: dict[str, tuple[str, str]] = {
    "not-found": (
        "Unit {name} could not be found.",
        "Is the name right (see: {list})?{other}",
    ),
    "no-manager": (
        "Cannot ask systemd about {name}: no {manager} here ({said}).",
        "{no_manager}",
    ),
    "unloaded": (
        "Unit {name} is not loaded ({said}).",
        "'systemctl{user} status {name}' says why.",
    ),
    "unreadable": ("Cannot read {name}: {said}.", "'systemctl{user} show {name}' shows more."),
}
_OTHER_MANAGER = {
    False: " A unit of your user manager needs --user.",
    True: " A system unit needs no --user.",
}
_NO_MANAGER = {
    False: "systemd is not PID 1 on this machine (a container?): run doctor where the "
    "unit runs; for a unit of your user manager, add --user.",
    True: "No user manager in this session (no XDG_RUNTIME_DIR, or su/sudo): run doctor as "
    "the unit's user in a login session ('machinectl shell USER@'); for a system unit, "
    "drop --user.",
}


def run(args: argparse.Namespace) -> int:
    """Check the unit named in *args* (``unit``, ``user``, ``json``); return the exit status."""
    name: str | None = args.unit
    user: bool = args.user
    if name is None:  # inside a unit: that one
        name = own_unit()
        user = user or user_manager()
        if name is None:
            return _fail(args, None, user, "Give a UNIT: this process runs in none.", "")
    if "." not in name:
        name += ".service"
    try:
        unit = read_unit(name, user=user, timeout=TIMEOUT)
    except UnitError as exc:
        return _fail(args, name, user, *_explain(exc, name, user))
    facts = facts_for(unit)
    results = check(unit, facts)
    status = _status(results)
    notes = list(facts.notes)
    if args.json:
        report = {
            "unit": unit.name,
            "user": user,
            "server": facts.server,
            "front_end": facts.front_end,
            "notes": notes,
            "status": status,
            "error": None,
            "results": [asdict(r) for r in results],
        }
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return status
    out = sys.stdout
    manager = "user manager" if user else "system manager"
    out.write(f"{unit.name} ({manager}): {_runs(facts.server, facts.front_end)}\n")
    for note in notes:
        out.write(f"note: {note}\n")
    _table(results)
    for result in results:
        if result.verdict == "note" or result.verdict in FINDINGS:
            out.write(f"{result.verdict}: {result.line(unit.name)}\n")
    verdict = {EXIT_CLEAN: "clean", EXIT_WARNINGS: "warnings", EXIT_ERRORS: "errors"}[status]
    out.write(f"{verdict}\n")
    return status


def _explain(exc: UnitError, name: str, user: bool) -> tuple[str, str]:
    """The message and the hint for a unit doctor could not read."""
    said = exc.said.rstrip(".")
    text, hint = _PROBLEMS[exc.problem]
    fields = {
        "name": name,
        "said": said,
        "manager": "user manager" if user else "system manager",
        "user": " --user" if user else "",
        "list": f"systemctl{' --user' if user else ''} list-unit-files",
        "other": _OTHER_MANAGER[user],
        "no_manager": _NO_MANAGER[user],
    }
    return text.format(**fields), hint.format(**fields)


def _fail(args: argparse.Namespace, name: str | None, user: bool, text: str, hint: str) -> int:
    """Say why nothing was checked: on stderr (``Hint:`` line), or as JSON with ``--json``."""
    if args.json:
        report: dict[str, object] = {"unit": name, "user": user, "status": EXIT_UNREADABLE}
        report.update({"error": text, "hint": hint or None, "results": []})
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        sys.stderr.write(f"{text}\n" + (f"Hint: {hint}\n" if hint else ""))
    return EXIT_UNREADABLE


def _runs(server: str | None, front_end: str | None) -> str:
    if server is None and front_end is None:
        return "no server recognised in ExecStart="
    text = f"runs {server or 'an unknown server'}"
    if front_end == "exec":
        return f"{text} under sdready exec"
    if front_end is not None:
        return f"{text} with sdready's {front_end} plugin"
    return text


def _status(results: list[Result]) -> int:
    verdicts = {r.verdict for r in results}
    if "error" in verdicts:
        return EXIT_ERRORS
    return EXIT_WARNINGS if "warning" in verdicts else EXIT_CLEAN


def _table(results: list[Result]) -> None:
    rows = [("check", "setting", "value", "verdict", "fix")]
    rows += [(r.check, r.setting, r.value or "-", r.verdict, r.fix) for r in results]
    widths = [min(max(len(row[i]) for row in rows), 40) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        sys.stdout.write("  ".join([*cells, row[4]]).rstrip() + "\n")
