"""The ``sdready`` command: reliable notifications from shell scripts, readiness for any server.

Subcommands and exit statuses (also in ``sdready --help``)::

    notify       0 sent and processed by the manager (BARRIER), 1 no notify socket,
                 2 usage error, 3 sending failed or the manager did not confirm in time
    exec         the command's exit status; killed by signal N: sdready ends itself with
                 the same signal (a shell shows 128+N; core-dumping signals exit 128+N);
                 2 usage error, 125 sdready itself failed, 126 command not executable,
                 127 command not found
    status       0 a notify socket is set, 1 none (or an invalid one), 2 usage error
    wait-listen  0 the expected listeners accept, 1 timeout (or the process exited),
                 2 usage error

Only loaded by the command itself, so it may import what it needs.
"""

from __future__ import annotations

import argparse
import contextlib
import errno as _errno
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, cast

from . import texts
from ._env import listen_fds_count, watchdog_interval
from ._exceptions import NotifyError
from ._listeners import Expect, Listener, ListenTimeoutError, _Expectation, _parse_expect
from ._notifier import Notifier, NotifyAddress, encode
from ._probe import Probe, parse_probe, probe_blocking
from ._readiness import Readiness, ReadyOptions, parse_expect
from ._version import __version__

if TYPE_CHECKING:
    from ._proctree import Method

__all__ = ["main"]

logger = logging.getLogger("sdready")

EXIT_OK = 0
EXIT_NO_SOCKET = 1  # notify/status: no NOTIFY_SOCKET; wait-listen: timed out
EXIT_USAGE = 2
EXIT_SEND_FAILED = 3
EXIT_INTERNAL = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127

FORWARDED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
# The signals with which a supervisor is asked to stop: STOPPING=1 goes out before forwarding.
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})
# Re-raising these on ourselves would dump a core of sdready: exit with 128+N instead.
_CORE_SIGNALS = frozenset(
    getattr(signal, name)
    for name in ("SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGSEGV",
                 "SIGSYS", "SIGXCPU", "SIGXFSZ")
    if hasattr(signal, name)
)  # fmt: skip
# Python ignores these at startup; a spawned command must get the default back.
_RESET_FOR_CHILD = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, name)
)
# Cross-process polls cost more than the in-process walk: start fast, back off to this.
_POLL_FIRST = 0.001
_POLL_MAX = 0.01
_POLL_DUTY = 0.05  # never spend more than ~5% of a core on polling
_PROBE_TIMEOUT = 1.0
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


class _UsageError(Exception):
    """A command line that parsed but makes no sense; reported like argparse errors (exit 2)."""


# -- argument parsing ----------------------------------------------------------------------


def _duration(text: str) -> float:
    """``"30"``, ``"1.5s"``, ``"500ms"``, ``"2min"`` → seconds (positive)."""
    stripped = text.strip().lower()
    number, unit = stripped, "s"
    for suffix in sorted(_DURATION_UNITS, key=len, reverse=True):
        if stripped.endswith(suffix):
            number, unit = stripped[: -len(suffix)].strip(), suffix
            break
    try:
        value = float(number) * _DURATION_UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (e.g. 30, 1.5s, 500ms, 2min)"
        ) from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"a duration must be positive and finite, not {text!r}")
    return value


def _pid_argument(text: str) -> int:
    if text == "parent":
        return os.getppid()
    if text == "self":
        return os.getpid()
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise argparse.ArgumentTypeError(f"expected a pid, 'parent' or 'self', not {text!r}")


def _expect_argument(text: str) -> list[int | str]:
    items = parse_expect(text)
    if items is None:
        raise argparse.ArgumentTypeError("--expect needs an address")
    try:
        _parse_expect(items)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return items


