"""What a unit's ``ExecStart=`` runs, read from its command line: the app's side of the
unit checks (:mod:`sdready._units._unitcheck`).

:func:`describe_command` knows the servers sdready meets (uvicorn, hypercorn, granian,
gunicorn, waitress, ``flask run``) and ``sdready exec``: which server runs, whether sdready
fronts it, which process will notify, what SIGHUP does to it, its options where the command
line (or gunicorn's config file, or ``SDREADY_*`` in the unit's environment) says them.
What it cannot tell stays None, and the checks that need it are skipped.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal, TypeVar

from .._values import (
    DEFAULT_ON_TIMEOUT,
    DEFAULT_READY_TIMEOUT,
    ON_TIMEOUT,
    parse_bool,
    parse_duration,
)

_T = TypeVar("_T")

__all__ = ["AppFacts", "OnHup", "describe_command", "podman_sdnotify"]

#: What SIGHUP does: sdready's front end reloads (RELOADING=1, READY=1 again), the server
#: restarts its workers silently, or the process dies (the default action).
OnHup = Literal["reloads", "restarts", "dies"]


@dataclass(frozen=True)
class AppFacts:
    """What the app side will do: the other half of each check.

    ``None`` means unknown: a check that needs the fact is skipped rather than guessed.
    """

    server: str | None = None  # "uvicorn", "gunicorn", ... None: not recognised
    front_end: str | None = None  # sdready's front end: "exec", "gunicorn", "engine"; None: unknown
    ready_from_child: bool | None = None  # READY/STOPPING/WATCHDOG from another pid than main
    ready_timeout: float = DEFAULT_READY_TIMEOUT
    on_timeout: str = DEFAULT_ON_TIMEOUT
    watchdog: bool | None = None  # sdready pings WATCHDOG=1
    on_hup: OnHup | None = None
    forwards_signals: bool = False  # sdready exec: signals reach the command through it
    holds_sigterm: bool = False  # gunicorn's shutdown delay: only the arbiter may get SIGTERM
    graceful_timeout: float | None = None  # gunicorn
    extends_stop: bool = False  # sdready extends the stop timeout while the server drains
    keeps_sockets: bool = False  # asks systemd to keep its listening sockets (fd store)
    sockets_kept: int | None = None  # how many, where the command line says (None: unknown)
    sdnotify: str | None = None  # podman run's --sdnotify= (default conmon); None: no podman
    notes: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        """True when a web server, an sdready front end or a podman container runs (not a
        client, not a script)."""
        return self.server is not None or self.front_end is not None or self.sdnotify is not None


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


def _count(args: Sequence[str], *names: str) -> int:
    """How many times ``--name V`` or ``--name=V`` is given."""
    return sum(1 for arg in args if arg.partition("=")[0] in names)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _parsed(parse: Callable[[str, str], _T], name: str, text: str | None) -> _T | None:
    """*text* read by the option's own parser (the app reads it so), None if absent or bad:
    a bad value stops the app itself, with its own message."""
    if text is None:
        return None
    try:
        return parse(name, text)
    except ValueError:
        return None


def _on_timeout(text: str | None) -> str:
    value = (text or "").strip().lower()
    return value if value in ON_TIMEOUT else DEFAULT_ON_TIMEOUT


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


#: podman's global options that take a value (before ``run``).
_PODMAN_VALUED = frozenset(
    {"--root", "--runroot", "--storage-driver", "--storage-opt", "--cgroup-manager",
     "--events-backend", "--log-level", "--runtime", "--conmon", "--network-cmd-path",
     "--tmpdir", "--url", "--connection", "--identity", "--module", "--hooks-dir"}
)  # fmt: skip


def podman_sdnotify(argv: Sequence[str]) -> str | None:
    """The ``--sdnotify=`` mode of a ``podman run`` (or ``podman container run``) command
    line, ``conmon`` (podman's default) when it says none; None when *argv* runs no podman.

    Quadlet's ``.container`` units run exactly such a line (``--sdnotify=conmon``, or
    ``container`` with ``Notify=yes``).
    """
    program, args = _program(argv)
    if program != "podman":
        return None
    index = 0
    while index < len(args) and args[index].startswith("-"):  # podman's global options
        index += 2 if args[index] in _PODMAN_VALUED else 1
    rest = args[index:]
    if rest[:2] == ["container", "run"]:
        rest = rest[1:]
    if rest[:1] != ["run"]:
        return None
    # The image (or --rootfs path) ends podman's options: what follows is the container's.
    options: list[str] = []
    for arg in rest[1:]:
        if not arg.startswith("-") and (
            not options or "=" in options[-1] or not _takes_value(options[-1])
        ):
            break
        options.append(arg)
    return _option(options, "--sdnotify") or "conmon"


#: podman run's boolean options: every other ``--flag`` without ``=`` takes the next word.
_PODMAN_RUN_FLAGS = frozenset(
    {"--rm", "-d", "--detach", "-i", "--interactive", "-t", "--tty", "--replace",
     "--rootfs", "--privileged", "--read-only", "--init", "--no-hosts", "--no-healthcheck",
     "-P", "--publish-all", "--sig-proxy", "--http-proxy", "--read-only-tmpfs", "-q", "--quiet"}
)  # fmt: skip


def _takes_value(flag: str) -> bool:
    return flag not in _PODMAN_RUN_FLAGS and not (flag.startswith("-") and "=" in flag)


def _unrecognised(argv: Sequence[str], program: str, args: list[str], cwd: str) -> AppFacts:
    sdnotify = podman_sdnotify(argv)
    if sdnotify is not None:
        # What runs inside is not on this line (an image): the generic checks, and podman's.
        return AppFacts(
            sdnotify=sdnotify, notes=("podman run: the app's server is in a container",)
        )
    shown = " ".join([os.path.basename(argv[0]), *argv[1:2]]) if argv else "no command"
    if program == "python" and args and _mentions_sdready(os.path.join(cwd, args[0])):
        # python app.py with a plugin inside (Flask under waitress, app.run()): sdready runs.
        note = f"{shown} uses sdready, its server is not known: the generic checks and Type="
        return AppFacts(front_end="python", notes=(note,))
    note = f"{shown} is not a server sdready knows: generic checks only"
    return AppFacts(notes=(note,))


def _mentions_sdready(path: str) -> bool:
    return "sdready" in _read_text(path)


#: How much of a script or config file is read: more than any real one holds.
_READ_LIMIT = 200_000


def _read_text(path: str) -> str:
    """The start of *path* (at most :data:`_READ_LIMIT` bytes) if it is a regular file,
    else "". ``doctor`` may run as root on a directory a user can write to: a FIFO planted
    there must not block it (opened non-blocking, then checked with ``fstat``), nor a
    device or a huge file keep it reading."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        chunks: list[bytes] = []
        left = _READ_LIMIT
        while left > 0 and (chunk := os.read(fd, min(left, 65536))):
            chunks.append(chunk)
            left -= len(chunk)
    except OSError:
        return ""
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def _sdready_exec(args: list[str], env: Mapping[str, str], cwd: str) -> AppFacts:
    command = args[args.index("--") + 1 :] if "--" in args else []
    options = args[: args.index("--")] if "--" in args else args
    inner = describe_command(command, env, cwd) if command else AppFacts()
    timeout = _parsed(parse_duration, "--ready-timeout", _option(options, "--ready-timeout"))
    watchdog: bool | None = "--watchdog" in options
    if not watchdog and "--pass-notify" in options:
        watchdog = None  # the command may ping itself
    return replace(
        inner,
        front_end="exec",
        ready_from_child=False,  # READY, STOPPING and WATCHDOG come from sdready, the main pid
        ready_timeout=timeout or DEFAULT_READY_TIMEOUT,
        on_timeout=_on_timeout(_option(options, "--on-timeout")),
        watchdog=watchdog,
        on_hup="restarts" if inner.on_hup in ("restarts", "reloads") else inner.on_hup,
        forwards_signals=True,
        keeps_sockets=_option(options, "--listen") is not None,  # into systemd's fd store
        sockets_kept=_count(options, "--listen") or None,
    )


