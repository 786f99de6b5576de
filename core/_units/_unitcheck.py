"""The unit checks: does the unit match what the app does? Rules as data, one small runner.

Most readiness failures are a unit that does not match its app: ``Type=simple`` (dependents
start before the server listens), ``NotifyAccess=main`` while a worker sends READY, a
``TimeoutStartSec=`` that ends the start before sdready's ``ready_timeout``, a
``WatchdogSec=`` nobody feeds... Each :class:`Rule` below compares one setting of the unit
(:class:`~sdready._units._unitinfo.UnitConfig`) with one fact of the app
(:class:`~sdready._units._appfacts.AppFacts`); a fact that is not known skips the rule rather than
guess. Two drivers, one set of rules:

- ``sdready doctor UNIT`` (:mod:`sdready._commands._doctor`): the facts come from the unit's
  ``ExecStart=`` line; prints every rule's verdict.
- the engine's startup self-check (:func:`self_check`, started by
  :class:`~sdready.Readiness` once per process, only when ``INVOCATION_ID`` says systemd
  started us): the same facts, completed with what the engine knows for sure (its options,
  whether this process is the unit's main one); one WARNING per finding, one INFO per note.
  It runs in a daemon thread after the front end's call returned, asks systemd once with a
  2 s bound, and gives up silently (DEBUG) on any failure: it never delays READY nor hurts
  the app.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, Protocol

from .. import texts
from .._contain import contained
from .._env import invocation_id, is_main_process, user_manager
from .._listen._proctree import claim_abstract
from .._log import logger
from ._appfacts import AppFacts, describe_command, podman_sdnotify
from ._unitinfo import UnitConfig, UnitError, own_unit, read_unit

if TYPE_CHECKING:
    from .._options import ReadyOptions

__all__ = ["FINDINGS", "RULES", "Result", "Rule", "check", "facts_for", "self_check"]


class Engine(Protocol):
    """What the check needs to know of the readiness engine that started it."""

    @property
    def options(self) -> ReadyOptions: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def is_main(self) -> bool: ...


# A note is a sound choice with a consequence worth knowing: INFO in the log, exit status 0.
Severity = Literal["note", "warning", "error"]
Verdict = Literal["ok", "note", "warning", "error", "skipped"]
#: The verdicts that make a unit wrong (logged at WARNING, doctor's exit status 1 or 2).
FINDINGS = ("warning", "error")
Fields = dict[str, object]

#: The self-check's bound on asking systemd (``systemctl show``).
SELF_CHECK_TIMEOUT = 2.0
_SIGHUP = 1


@dataclass(frozen=True)
class Rule:
    """One check: *applies* (the facts it needs are known), *fires* (the fields its texts
    need when the unit is wrong, else None)."""

    check: str
    setting: str
    severity: Severity
    text: tuple[str, str]  # texts.CHECK_*: why it breaks readiness, the line to write
    value: Callable[[UnitConfig], str]
    applies: Callable[[UnitConfig, AppFacts], bool]
    fires: Callable[[UnitConfig, AppFacts], Fields | None]


@dataclass(frozen=True)
class Result:
    """One rule's verdict on one unit; *why* and *fix* are empty unless it fired."""

    check: str
    setting: str
    value: str
    verdict: Verdict
    why: str = ""
    fix: str = ""

    def line(self, unit: str) -> str:
        """The one log line: the setting, its value, why it matters, what to write."""
        template = texts.CHECK_NOTE_LINE if self.verdict == "note" else texts.CHECK_LINE
        return template.format(
            unit=unit, setting=self.setting, value=self.value, why=self.why, fix=self.fix
        )


# -- the facts each rule needs, in words ----------------------------------------------------


def _seconds(value: float | None) -> str:
    if value is None:
        return "0"
    return "infinity" if math.isinf(value) else f"{value:g}s"


def _sender(facts: AppFacts) -> str:
    return f"{facts.server}'s worker processes" if facts.server else "a child process"


def _server(facts: AppFacts) -> str:
    return facts.server or "the server"


#: What SIGHUP does, by front end or by the server's own behaviour.
_HUP_BY_FRONT_END = {"exec": "sdready exec forwards the signal and sends neither"}
_HUP_BY_BEHAVIOUR = {"dies": "SIGHUP kills it"}
#: How to turn sdready's watchdog on, by front end.
_WATCHDOG_BY_FRONT_END = {
    "exec": "sdready exec --watchdog",
    "gunicorn": "Environment=SDREADY_WATCHDOG=1",
}


