"""What a unit says and what its ``ExecStart=`` runs: the two inputs of the unit checks.

:func:`read_unit` asks systemd with one bounded ``systemctl show`` call (the property values
are plain text there, no D-Bus library needed) and :class:`UnitConfig` holds the answer;
:func:`describe_command` reads an ``ExecStart=`` command line into :class:`AppFacts`: which
server runs, whether sdready fronts it, which process will notify, what SIGHUP does to it.
``sdready doctor`` uses both on a named unit; the engine's self-check uses them on its own
unit and then overlays what it knows for sure (its options, which process it is).

Only imported under systemd or by the command: ``import sdready`` never loads this module.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from ._options import DEFAULT_READY_TIMEOUT

__all__ = [
    "PROPERTIES",
    "AppFacts",
    "UnitConfig",
    "UnitError",
    "describe_command",
    "own_unit",
    "parse_timespan",
    "read_unit",
]

#: Every property the checks read, asked for in one ``systemctl show`` call. Properties a
#: systemd does not know (``ReloadSignal=`` before 253) are simply absent from its answer.
PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "Type",
    "NotifyAccess",
    "TimeoutStartUSec",
    "TimeoutStopUSec",
    "WatchdogUSec",
    "KillMode",
    "ExecStart",
    "ExecReload",
    "ReloadSignal",
    "FileDescriptorStoreMax",
    "Environment",
    "WorkingDirectory",
)

#: What SIGHUP does: sdready's front end reloads (RELOADING=1, READY=1 again), the server
#: restarts its workers silently, or the process dies (the default action).
OnHup = Literal["reloads", "restarts", "dies"]

_TIMESPAN_UNITS = {
    "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0,
    "min": 60.0, "h": 3600.0, "hr": 3600.0, "d": 86400.0, "w": 604800.0,
    "month": 2629800.0, "y": 31557600.0,
}  # fmt: skip
_TIMESPAN_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")
_ARGV = re.compile(r"argv\[\]=(.*?) ; (?:ignore_errors|flags)=")


class UnitError(Exception):
    """systemd could not be asked, or does not know the unit; the message says which."""


def parse_timespan(text: str) -> float | None:
    """``systemctl show``'s timespans in seconds: ``"1min 30s"`` → 90.0, ``"infinity"`` →
    inf, ``"0"`` → 0.0; None when unparsable."""
    stripped = text.strip()
    if stripped == "infinity":
        return math.inf
    total, position = 0.0, 0
    for match in _TIMESPAN_PART.finditer(stripped):
        if stripped[position : match.start()].strip() or match.group(2) not in (
            *_TIMESPAN_UNITS,
            "",
        ):
            return None
        total += float(match.group(1)) * _TIMESPAN_UNITS.get(match.group(2) or "us", 1e-6)
        position = match.end()
    return total if position and not stripped[position:].strip() else None


def _commands(text: str) -> tuple[tuple[str, ...], ...]:
    """``ExecStart={ path=… ; argv[]=/bin/x -y ; ignore_errors=no ; … }`` → argvs."""
    found: list[tuple[str, ...]] = []
    for match in _ARGV.finditer(text):
        try:
            found.append(tuple(shlex.split(match.group(1))))
        except ValueError:
            found.append(tuple(match.group(1).split()))
    return tuple(found)


def _environment(text: str) -> dict[str, str]:
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    return dict(word.partition("=")[::2] for word in words if "=" in word)


@dataclass(frozen=True)
class UnitConfig:
    """The settings of one service unit that decide whether readiness works (seconds)."""

    name: str
    type: str = "simple"
    notify_access: str = "none"
    timeout_start: float = 90.0
    timeout_stop: float = 90.0
    watchdog: float | None = None  # WatchdogSec=, None: off
    kill_mode: str = "control-group"
    exec_start: tuple[tuple[str, ...], ...] = ()
    exec_reload: tuple[tuple[str, ...], ...] = ()
    reload_signal: int | None = None  # None: systemd < 253 (no notify-reload)
    fdstore_max: int = 0
    environment: Mapping[str, str] = field(default_factory=dict)
    working_directory: str = ""

    @classmethod
    def from_properties(cls, props: Mapping[str, str]) -> UnitConfig:
        """Build from ``systemctl show`` output (``name=value`` pairs)."""
        watchdog = parse_timespan(props.get("WatchdogUSec", "0"))
        signal_text = props.get("ReloadSignal", "")
        fdstore = props.get("FileDescriptorStoreMax", "0")
        return cls(
            name=props.get("Id", "?"),
            type=props.get("Type") or "simple",
            notify_access=props.get("NotifyAccess") or "none",
            timeout_start=_seconds(props.get("TimeoutStartUSec"), 90.0),
            timeout_stop=_seconds(props.get("TimeoutStopUSec"), 90.0),
            watchdog=watchdog if watchdog and math.isfinite(watchdog) else None,
            kill_mode=props.get("KillMode") or "control-group",
            exec_start=_commands(props.get("ExecStart", "")),
            exec_reload=_commands(props.get("ExecReload", "")),
            reload_signal=int(signal_text) if signal_text.isdigit() else None,
            fdstore_max=int(fdstore) if fdstore.isdigit() else 0,
            environment=_environment(props.get("Environment", "")),
            working_directory=props.get("WorkingDirectory", "").lstrip("!"),
        )

    @property
    def notify_types(self) -> bool:
        """True for ``Type=notify`` and ``Type=notify-reload``: READY=1 counts."""
        return self.type in ("notify", "notify-reload")


def _seconds(text: str | None, default: float) -> float:
    value = parse_timespan(text) if text is not None else None
    if value is None:
        return default
    return math.inf if value == 0 else value  # 0 disables the timeout


# -- asking systemd ------------------------------------------------------------------------


def own_unit(cgroup_file: str = "/proc/self/cgroup") -> str | None:
    """The service this process runs in, from its cgroup path (the innermost ``*.service``)."""
    try:
        with open(cgroup_file, encoding="utf-8", errors="replace") as file:
            lines = file.read().splitlines()
    except OSError:
        return None
    for line in sorted(lines, key=lambda line: not line.startswith("0::")):  # v2 first
        parts = [p for p in line.split(":", 2)[-1].split("/") if p.endswith(".service")]
        if parts:
            return parts[-1]
    return None


def read_unit(name: str, *, user: bool, timeout: float) -> UnitConfig:
    """Ask systemd for *name*'s settings with one ``systemctl show``; at most *timeout* s.

    Raises :class:`UnitError` when systemctl is missing, fails, takes too long, or the unit
    does not exist.
    """
    systemctl = ["systemctl", *(["--user"] if user else [])]
    argv = [*systemctl, "show", f"--property={','.join(PROPERTIES)}", "--", name]
    env = {**os.environ, "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "LC_ALL": "C"}
    env.pop("NOTIFY_SOCKET", None)
    command = "systemctl --user show" if user else "systemctl show"
    code, output = _run_bounded(argv, env, timeout)
    props = dict(line.partition("=")[::2] for line in output.splitlines() if "=" in line)
    if code not in (0, None) or "Id" not in props:
        raise UnitError(f"{command} {name}: {' '.join(output.split()) or f'status {code}'}")
    if props.get("LoadState") in ("not-found", "bad-setting", "error", "masked"):
        raise UnitError(f"{name}: LoadState={props['LoadState']}")
    if props.get("ActiveState") in ("inactive", "failed"):
        # WatchdogUSec= shows the running service's period (infinity when stopped): the
        # configured one is in the unit file (and its drop-ins), in order.
        code, text = _run_bounded([*systemctl, "cat", "--", name], env, timeout)
        props["WatchdogUSec"] = _last_watchdog(text) if code in (0, None) else "0"
    return UnitConfig.from_properties(props)


def _last_watchdog(text: str) -> str:
    """The last ``WatchdogSec=`` of ``systemctl cat``, as a timespan (bare numbers: s)."""
    value = "0"
    for line in text.splitlines():
        key, sep, rest = line.strip().partition("=")
        if sep and key == "WatchdogSec":
            value = rest.strip() or "0"
    return f"{value}s" if value.replace(".", "", 1).isdigit() and value != "0" else value


def _run_bounded(argv: list[str], env: Mapping[str, str], timeout: float) -> tuple[int | None, str]:
    """Run *argv*; return its exit status (None: someone else reaped it) and its output.

    Not :mod:`subprocess`: from a thread of a process that forks (gunicorn's arbiter
    booting workers), a worker forked in between inherits subprocess's error pipe, and
    ``Popen`` waits on it without a timeout, for as long as the worker lives. Here every
    wait is bounded by *timeout*, and a leaked pipe end only delays nothing: the child's
    exit ends the read.
    """
    import select
    import signal
    import time

    read_end, write_end = os.pipe()
    try:
        pid = os.posix_spawnp(
            argv[0],
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, write_end, 1),
                (os.POSIX_SPAWN_DUP2, write_end, 2),
            ],
            setsigmask=(),  # not the blocked signals of sdready exec's thread
            setsigdef=(signal.SIGPIPE,),
        )
    except OSError as exc:
        os.close(read_end)
        raise UnitError(f"{argv[0]}: {exc.strerror or exc}") from None
    finally:
        os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    status: int | None = None
    eof = False
    try:
        while True:
            status = _exited(pid) if status is None else status
            if status is not None and eof:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)  # SIGKILL: no wait beyond the kernel's
                raise UnitError(f"{argv[0]} took over {timeout:g} s")
            if eof:
                time.sleep(min(left, 0.01))
                continue
            readable, _, _ = select.select([read_end], [], [], min(left, 0.05))
            if not readable:
                if status is not None:
                    break  # exited and drained: a forked process may hold the pipe open
                continue
            data = os.read(read_end, 65536)
            chunks.append(data)
            eof = not data
    finally:
        os.close(read_end)
    return (None if status == _REAPED else status), b"".join(chunks).decode(errors="replace")


_REAPED = -1000


def _exited(pid: int) -> int | None:
    """The exit status of *pid* once it ended (``_REAPED``: reaped by someone else), or None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return _REAPED
    return os.waitstatus_to_exitcode(status) if done else None