_GRACEFUL = re.compile(r"^graceful_timeout\s*=\s*(\d+(?:\.\d+)?)", re.MULTILINE)
_KEEP = re.compile(r"^sdready_keep_sockets\s*=\s*(True|1|[\"'](?:1|true|yes|on)[\"'])", re.M | re.I)
_PLUGIN = "sdready.plugins.gunicorn"


def _gunicorn(args: list[str], env: Mapping[str, str], cwd: str) -> AppFacts:
    extra = shlex.split(env.get("GUNICORN_CMD_ARGS", ""))
    config = _option([*args, *extra], "-c", "--config") or "gunicorn.conf.py"
    text = ""
    if not config.startswith("python:"):
        text = _read_text(os.path.join(cwd, config) if cwd else config)
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
    ready_timeout = (
        _parsed(parse_duration, "SDREADY_READY_TIMEOUT", env.get("SDREADY_READY_TIMEOUT"))
        or DEFAULT_READY_TIMEOUT
    )
    watchdog = _parsed(parse_bool, "SDREADY_WATCHDOG", env.get("SDREADY_WATCHDOG"))
    # Asked for explicitly (the default, "when systemd sets $FDSTORE", needs a store anyway).
    keep = _parsed(parse_bool, "SDREADY_KEEP_SOCKETS", env.get("SDREADY_KEEP_SOCKETS"))
    keeps = keep if keep is not None else bool(_KEEP.search(text))
    delay = _parsed(parse_duration, "SDREADY_SHUTDOWN_DELAY", env.get("SDREADY_SHUTDOWN_DELAY"))
    return AppFacts(
        server="gunicorn",
        front_end="gunicorn" if plugin else None,
        ready_from_child=False,  # the arbiter speaks for its workers
        ready_timeout=ready_timeout,
        on_timeout=_on_timeout(env.get("SDREADY_ON_TIMEOUT")),
        watchdog=(True if watchdog is None else watchdog) if plugin else None,
        on_hup="reloads" if plugin else "restarts",
        graceful_timeout=graceful,
        extends_stop=plugin,  # after STOPPING=1, within graceful_timeout (Readiness.drain)
        holds_sigterm=plugin and bool(delay),
        keeps_sockets=plugin and keeps,
        # Binds on the command line; one in the config file is not counted here (unknown).
        sockets_kept=_count([*args, *extra], "-b", "--bind") or None,
        notes=notes,
    )