def _hup(facts: AppFacts) -> str:
    return _HUP_BY_FRONT_END.get(facts.front_end or "") or _HUP_BY_BEHAVIOUR.get(
        facts.on_hup or "", "it restarts its workers without telling systemd"
    )


def _enable_watchdog(facts: AppFacts) -> str:
    return _WATCHDOG_BY_FRONT_END.get(
        facts.front_end or "", "watchdog=True in the sdready front end"
    )


def _suggested_start(facts: AppFacts) -> float:
    return float(math.ceil(max(2 * facts.ready_timeout, facts.ready_timeout + 30)))


def _podman_mode(unit: UnitConfig) -> str | None:
    return podman_sdnotify(unit.exec_start[0]) if unit.exec_start else None


def _podman_sdnotify(unit: UnitConfig) -> Fields | None:
    said = texts.PODMAN_SDNOTIFY_SAYS.get(_podman_mode(unit) or "")
    if said is None:  # container: the app's READY; healthy: podman's health check
        return None
    if unit.source_path.endswith(".container"):  # Quadlet wrote this unit
        fix = f"Notify=yes in [Container] of {unit.source_path}"
    else:
        fix = "podman run --sdnotify=container"
    return {"said": said, "fix": fix}


def _signals_every_process(unit: UnitConfig) -> Fields | None:
    """A problem (no values to format) when systemd's SIGTERM reaches every process."""
    return {} if unit.kill_mode == "control-group" else None


def _kills_with_hup(command: Sequence[str]) -> bool:
    if not command or os.path.basename(command[0]) != "kill":
        return False
    args = list(command[1:])
    named = {"-HUP", "-SIGHUP", "-1"} & set(args)
    for flag in ("-s", "--signal"):
        if flag in args[:-1] and args[args.index(flag) + 1].upper() in ("HUP", "SIGHUP", "1"):
            return True
    return bool(named)


# -- the rules -------------------------------------------------------------------------------