# -- what ExecStart= runs ------------------------------------------------------------------


@dataclass(frozen=True)
class AppFacts:
    """What the app side will do: the other half of each check.

    ``None`` means unknown: a check that needs the fact is skipped rather than guessed.
    """

    server: str | None = None  # "uvicorn", "gunicorn", ... None: not recognised
    front_end: str | None = None  # sdready's front end: "exec", "gunicorn", "engine"; None: unknown
    ready_from_child: bool | None = None  # READY/STOPPING/WATCHDOG from another pid than main
    ready_timeout: float = DEFAULT_READY_TIMEOUT
    on_timeout: str = "warn"
    watchdog: bool | None = None  # sdready pings WATCHDOG=1
    on_hup: OnHup | None = None
    forwards_signals: bool = False  # sdready exec: signals reach the command through it
    graceful_timeout: float | None = None  # gunicorn
    extends_stop: bool = False  # sdready extends the stop timeout while the server drains
    keeps_sockets: bool = False  # asks systemd to keep its listening sockets (fd store)
    notes: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        """True when a web server or an sdready front end runs (not a client, not a script)."""
        return self.server is not None or self.front_end is not None


_PYTHON = re.compile(r"python[\d.]*$")


def _program(argv: Sequence[str]) -> tuple[str, list[str]]:
    """The program a command line runs and its arguments, past ``env`` and ``python -m``."""
    args = list(argv)
    while args:
        name = os.path.basename(args[0])
        if name == "env":
            args = args[1:]
            while args and ("=" in args[0] or args[0].startswith("-")):
                args = args[1:]
            continue
        if _PYTHON.match(name):
            rest = args[1:]
            while rest and rest[0].startswith("-") and rest[0] != "-m":
                rest = rest[1:]
            if len(rest) >= 2 and rest[0] == "-m":
                return rest[1].split(".")[0], rest[2:]
            return "python", rest
        return name, args[1:]
    return "", []