def _probe_argument(text: str) -> str:
    try:
        parse_probe(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdready",
        description="Tell systemd the truth: reliable sd_notify from scripts, and READY=1 "
        "for any server only once its listening socket accepts connections.",
        epilog="Run 'sdready COMMAND --help' for a command's options and exit statuses.",
    )
    parser.add_argument("--version", action="version", version=f"sdready {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    common.add_argument("-v", "--verbose", action="store_true", help="print debug messages")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    notify = commands.add_parser(
        "notify",
        parents=[common],
        help="send one notification and wait until the manager processed it",
        description="Send one sd_notify message, then wait until the service manager has "
        "processed it (BARRIER=1), so the message cannot be lost when this command exits "
        "before the manager looked at it. Messages from a process other than the unit's "
        "main process count only with NotifyAccess=all (or exec).",
        epilog="exit status: 0 sent and processed, 1 no notify socket ($NOTIFY_SOCKET unset; "
        "silent with --quiet), 2 usage error, 3 sending failed or no confirmation in time",
    )
    notify.add_argument("--ready", action="store_true", help="READY=1: start-up finished")
    notify.add_argument("--reloading", action="store_true", help="RELOADING=1 with MONOTONIC_USEC")
    notify.add_argument("--stopping", action="store_true", help="STOPPING=1")
    notify.add_argument("--status", metavar="TEXT", help="STATUS=TEXT")
    notify.add_argument(
        "--pid",
        type=_pid_argument,
        metavar="PID|parent",
        help="send on behalf of PID ('parent': the calling shell) with SCM_CREDENTIALS; "
        "the kernel allows that only for root, others send as themselves",
    )
    notify.add_argument(
        "--no-block", action="store_true", help="do not wait for the manager (no BARRIER)"
    )
    notify.add_argument(
        "--timeout",
        type=_duration,
        default=5.0,
        metavar="S",
        help="how long to wait for the manager (default 5 s)",
    )
    notify.add_argument(
        "assignments", nargs="*", metavar="FIELD=VALUE", help="more fields, e.g. MAINPID=123"
    )
    notify.set_defaults(handler=_cmd_notify, parser=notify)

    run = commands.add_parser(
        "exec",
        parents=[common],
        help="run a server and send READY=1 once its listening socket accepts connections",
        description="Run COMMAND as a child and send READY=1 (from this, the main process) "
        "once the child's process tree listens: the --expect addresses, or else the first "
        "listening socket that appears. NOTIFY_SOCKET is kept from the child. STATUS tells "
        "what is awaited; SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are "
        "forwarded (STOPPING=1 is sent first for TERM, INT and QUIT).",
        epilog="exit status: the command's; killed by signal N: sdready ends itself with the "
        "same signal (a shell shows 128+N; core-dumping signals exit with 128+N); 2 usage "
        "error, 125 sdready failed, 126 command not executable, 127 command not found",
    )
    _add_wait_options(run)
    run.add_argument(
        "--ready-timeout",
        type=_duration,
        default=ReadyOptions.ready_timeout,
        metavar="S",
        help="how long to wait for the listener (default %(default)g s)",
    )
    run.add_argument(
        "--on-timeout",
        choices=("warn", "fail", "ready"),
        default=ReadyOptions.on_timeout,
        help="warn: log an error and send READY anyway (default); fail: no READY, "
        "systemd's TimeoutStartSec= acts; ready: send READY quietly",
    )
    run.add_argument(
        "--watchdog",
        action="store_true",
        help="send WATCHDOG=1 at half of WatchdogSec= while the command runs",
    )
    run.add_argument(
        "--pass-notify",
        action="store_true",
        help="let the command inherit NOTIFY_SOCKET (it can then send its own messages; "
        "they count only with NotifyAccess=all)",
    )
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS ...]")
    run.set_defaults(handler=_cmd_exec, parser=run)

    status = commands.add_parser(
        "status",
        parents=[common],
        help="what the environment says about the service manager",
        description="Show the notify socket, watchdog, passed sockets and main pid that "
        "systemd put in the environment, with a hint on NotifyAccess=.",
        epilog="exit status: 0 a notify socket is set, 1 none or an invalid one",
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_cmd_status, parser=status)

    wait = commands.add_parser(
        "wait-listen",
        parents=[common],
        help="wait until a socket listens (for ExecStartPost=)",
        description="Wait until the expected listening sockets exist: in the process tree "
        "of --pid (e.g. ExecStartPost=sdready wait-listen --pid $MAINPID), or anywhere in "
        "this network namespace. Sends nothing to the manager.",
        epilog="exit status: 0 listening, 1 timed out (or the process exited), 2 usage error",
    )
    _add_wait_options(wait)
    wait.add_argument(
        "--pid", type=_pid_argument, metavar="PID", help="watch this process and its children"
    )
    wait.add_argument(
        "--timeout",
        type=_duration,
        default=ReadyOptions.ready_timeout,
        metavar="S",
        help="give up after S seconds (default %(default)g)",
    )
    wait.set_defaults(handler=_cmd_wait_listen, parser=wait)
    return parser


