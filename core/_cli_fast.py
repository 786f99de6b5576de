"""The ``sdready`` command's fast paths: its common command lines, run without argparse.

``sdready notify`` runs at every step of a shell script, and ``sdready exec`` stands
between systemd and the server it starts: both must start about as fast as the interpreter
itself. :mod:`.__main__` tries :func:`main` first. It reads the common forms of these
commands with :func:`read` and imports only what running them needs (no argparse,
logging, dataclasses or typing before the message leaves or the command is spawned).
Anything else (another command, ``--help``, an abbreviation, an option it does not know)
and every usage error goes to :mod:`._cli`, which handles it as it always did: the same
checks decide on both paths, so the outcome is the same. See ``benchmarks/cli_startup.py``.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["main", "read"]

#: What :func:`read` found: each flag's name → True, each valued option's name → its values.
Found = dict[str, "bool | list[str]"]

_NOTIFY_FLAGS = {
    "--ready": "ready",
    "--reloading": "reloading",
    "--stopping": "stopping",
    "--no-block": "no_block",
    "-q": "quiet",
    "--quiet": "quiet",
}
_NOTIFY_VALUES = {"--status": "status", "--timeout": "timeout"}
_EXEC_FLAGS = {
    "-q": "quiet",
    "--quiet": "quiet",
    "-v": "verbose",
    "--verbose": "verbose",
    "--watchdog": "watchdog",
    "--pass-notify": "pass_notify",
}
_EXEC_VALUES = {
    "--expect": "expect",
    "--probe": "probe",
    "--ready-timeout": "ready_timeout",
    "--on-timeout": "on_timeout",
}


def main(argv: list[str]) -> int | None:
    """Run the command line *argv* (without the program name) if it takes no detour.

    Returns the exit status, or None when :mod:`._cli` must run it instead.
    """
    command = argv[0] if argv else None
    if command == "notify":
        return _notify(argv[1:])
    if command == "exec":
        return _exec(argv[1:])
    return None


def read(
    argv: list[str],
    flags: Mapping[str, str],
    values: Mapping[str, str],
    *,
    remainder: bool = False,
) -> tuple[Found, list[str]] | None:
    """*argv* as argparse would read it, or None for anything less common.

    *flags* and *values* map the options understood to their names; a valued option takes
    ``--name=VALUE`` or ``--name VALUE`` (a VALUE starting with ``-`` is left to argparse)
    and may repeat. Returns the options found and the positional arguments: one block of
    them (argparse's ``nargs="*"``), or with *remainder* everything from the first one (or
    after ``--``) on, as ``argparse.REMAINDER`` does.
    """
    found: Found = {}
    positional: list[str] = []
    items = iter(argv)
    block_ended = False  # a second block of positional arguments is argparse's error
    for item in items:
        name, sep, value = item.partition("=") if item.startswith("--") else (item, "", "")
        if item in flags:
            found[flags[item]] = True
        elif name in values:
            if not sep:
                value = next(items, "-")
                if value.startswith("-"):  # argparse's own rules decide
                    return None
            listed = found.setdefault(values[name], [])
            assert isinstance(listed, list)
            listed.append(value)
        elif remainder and (item == "--" or not item.startswith("-")):
            rest = [] if item == "--" else [item]
            rest.extend(items)
            return found, rest
        elif item.startswith("-") or (block_ended and positional):
            return None  # --help, an abbreviation, an option not listed, a second block
        else:
            positional.append(item)
            continue
        block_ended = bool(positional)
    return found, positional


def _last(found: Found, name: str) -> str | None:
    given = found.get(name)
    return given[-1] if isinstance(given, list) else None


# -- notify --------------------------------------------------------------------------------


class _NotifyRequest:
    """The fast path's ``sdready notify`` options, as :func:`._cli_notify.fields_of` reads them."""

    __slots__ = ("assignments", "ready", "reloading", "status", "stopping")

    def __init__(self, found: Found, assignments: list[str]) -> None:
        self.ready = "ready" in found
        self.reloading = "reloading" in found
        self.stopping = "stopping" in found
        self.status = _last(found, "status")
        self.assignments = assignments


def _notify(argv: list[str]) -> int | None:
    if "NOTIFY_SOCKET" not in os.environ:
        return None  # the full command explains, unless --quiet
    parsed = read(argv, _NOTIFY_FLAGS, _NOTIFY_VALUES)
    if parsed is None:
        return None
    found, assignments = parsed
    from ._cli_notify import DEFAULT_TIMEOUT, deliver, fields_of

    timeout = DEFAULT_TIMEOUT
    text = _last(found, "timeout")
    if text is not None:
        if not (text.replace(".", "", 1).isdigit() and float(text) > 0):
            return None  # a unit or a bad value: argparse's duration type decides
        timeout = float(text)  # as parse_duration reads a plain number
    try:
        fields = fields_of(_NotifyRequest(found, assignments))
    except ValueError:
        return None
    code, error = deliver(fields, pid=None, no_block="no_block" in found, timeout=timeout)
    if error is not None:
        from ._log import report_error  # logging, on this rare path only

        report_error("notify", error)
    return code


# -- exec ----------------------------------------------------------------------------------


def _exec(argv: list[str]) -> int | None:
    parsed = read(argv, _EXEC_FLAGS, _EXEC_VALUES, remainder=True)
    if parsed is None:
        return None
    found, command = parsed
    if not command or command[0].startswith("-"):
        return None
    from ._exec import SpawnError, Supervisor, exit_like
    from ._log import DEBUG, ERROR, INFO, report_error, stderr_log
    from ._probe import parse_probe
    from ._values import parse_duration, parse_expect

    ready: dict[str, object] = {"watchdog": "watchdog" in found}
    try:
        timeout = _last(found, "ready_timeout")
        if timeout is not None:
            ready["ready_timeout"] = parse_duration("a duration", timeout)
        policy = _last(found, "on_timeout")
        if policy is not None:
            ready["on_timeout"] = policy
        probe = _last(found, "probe")
        if probe is not None:
            parse_probe(probe)  # "auto" is not a command-line value: argparse says so
            ready["probe"] = probe
        given = found.get("expect")
        if isinstance(given, list):
            expect = [item for text in given for item in parse_expect(text) or [""]]
            ready["expect"] = expect  # an empty entry is refused by the check
        supervisor = Supervisor(
            command,
            ready,  # type: ignore[arg-type]  # checked by Supervisor itself
            pass_notify="pass_notify" in found,
            method="auto",
        )
    except ValueError:
        return None  # argparse reports it
    try:
        supervisor.start()
    except SpawnError as exc:
        report_error("exec", f"cannot run {command[0]}: {exc.reason}")
        return exc.code
    # Only now the engine and logging load, while the command boots.
    level = ERROR if "quiet" in found else DEBUG if "verbose" in found else INFO
    with stderr_log("exec", level):
        code = supervisor.supervise()
    return exit_like(code)