def _option(args: Sequence[str], *names: str) -> str | None:
    """The value of ``--name V`` or ``--name=V`` (the last one given), or None."""
    value: str | None = None
    for index, arg in enumerate(args):
        flag, sep, attached = arg.partition("=")
        if flag in names:
            if sep:
                value = attached
            elif index + 1 < len(args):
                value = args[index + 1]
    return value


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def describe_command(
    argv: Sequence[str], environ: Mapping[str, str] | None = None, cwd: str = ""
) -> AppFacts:
    """What *argv* (an ``ExecStart=`` line) runs, as far as its command line tells."""
    env = environ or {}
    program, args = _program(argv)
    if program == "sdready" and args[:1] == ["exec"]:
        return _sdready_exec(args[1:], env, cwd)
    if program == "gunicorn":
        return _gunicorn(args, env, cwd)
    if program in ("uvicorn", "hypercorn", "granian"):
        workers = _number(_option(args, "--workers", "-w"))
        if program == "uvicorn":
            children = (workers or 1) > 1 or "--reload" in args
            hup: OnHup = "restarts" if (workers or 1) > 1 else "dies"
        else:  # both run their app in worker processes by default, and restart them on HUP
            children = workers != 0
            hup = "restarts" if children else "dies"
        return AppFacts(server=program, ready_from_child=children, on_hup=hup)
    if program in ("waitress-serve", "waitress"):
        return AppFacts(server="waitress", ready_from_child=False, on_hup="dies")
    if program == "flask" and args[:1] == ["run"]:
        return AppFacts(server="werkzeug", ready_from_child=False, on_hup="dies")
    return _unrecognised(argv, program, args, cwd)