def _add_wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--expect",
        type=_expect_argument,
        action="append",
        metavar="ADDR",
        help="a listener that must exist: PORT, HOST:PORT (*:PORT any address), /unix/path "
        "or @abstract; repeat or separate with commas; all must be there",
    )
    parser.add_argument(
        "--probe",
        type=_probe_argument,
        metavar="connect|http:/PATH",
        help="also connect (and GET PATH, wanting a status below 500) before counting it",
    )
    parser.add_argument(
        "--discovery",
        choices=("auto", "pidfd", "proc"),
        default="auto",
        help="how another process's sockets are seen: pidfd_getfd, /proc/net tables, "
        "or the first that works (default)",
    )


# -- entry point ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sdready`` command line; return the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    command: str = args.command
    if args.quiet:
        level = logging.ERROR
    elif args.verbose:
        level = logging.DEBUG
    else:
        level = logging.INFO if command in ("exec", "wait-listen") else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"sdready {command}: %(message)s"))
    handler.setLevel(level)
    saved_level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    run: Callable[[argparse.Namespace], int] = args.handler
    try:
        return run(args)
    except _UsageError as exc:
        sub: argparse.ArgumentParser = args.parser
        sub.print_usage(sys.stderr)
        sys.stderr.write(f"sdready {command}: error: {exc}\n")
        return EXIT_USAGE
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved_level)


# -- notify --------------------------------------------------------------------------------


def _cmd_notify(args: argparse.Namespace) -> int:
    fields: dict[str, str | int] = {}
    if args.ready:
        fields["READY"] = 1
    if args.reloading:
        fields["RELOADING"] = 1
        fields["MONOTONIC_USEC"] = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    if args.stopping:
        fields["STOPPING"] = 1
    if args.status is not None:
        fields["STATUS"] = args.status
    for assignment in args.assignments:
        name, sep, value = assignment.partition("=")
        if not sep:
            raise _UsageError(f"{assignment!r} is not FIELD=VALUE")
        fields[name] = value
    if not fields:
        raise _UsageError("nothing to send: give --ready, --status TEXT, FIELD=VALUE, ...")
    try:
        encode(fields)  # a bad field name or a newline is the caller's mistake: exit 2
    except ValueError as exc:
        raise _UsageError(str(exc)) from None

    address = os.environ.get("NOTIFY_SOCKET")
    if address is None:
        if not args.quiet:  # scripts that also run outside systemd ask for silence here
            logger.error("NOTIFY_SOCKET is not set: not started by systemd as Type=notify")
        return EXIT_NO_SOCKET
    pid = args.pid if args.pid is not None and args.pid != os.getpid() else None
    try:
        notifier = Notifier(address, strict=True)
        with notifier:
            notifier.send(fields, pid=pid)
            if args.no_block:
                return EXIT_OK
            if not notifier.barrier(args.timeout):
                logger.error(
                    "the service manager did not confirm the message within %g s (BARRIER)",
                    args.timeout,
                )
                return EXIT_SEND_FAILED
    except NotifyError as exc:
        logger.error("%s", exc)
        return EXIT_SEND_FAILED
    logger.debug("sent and processed: %s", ", ".join(fields))
    return EXIT_OK


# -- status --------------------------------------------------------------------------------


def _cmd_status(args: argparse.Namespace) -> int:
    info, hints = _environment_report()
    if args.json:
        sys.stdout.write(json.dumps({**info, "hints": hints}, indent=2) + "\n")
    else:
        width = max(len(key) for key in info)
        for key, value in info.items():
            sys.stdout.write(f"{key:<{width}}  {'-' if value is None else value}\n")
        for hint in hints:
            sys.stdout.write(f"hint: {hint}\n")
    return EXIT_OK if info["notify_socket_valid"] else EXIT_NO_SOCKET