RULES: tuple[Rule, ...] = (
    Rule(
        "type",
        "Type",
        "error",
        texts.CHECK_TYPE,
        lambda u: u.type,
        lambda u, f: f.known,
        lambda u, f: None if u.notify_types else {"server": _server(f)},
    ),
    Rule(
        "notify-access",
        "NotifyAccess",
        "error",
        texts.CHECK_NOTIFY_ACCESS,
        lambda u: u.notify_access,
        lambda u, f: u.notify_types and f.ready_from_child is not None,
        lambda u, f: (
            {"sender": _sender(f)}
            if f.ready_from_child and u.notify_access in ("main", "exec")
            else None
        ),
    ),
    # A start limit below sdready's own is sound (systemd then fails a start that never
    # listens, the honest outcome): worth knowing, not a fault.
    Rule(
        "timeout-start",
        "TimeoutStartSec",
        "note",
        texts.CHECK_TIMEOUT_START,
        lambda u: _seconds(u.timeout_start),
        lambda u, f: u.notify_types,  # generic: whatever notifies, sdready's default applies
        lambda u, f: (
            {
                "ready_timeout": f.ready_timeout,
                "on_timeout": f.on_timeout,
                "suggested": _suggested_start(f),
            }
            if u.timeout_start <= f.ready_timeout
            else None
        ),
    ),
    Rule(
        "timeout-start-infinite",
        "TimeoutStartSec",
        "warning",
        texts.CHECK_TIMEOUT_INFINITE,
        lambda u: _seconds(u.timeout_start),
        lambda u, f: u.notify_types,
        lambda u, f: (
            {"suggested": _suggested_start(f)}
            if math.isinf(u.timeout_start) and f.on_timeout == "fail"
            else None
        ),
    ),
    Rule(
        "watchdog-off",
        "WatchdogSec",
        "error",
        texts.CHECK_WATCHDOG_OFF,
        lambda u: _seconds(u.watchdog),
        lambda u, f: u.watchdog is not None and f.watchdog is not None and not f.ready_from_child,
        lambda u, f: None if f.watchdog else {"period": u.watchdog, "enable": _enable_watchdog(f)},
    ),
    Rule(
        "watchdog-child",
        "WatchdogSec",
        "error",
        texts.CHECK_WATCHDOG_CHILD,
        lambda u: _seconds(u.watchdog),
        lambda u, f: u.watchdog is not None and f.ready_from_child is not None,
        lambda u, f: {"sender": _sender(f), "period": u.watchdog} if f.ready_from_child else None,
    ),
    Rule(
        "notify-reload",
        "Type",
        "error",
        texts.CHECK_NOTIFY_RELOAD,
        lambda u: u.type,
        lambda u, f: u.type == "notify-reload" and f.on_hup is not None,
        lambda u, f: None if f.on_hup == "reloads" else {"server": _server(f), "hup": _hup(f)},
    ),
    Rule(
        "reload-signal",
        "ReloadSignal",
        "error",
        texts.CHECK_RELOAD_SIGNAL,
        lambda u: "-" if u.reload_signal is None else str(u.reload_signal),
        lambda u, f: u.type == "notify-reload" and f.on_hup == "reloads",
        lambda u, f: None if u.reload_signal in (None, _SIGHUP) else {},
    ),
    Rule(
        "exec-reload",
        "ExecReload",
        "error",
        texts.CHECK_EXEC_RELOAD,
        lambda u: "; ".join(" ".join(c) for c in u.exec_reload),
        lambda u, f: bool(u.exec_reload) and f.on_hup is not None,
        lambda u, f: (
            {"server": _server(f)}
            if f.on_hup == "dies" and any(_kills_with_hup(c) for c in u.exec_reload)
            else None
        ),
    ),
    Rule(
        "kill-mode",
        "KillMode",
        "warning",
        texts.CHECK_KILL_MODE,
        lambda u: u.kill_mode,
        lambda u, f: f.forwards_signals,  # sdready exec forwards SIGTERM again
        lambda u, f: _signals_every_process(u),
    ),
    Rule(
        "kill-mode-delay",
        "KillMode",
        "warning",
        texts.CHECK_KILL_MODE_DELAY,
        lambda u: u.kill_mode,
        lambda u, f: f.holds_sigterm,  # gunicorn's workers would stop during the delay
        lambda u, f: _signals_every_process(u),
    ),
    Rule(
        "stop-timeout",
        "TimeoutStopSec",
        "warning",
        texts.CHECK_STOP_TIMEOUT,
        lambda u: _seconds(u.timeout_stop),
        # sdready's gunicorn plugin extends the stop while workers drain (EXTEND_TIMEOUT_USEC,
        # within graceful_timeout): the stop budget covers it, if READY/STOPPING count.
        lambda u, f: f.graceful_timeout is not None and not (f.extends_stop and u.notify_types),
        lambda u, f: (
            {"graceful": f.graceful_timeout, "suggested": f.graceful_timeout + 5}
            if f.graceful_timeout is not None and f.graceful_timeout > u.timeout_stop
            else None
        ),
    ),
    Rule(
        "podman-sdnotify",
        "ExecStart",
        "error",
        texts.CHECK_PODMAN_SDNOTIFY,
        lambda u: f"podman run --sdnotify={_podman_mode(u)}",
        lambda u, f: u.notify_types and f.sdnotify is not None,
        lambda u, f: _podman_sdnotify(u),
    ),
    Rule(
        "podman-notify-access",
        "NotifyAccess",
        "warning",
        texts.CHECK_PODMAN_NOTIFY_ACCESS,
        lambda u: u.notify_access,
        lambda u, f: u.notify_types and f.sdnotify is not None,
        lambda u, f: None if u.notify_access == "all" else {},
    ),
    Rule(
        "fdstore",
        "FileDescriptorStoreMax",
        "warning",
        texts.CHECK_FDSTORE,
        lambda u: str(u.fdstore_max),
        lambda u, f: f.keeps_sockets,  # sdready exec --listen, gunicorn's keep_sockets
        lambda u, f: {} if u.fdstore_max == 0 else None,
    ),
    Rule(
        "fdstore-size",
        "FileDescriptorStoreMax",
        "warning",
        texts.CHECK_FDSTORE_SIZE,
        lambda u: str(u.fdstore_max),
        lambda u, f: f.keeps_sockets and f.sockets_kept is not None and u.fdstore_max > 0,
        lambda u, f: (
            {"kept": f.sockets_kept, "held": u.fdstore_max}
            if f.sockets_kept is not None and u.fdstore_max < f.sockets_kept
            else None
        ),
    ),
)


