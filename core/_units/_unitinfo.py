"""What a unit says: the systemd side of the unit checks (:mod:`sdready._units._unitcheck`).

:func:`read_unit` asks systemd with one bounded ``systemctl show`` call (the property values
are plain text there, no D-Bus library needed) and :class:`UnitConfig` holds the answer;
:func:`own_unit` finds this process's unit in its cgroup. What the unit's ``ExecStart=``
runs is the other side (:mod:`sdready._units._appfacts`).

Only imported under systemd or by the command: ``import sdready`` never loads this module.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "PROPERTIES",
    "UnitConfig",
    "UnitError",
    "UnitProblem",
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
    "SourcePath",
)

_TIMESPAN_UNITS = {
    "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0,
    "min": 60.0, "h": 3600.0, "hr": 3600.0, "d": 86400.0, "w": 604800.0,
    "month": 2629800.0, "y": 31557600.0,
}  # fmt: skip
_TIMESPAN_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")
_NO_MANAGER = ("Failed to connect to bus", "not been booted with systemd")
_ARGV = re.compile(r"argv\[\]=(.*?) ; (?:ignore_errors|flags)=")


UnitProblem = Literal["not-found", "no-manager", "unloaded", "unreadable"]


class UnitError(Exception):
    """systemd could not be asked, or does not know the unit; the message says which.

    *problem*: ``not-found`` (no such unit), ``no-manager`` (no systemd to ask: not booted
    with it, no user session), ``unloaded`` (masked, a bad setting), ``unreadable``
    (systemctl missing, failing, too slow).
    """

    def __init__(self, message: str, problem: UnitProblem = "unreadable", said: str = "") -> None:
        super().__init__(message)
        self.problem: UnitProblem = problem
        self.said = said or message  # the words of systemd (or the OS) alone


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
    source_path: str = ""  # a generator's source: Quadlet's .container file

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
            source_path=props.get("SourcePath", ""),
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
        said = " ".join(output.split()) or f"status {code}"
        # sd_bus's words when there is no manager to ask: not booted with systemd ("Host is
        # down"), no user session bus ("No medium found", "$DBUS_SESSION_BUS_ADDRESS").
        no_manager = any(m in output for m in _NO_MANAGER)
        last = output.strip().splitlines()[-1] if output.strip() else said
        problem: UnitProblem = "no-manager" if no_manager else "unreadable"
        raise UnitError(f"{command} {name}: {said}", problem, last)
    state = props.get("LoadState")
    if state == "not-found":
        raise UnitError(f"{name}: LoadState=not-found", "not-found", "LoadState=not-found")
    if state in ("bad-setting", "error", "masked"):
        raise UnitError(f"{name}: LoadState={state}", "unloaded", f"LoadState={state}")
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

    try:
        read_end, write_end = os.pipe()
    except OSError as exc:  # out of descriptors
        raise UnitError(f"cannot run {argv[0]}: {exc}") from None
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
        missing: UnitProblem = "no-manager" if exc.errno == errno.ENOENT else "unreadable"
        raise UnitError(f"{argv[0]}: {exc.strerror or exc}", missing) from None
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