def _environment_report() -> tuple[dict[str, object], list[str]]:
    env = os.environ
    address = env.get("NOTIFY_SOCKET")
    valid = False
    problem: str | None = None
    hints: list[str] = []
    if address is None:
        problem = "not set: not started by systemd as Type=notify (or NotifyAccess=none)"
    else:
        try:
            parsed = NotifyAddress.parse(address)
        except ValueError as exc:
            problem = str(exc)
        else:
            valid = True
            if isinstance(parsed.sockaddr, str) and not parsed.sockaddr.startswith("\0"):
                if not os.path.exists(parsed.sockaddr):
                    problem = "the socket file does not exist"
                elif not os.access(parsed.sockaddr, os.W_OK):
                    problem = "no write permission on the socket"
    exec_pid = env.get("SYSTEMD_EXEC_PID")
    main_pid = int(exec_pid) if exec_pid and exec_pid.isdigit() else None
    if valid and main_pid is not None and main_pid != os.getpid():
        who = "the calling shell" if main_pid == os.getppid() else f"pid {main_pid}"
        hints.append(
            f"the unit's main process is {who}, not this command (pid {os.getpid()}): "
            "'sdready notify' from it needs NotifyAccess=all, or --pid parent as root"
        )
    watchdog_usec = env.get("WATCHDOG_USEC")
    watchdog_pid = env.get("WATCHDOG_PID")
    watchdog_for = int(watchdog_pid) if watchdog_pid and watchdog_pid.isdigit() else None
    period = watchdog_interval({"WATCHDOG_USEC": watchdog_usec or ""})
    if period is not None:
        hints.append(
            f"WatchdogSec= is {period:g} s: ping at least every {period / 2:g} s "
            "(sdready exec --watchdog does)"
        )
    listen_pid = env.get("LISTEN_PID")
    report: dict[str, object] = {
        "notify_socket": address,
        "notify_socket_valid": valid and problem is None,
        "notify_socket_problem": problem,
        "main_pid": main_pid,
        "pid": os.getpid(),
        "parent_pid": os.getppid(),
        "watchdog_sec": period,
        "watchdog_pid": watchdog_for,
        "listen_fds": int(env.get("LISTEN_FDS", "0") or 0)
        if env.get("LISTEN_FDS", "").isdigit()
        else None,
        "listen_fds_for_this_process": listen_fds_count(),
        "listen_pid": int(listen_pid) if listen_pid and listen_pid.isdigit() else None,
        "listen_fdnames": env.get("LISTEN_FDNAMES"),
        "invocation_id": env.get("INVOCATION_ID"),
        "exec_discovery": _discovery_summary(),
    }
    return report, hints


def _discovery_summary() -> str:
    from ._proctree import pidfd_getfd_support

    usable, why = pidfd_getfd_support()
    return f"pidfd ({why})" if usable else f"proc ({why})"


# -- waiting for another process's listeners -----------------------------------------------