def check(unit: UnitConfig, facts: AppFacts, rules: Sequence[Rule] = RULES) -> list[Result]:
    """Every rule's verdict on *unit* running an app with *facts*, in :data:`RULES` order."""
    results: list[Result] = []
    for rule in rules:
        value = rule.value(unit)
        if not rule.applies(unit, facts):
            results.append(Result(rule.check, rule.setting, value, "skipped"))
            continue
        fields = rule.fires(unit, facts)
        if fields is None:
            results.append(Result(rule.check, rule.setting, value, "ok"))
            continue
        why, fix = rule.text
        results.append(
            Result(
                rule.check,
                rule.setting,
                value,
                rule.severity,
                why.format(**fields),
                fix.format(**fields),
            )
        )
    return results


def facts_for(unit: UnitConfig) -> AppFacts:
    """What the unit's ``ExecStart=`` runs (its first command)."""
    command = unit.exec_start[0] if unit.exec_start else ()
    return describe_command(command, unit.environment, unit.working_directory)


# -- the engine's startup self-check -------------------------------------------------------

_held: list[socket.socket] = []  # the per-invocation claim, kept for the process's life


def _claim(invocation: str) -> bool:
    """True for the first process of this unit invocation to check (uvicorn --workers and
    hypercorn start several that would each warn): an abstract socket named after it, whose
    holder must be one of ours (the name is predictable: another user may take it first)."""
    return claim_abstract(f"sdready-unitcheck-{invocation}", _held)


def self_check(readiness: Engine, environ: Mapping[str, str] | None = None) -> list[Result]:
    """Compare this process's unit with what *readiness*'s front end does; log each finding.

    Runs in the engine's background thread; returns the results (for tests). Any failure
    to learn the unit is logged at DEBUG and ends the check: it must never hurt the app.
    """
    env = os.environ if environ is None else environ
    results: list[Result] = []
    with contained("checking the unit"):
        invocation = invocation_id(env)
        name = own_unit()
        if invocation is None or name is None:
            logger.debug("unit check: not started by systemd, or no service in /proc/self/cgroup")
            return results
        try:
            if not _claim(invocation):
                logger.debug("unit check: another process of %s checks it", name)
                return results
            unit = read_unit(name, user=user_manager(env), timeout=SELF_CHECK_TIMEOUT)
        except (UnitError, OSError) as exc:  # a sandbox without AF_UNIX or fork, no fds...
            logger.debug("unit check skipped: %s", exc)
            return results
        results = check(unit, _engine_facts(readiness, facts_for(unit)))
        found = [r for r in results if r.verdict in FINDINGS]
        for result in results:
            if result.verdict == "note":
                logger.info("%s", result.line(unit.name))
            elif result.verdict in FINDINGS:
                logger.warning("%s", result.line(unit.name))
        logger.debug("unit check of %s done: %d finding(s)", unit.name, len(found))
    return results


def _engine_facts(readiness: Engine, facts: AppFacts) -> AppFacts:
    """The unit's facts, corrected by what the engine knows for sure about this process."""
    options = readiness.options
    sends = readiness.enabled
    from_child = facts.ready_from_child
    if sends:  # this process notifies: it is either the main one or a child
        from_child = not readiness.is_main
    elif is_main_process():  # no NOTIFY_SOCKET (Type=simple): it would speak as main
        from_child = False if from_child is None else from_child
    if facts.server == "gunicorn" and readiness.is_main:
        # An engine in gunicorn's main process is sdready's plugin (an app's own front end
        # runs in a worker, which is not the main process).
        facts = replace(facts, front_end="gunicorn", extends_stop=True)
    return replace(
        facts,
        front_end=facts.front_end or "engine",
        ready_from_child=from_child,
        ready_timeout=options.ready_timeout,
        on_timeout=options.on_timeout,
        # sdready exec --pass-notify: the command may feed the watchdog itself (unknown).
        watchdog=facts.watchdog if facts.front_end == "exec" else options.watchdog,
    )