def _unrecognised(argv: Sequence[str], program: str, args: list[str], cwd: str) -> AppFacts:
    shown = " ".join([os.path.basename(argv[0]), *argv[1:2]]) if argv else "no command"
    if program == "python" and args and _mentions_sdready(os.path.join(cwd, args[0])):
        # python app.py with a plugin inside (Flask under waitress, app.run()): sdready runs.
        note = f"{shown} uses sdready, its server is not known: the generic checks and Type="
        return AppFacts(front_end="python", notes=(note,))
    note = f"{shown} is not a server sdready knows: generic checks only"
    return AppFacts(notes=(note,))


def _mentions_sdready(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return "sdready" in file.read(200_000)
    except OSError:
        return False


def _sdready_exec(args: list[str], env: Mapping[str, str], cwd: str) -> AppFacts:
    command = args[args.index("--") + 1 :] if "--" in args else []
    options = args[: args.index("--")] if "--" in args else args
    inner = describe_command(command, env, cwd) if command else AppFacts()
    watchdog: bool | None = "--watchdog" in options
    if not watchdog and "--pass-notify" in options:
        watchdog = None  # the command may ping itself
    return replace(
        inner,
        front_end="exec",
        ready_from_child=False,  # READY, STOPPING and WATCHDOG come from sdready, the main pid
        ready_timeout=_number(_option(options, "--ready-timeout")) or DEFAULT_READY_TIMEOUT,
        on_timeout=_option(options, "--on-timeout") or "warn",
        watchdog=watchdog,
        on_hup="restarts" if inner.on_hup in ("restarts", "reloads") else inner.on_hup,
        forwards_signals=True,
        keeps_sockets=_option(options, "--listen") is not None,  # into systemd's fd store
    )


_GRACEFUL = re.compile(r"^graceful_timeout\s*=\s*(\d+(?:\.\d+)?)", re.MULTILINE)
_KEEP = re.compile(r"^sdready_keep_sockets\s*=\s*(True|1|[\"'](?:1|true|yes|on)[\"'])", re.M | re.I)
_TRUE = ("1", "true", "yes", "on")
_PLUGIN = "sdready.plugins.gunicorn"


def _gunicorn(args: list[str], env: Mapping[str, str], cwd: str) -> AppFacts:
    extra = shlex.split(env.get("GUNICORN_CMD_ARGS", ""))
    config = _option([*args, *extra], "-c", "--config") or "gunicorn.conf.py"
    text = ""
    if not config.startswith("python:"):
        path = os.path.join(cwd, config) if cwd else config
        try:
            with open(path, encoding="utf-8", errors="replace") as file:
                text = file.read()
        except OSError:
            text = ""
    plugin = _PLUGIN in config or _PLUGIN in text
    graceful = _number(_option([*args, *extra], "--graceful-timeout"))
    if graceful is None:
        found = _GRACEFUL.search(text)
        graceful = float(found.group(1)) if found else 30.0  # gunicorn's default
    notes: tuple[str, ...] = ()
    if not plugin:
        notes = (
            f"gunicorn without {_PLUGIN} in its command line or {config}: its own READY "
            "comes before a worker serves; the sdready checks assume the plugin",
        )
    # The plugin's SDREADY_* environment (Environment= in the unit); its config module's
    # sdready_* names are not read here.
    ready_timeout = _number(env.get("SDREADY_READY_TIMEOUT")) or DEFAULT_READY_TIMEOUT
    watchdog = env.get("SDREADY_WATCHDOG", "1").strip().lower() not in ("0", "false", "no", "off")
    # Asked for explicitly (the default, "when systemd sets $FDSTORE", needs a store anyway).
    keep = env.get("SDREADY_KEEP_SOCKETS")
    keeps = keep.strip().lower() in _TRUE if keep is not None else bool(_KEEP.search(text))
    return AppFacts(
        server="gunicorn",
        front_end="gunicorn" if plugin else None,
        ready_from_child=False,  # the arbiter speaks for its workers
        ready_timeout=ready_timeout,
        on_timeout=env.get("SDREADY_ON_TIMEOUT", "warn"),
        watchdog=watchdog if plugin else None,
        on_hup="reloads" if plugin else "restarts",
        graceful_timeout=graceful,
        extends_stop=plugin,  # after STOPPING=1, within graceful_timeout (Readiness.drain)
        keeps_sockets=plugin and keeps,
        notes=notes,
    )