class _ListenWait:
    """One wait for listeners from *source*: selection, probe, backoff, deadline.

    The selection mirrors :func:`sdready.wait_until_listening` without a baseline: with
    ``expect`` every entry must match; without it, what listens at the first poll, or else
    every listener seen by the first poll that sees any.
    """

    def __init__(
        self,
        source: Callable[[], list[Listener]],
        timeout: float,
        expect: Expect | None,
        probe: str | None,
    ) -> None:
        self.source = source
        self.expectations: tuple[_Expectation, ...] | None = (
            None if expect is None else _parse_expect(expect)
        )
        self.probe: Probe | None = parse_probe(probe)
        self.started = time.monotonic()
        self.timeout = timeout
        self.deadline = self.started + timeout
        self.interval = _POLL_FIRST
        self.cost = 0.0
        self.polls = 0
        self.current: list[Listener] = []
        self.probe_failure: str | None = None
        self.next_poll = self.started

    def poll(self) -> list[Listener] | None:
        """Poll once: the selected listeners (probed), or None; schedules the next poll."""
        began = time.perf_counter()
        self.current = self.source()
        self.cost = time.perf_counter() - began
        self.polls += 1
        selected = self._select(self.current)
        if selected is not None and self.probe is not None:
            for listener in selected:
                budget = min(_PROBE_TIMEOUT, max(0.001, self.deadline - time.monotonic()))
                failure = probe_blocking(listener, self.probe, budget)
                if failure is not None:
                    if failure != self.probe_failure:
                        logger.debug("probe %s of %s failed: %s", self.probe, listener, failure)
                    self.probe_failure = failure
                    selected = None
                    break
        now = time.monotonic()
        self.interval = min(self.interval * 2, _POLL_MAX)
        delay = max(self.interval, self.cost / _POLL_DUTY)
        if self.probe_failure is not None and selected is None:
            delay = max(delay, 0.05)  # probes reach into the app: retry them gently
        self.next_poll = min(now + delay, self.deadline)
        return selected

    def _select(self, current: list[Listener]) -> list[Listener] | None:
        if self.expectations is None:
            return current or None
        chosen: dict[int, Listener] = {}
        for expectation in self.expectations:
            found = [item for item in current if expectation.matches(item)]
            if not found:
                return None
            for item in found:
                chosen.setdefault(item.inode, item)
        return list(chosen.values())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def timeout_error(self) -> ListenTimeoutError:
        found = ", ".join(map(str, self.current)) or "no listening socket"
        missing: list[str] = []
        if self.expectations is not None:
            missing = [e.text for e in self.expectations if not any(map(e.matches, self.current))]
        elif not self.current:
            missing = ["any listening socket"]
        parts = [f"after {self.timeout:g} s: found {found}"]
        if missing:
            parts.append(f"expected but not found: {'; '.join(missing)}")
        elif self.probe_failure is not None:
            parts.append(f"probe {self.probe} failed: {self.probe_failure}")
        return ListenTimeoutError(
            "; ".join(parts), found=self.current, missing=missing, probe_failure=self.probe_failure
        )


def _flatten_expect(groups: list[list[int | str]] | None) -> list[int | str] | None:
    if not groups:
        return None
    return [item for group in groups for item in group]


# -- wait-listen ---------------------------------------------------------------------------


def _cmd_wait_listen(args: argparse.Namespace) -> int:
    expect = _flatten_expect(args.expect)
    from ._proctree import TreeListeners, alive, namespace_listeners

    watch: TreeListeners | None = None
    source: Callable[[], list[Listener]]
    if args.pid is None:
        if expect is None:
            raise _UsageError("give --expect ADDR (or --pid PID to take its first listener)")
        source = namespace_listeners
    else:
        if not alive(args.pid):
            logger.error("pid %d does not exist", args.pid)
            return EXIT_NO_SOCKET
        watch = TreeListeners(args.pid, _discovery_method(args.discovery))
        source = watch.poll
    waiter = _ListenWait(source, args.timeout, expect, args.probe)
    try:
        while True:
            selected = waiter.poll()
            if selected is not None:
                logger.info(
                    "listening on %s after %.0f ms",
                    texts.format_addresses(selected),
                    (time.monotonic() - waiter.started) * 1000,
                )
                return EXIT_OK
            if args.pid is not None and not alive(args.pid):
                logger.error("pid %d exited before listening", args.pid)
                return EXIT_NO_SOCKET
            if waiter.expired:
                logger.error("%s", waiter.timeout_error())
                return EXIT_NO_SOCKET
            time.sleep(max(0.0, waiter.next_poll - time.monotonic()))
    finally:
        if watch is not None:
            watch.close()


# -- exec ----------------------------------------------------------------------------------


def _cmd_exec(args: argparse.Namespace) -> int:
    argv: list[str] = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise _UsageError("give the command to run: sdready exec [OPTIONS] -- COMMAND [ARGS ...]")
    expect = _flatten_expect(args.expect)
    try:
        options = ReadyOptions(
            ready_timeout=args.ready_timeout,
            on_timeout=args.on_timeout,
            expect=expect,
            probe=args.probe,
            watchdog=args.watchdog,
        )
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    method = _discovery_method(args.discovery)
    supervisor = _Supervisor(argv, options, pass_notify=args.pass_notify, method=method)
    try:
        code = supervisor.run()
    except _SpawnError as exc:
        logger.error("cannot run %s: %s", argv[0], exc.reason)
        return exc.code
    return _exit_like(code)


def _discovery_method(name: str) -> Method:
    from ._proctree import pidfd_getfd_support

    if name == "pidfd" and not pidfd_getfd_support()[0]:
        raise _UsageError(f"--discovery pidfd: {pidfd_getfd_support()[1]}")
    return cast("Method", name)


class _SpawnError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _exit_like(code: int) -> int:
    """Turn a child's ``waitstatus_to_exitcode`` into ours: die of the same signal if need be.

    systemd treats a main process killed by SIGTERM (or INT, HUP, PIPE) as a clean stop but
    an exit status of 143 as a failure, so a plain ``exit(128+N)`` would turn every
    ``systemctl stop`` of an unhandled-SIGTERM server (node, http.server) into "failed".
    """
    if code >= 0:
        return code
    signum = -code
    if signum not in _CORE_SIGNALS:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP cannot be set
            signal.signal(signum, signal.SIG_DFL)
        with contextlib.suppress(OSError, ValueError):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
            os.kill(os.getpid(), signum)
    return 128 + signum  # a core-dumping signal, or one that did not end us


class _Supervisor:
    """Runs the command, watches its process tree's listeners, speaks for it to systemd.

    Single-threaded: the forwarded signals and SIGCHLD are blocked and collected with
    ``sigtimedwait``, between polls and watchdog pings, so no handler can interrupt a send.
    """

    def __init__(
        self, argv: list[str], options: ReadyOptions, *, pass_notify: bool, method: Method
    ) -> None:
        self.argv = argv
        self.options = options
        self.pass_notify = pass_notify
        self.method: Method = method
        self.notifier = Notifier()
        # Its STATUS texts and STOPPING/startup-failed rules; the wait itself is ours.
        self.readiness = Readiness(replace(options, notifier=self.notifier))
        self.pid = 0
        self.ready_sent = False
        self.stopping = False
        self.waiting = True
        self.exit_code: int | None = None

    def run(self) -> int:
        """Spawn, supervise until the command exits, and return its exit code (-N: signal N)."""
        signals = {*FORWARDED_SIGNALS, signal.SIGCHLD}
        # Blocked before the child exists, so neither a stop request nor its exit is missed.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        try:
            self.pid = self._spawn(old_mask)
            return self._supervise(signals)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _spawn(self, child_mask: Iterable[int]) -> int:
        env = dict(os.environ)
        argv = self.argv
        if self.pass_notify:
            # WATCHDOG_PID names us: without it the command's own library may feed the watchdog.
            env.pop("WATCHDOG_PID", None)
        else:
            env.pop("NOTIFY_SOCKET", None)  # no premature READY from the command itself
        if listen_fds_count() > 0:
            # Socket activation: the fds are inherited as they are, but sd_listen_fds() in
            # the command checks LISTEN_PID against its own pid, unknown until it exists.
            argv = ["/bin/sh", "-c", 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', "sh", *argv]
        try:
            pid = os.posix_spawnp(
                argv[0],
                argv,
                env,
                # Its own process group: a terminal's Ctrl-C reaches only us, forwarded once.
                setpgroup=0,
                setsigmask=child_mask,
                setsigdef=_RESET_FOR_CHILD,
            )
        except FileNotFoundError:
            raise _SpawnError(EXIT_NOT_FOUND, "command not found") from None
        except PermissionError as exc:
            raise _SpawnError(EXIT_NOT_EXECUTABLE, exc.strerror or "permission denied") from None
        except OSError as exc:
            code = EXIT_NOT_EXECUTABLE if exc.errno == _errno.ENOEXEC else EXIT_INTERNAL
            raise _SpawnError(code, exc.strerror or str(exc)) from None
        logger.info("started %s as pid %d", " ".join(self.argv), pid)
        return pid

    def _supervise(self, signals: set[signal.Signals]) -> int:
        from ._proctree import TreeListeners

        options = self.options
        watch = TreeListeners(self.pid, self.method)
        waiter = _ListenWait(watch.poll, options.ready_timeout, options.expect, options.probe)
        self.readiness.waiting()
        period = watchdog_interval() if options.watchdog else None
        self._check_watchdog(period)
        next_ping = time.monotonic()
        try:
            while self.exit_code is None:
                now = time.monotonic()
                wake = [next_ping] if period is not None else []
                if self.waiting:
                    wake.append(waiter.next_poll)
                timeout = max(0.0, min(wake) - now) if wake else None
                info = (
                    signal.sigwaitinfo(signals)
                    if timeout is None
                    else signal.sigtimedwait(signals, timeout)
                )
                if info is not None:
                    self._on_signal(info.si_signo)
                    continue  # drain pending signals before more work
                now = time.monotonic()
                if self.waiting and now >= waiter.next_poll:
                    self._poll(waiter, watch.method)
                if period is not None and now >= next_ping:
                    self.notifier.watchdog()
                    next_ping = max(next_ping + period / 2, now)
        finally:
            watch.close()
        return self.exit_code

    def _check_watchdog(self, period: float | None) -> None:
        if self.options.watchdog:
            if period is None:
                logger.info("--watchdog: no WatchdogSec= for this process, nothing to feed")
            else:
                logger.info("feeding the watchdog every %g s", period / 2)
        elif watchdog_interval() is not None and not self.pass_notify:
            logger.warning(
                "WatchdogSec= is set but nobody feeds it: add --watchdog (or --pass-notify if "
                "the command pings itself), or systemd will kill the service"
            )

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            self._reap()
            return
        if signum in STOP_SIGNALS and not self.stopping:
            self.stopping = True
            self.waiting = False
            self.readiness.stopping()
        logger.info("forwarding %s to pid %d", signal.Signals(signum).name, self.pid)
        with contextlib.suppress(ProcessLookupError):  # exited: its SIGCHLD is pending
            os.kill(self.pid, signum)

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 0
        if pid == 0:
            return  # stopped/continued, or a grandchild's noise
        code = os.waitstatus_to_exitcode(status)
        self.exit_code = code
        how = f"exited with status {code}" if code >= 0 else f"was killed by {_signame(-code)}"
        logger.info("pid %d %s", self.pid, how)
        if not self.ready_sent and not self.stopping:
            self.readiness.startup_failed(f"{self.argv[0]} {how} before listening")

    def _poll(self, waiter: _ListenWait, method: str) -> None:
        try:
            selected = waiter.poll()
        except Exception as exc:  # a discovery bug must not orphan the command: stop waiting
            logger.exception("listener discovery failed")
            self._timed_out(exc)
            return
        if selected is not None:
            self._ready(selected, waiter, method)
        elif waiter.expired:
            self._timed_out(waiter.timeout_error())

    def _ready(self, selected: list[Listener], waiter: _ListenWait, method: str) -> None:
        self.waiting = False
        self.ready_sent = True
        status = texts.READY.format(addresses=texts.format_addresses(selected), pid=self.pid)
        sent = self.notifier.ready(status)
        logger.info(
            "%s after %.0f ms: %s (sockets seen through %s)",
            "READY=1 sent" if sent else "ready (READY=1 not sent: no notify socket)",
            (time.monotonic() - waiter.started) * 1000,
            status,
            method,
        )

    def _timed_out(self, exc: Exception) -> None:
        self.waiting = False
        policy = self.options.on_timeout
        timeout = self.options.ready_timeout
        if policy == "fail":
            logger.error("not sending READY: %s", exc)
            self.notifier.status(texts.TIMEOUT_FAIL.format(timeout=timeout))
            return
        if policy == "warn":
            logger.error("sending READY although no listening socket was seen: %s", exc)
            status = texts.TIMEOUT_WARN.format(timeout=timeout, pid=self.pid)
        else:
            logger.info("sending READY after the listener wait timed out (--on-timeout ready)")
            status = texts.READY_UNCHECKED.format(pid=self.pid)
        self.ready_sent = True
        self.notifier.ready(status)


def _signame(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
