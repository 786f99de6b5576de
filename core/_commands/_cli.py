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
    doctor       0 clean (notes included), 1 warnings, 2 errors, 3 the unit could not be
                 read

Only loaded by the command itself, so it may import what it needs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar, cast

from .._env import listen_fds_count, main_pid, notify_socket, watchdog_setting
from .._log import DEBUG, ERROR, INFO, WARNING, logger, stderr_log
from .._notify._notifier import NotifyAddress
from .._options import ReadyOptions
from .._values import ON_TIMEOUT
from .._version import __version__
from ._cli_fast import duration, expect_items, probe_text
from ._cli_notify import DEFAULT_TIMEOUT, EXIT_NO_SOCKET, deliver, fields_of, status_cut

if TYPE_CHECKING:
    from .._listen._proctree import Method

__all__ = ["main"]

T = TypeVar("T")

EXIT_OK = 0
# EXIT_NO_SOCKET (1; notify/status: no NOTIFY_SOCKET, wait-listen: timed out) and notify's
# EXIT_SEND_FAILED (3) are defined with the notify command, in _cli_notify.
EXIT_USAGE = 2


Handler = Callable[[argparse.Namespace], int]


class _UsageError(Exception):
    """A command line that parsed but makes no sense; reported like argparse errors (exit 2)."""


# -- argument parsing ----------------------------------------------------------------------


def _argument_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from one of the options' parsers: its ValueError is a usage error."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__  # argparse names the type in its messages
    return convert


# The fast paths' own readers of these values, so both paths check them alike.
_duration = _argument_type(duration)
_expect_argument = _argument_type(expect_items)
_probe_argument = _argument_type(probe_text)


def _pid_argument(text: str) -> int:
    if text == "parent":
        return os.getppid()
    if text == "self":
        return os.getpid()
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise argparse.ArgumentTypeError(f"expected a pid, 'parent' or 'self', not {text!r}")


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

    def command(
        name: str, handler: Handler, *, help: str, description: str, epilog: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, parents=[common], help=help, description=description, epilog=epilog
        )
        sub.set_defaults(handler=handler, parser=sub)
        return sub

    notify = command(
        "notify",
        _cmd_notify,
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
    _seconds(notify, "--timeout", DEFAULT_TIMEOUT, "how long to wait for the manager")
    notify.add_argument(
        "assignments", nargs="*", metavar="FIELD=VALUE", help="more fields, e.g. MAINPID=123"
    )

    run = command(
        "exec",
        _cmd_exec,
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
    _seconds(
        run, "--ready-timeout", ReadyOptions.ready_timeout, "how long to wait for the listener"
    )
    run.add_argument(
        "--on-timeout",
        choices=ON_TIMEOUT,
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
    run.add_argument(
        "--listen",
        action="append",
        metavar="ADDR",
        help="own a listening socket (IP:PORT, [IPv6]:PORT, /unix/path, @abstract; passed by "
        "systemd or bound), keep it in the fd store and hand it to COMMAND as fd 3, 4, ... "
        "with LISTEN_FDS; READY then waits for --probe (default http:/); repeatable",
    )
    run.add_argument(
        "--ready-address",
        metavar="HOST:PORT",
        help="answer GET /readyz (200 between READY and the stop, else 503 with the phase) "
        "and /livez on this address; the wait then runs without NOTIFY_SOCKET too",
    )
    run.add_argument(
        "--shutdown-delay",
        type=_delay_arg,
        default=0.0,
        metavar="SECONDS",
        help="on SIGTERM send STOPPING=1, answer 503 on /readyz and forward SIGTERM to "
        "COMMAND only after SECONDS (a second SIGTERM or a SIGINT: at once)",
    )
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS ...]")

    status = command(
        "status",
        _cmd_status,
        help="what the environment says about the service manager",
        description="Show the notify socket, watchdog, passed sockets and main pid that "
        "systemd put in the environment, with a hint on NotifyAccess=.",
        epilog="exit status: 0 a notify socket is set, 1 none or an invalid one",
    )
    status.add_argument("--json", action="store_true", help="print JSON")

    wait = command(
        "wait-listen",
        _cmd_wait_listen,
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
    _seconds(wait, "--timeout", ReadyOptions.ready_timeout, "give up after S seconds")

    doctor = command(
        "doctor",
        _cmd_doctor,
        help="check that a unit's settings match what its server does",
        description="Read UNIT's settings (systemctl show) and its ExecStart= line, and "
        "check them against what the server and sdready will do: Type=, NotifyAccess=, "
        "TimeoutStartSec=, WatchdogSec=, reloads, KillMode=, TimeoutStopSec=. The same "
        "checks run at startup under systemd and log a WARNING each (a note: INFO).",
        epilog="exit status: 0 clean (notes included), 1 warnings, 2 errors, 3 the unit "
        "could not be read (not found, or no systemd to ask)",
    )
    doctor.add_argument("unit", nargs="?", metavar="UNIT", help="default: this process's unit")
    doctor.add_argument("--user", action="store_true", help="a unit of the user manager")
    doctor.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _seconds(parser: argparse.ArgumentParser, flag: str, default: float, help: str) -> None:
    parser.add_argument(
        flag, type=_duration, default=default, metavar="S", help=f"{help} (default %(default)g s)"
    )


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
        choices=("auto", "sockdiag", "pidfd", "proc"),
        default="auto",
        help="how another process's sockets are seen: a netlink sock_diag dump of the "
        "listeners, pidfd_getfd, /proc/net tables, or the first that works (default)",
    )


# -- entry point ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sdready`` command line; return the exit status."""
    parser = _build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would name no command and show the top-level usage
        sub: argparse.ArgumentParser = args.parser
        sub.error(f"unrecognized arguments: {' '.join(unknown)}")
    command: str = args.command
    if args.quiet:
        level = ERROR
    elif args.verbose:
        level = DEBUG
    else:
        level = INFO if command in ("exec", "wait-listen") else WARNING
    run: Callable[[argparse.Namespace], int] = args.handler
    with stderr_log(command, level):
        try:
            return run(args)
        except _UsageError as exc:
            sub = args.parser
            sub.print_usage(sys.stderr)
            sys.stderr.write(f"sdready {command}: error: {exc}\n")
            return EXIT_USAGE


# -- notify --------------------------------------------------------------------------------


def _cmd_notify(args: argparse.Namespace) -> int:
    try:
        fields = fields_of(args)
    except ValueError as exc:  # a bad field name or a newline is the caller's mistake
        raise _UsageError(str(exc)) from None
    if notify_socket() is None:
        if not args.quiet:  # scripts that also run outside systemd ask for silence here
            logger.error("NOTIFY_SOCKET is not set: not started by systemd as Type=notify")
        return EXIT_NO_SOCKET
    cut = status_cut(fields)
    if cut is not None:
        logger.warning("%s", cut)
    pid = args.pid if args.pid is not None and args.pid != os.getpid() else None
    code, error = deliver(fields, pid=pid, no_block=args.no_block, timeout=args.timeout)
    if error is not None:
        logger.error("%s", error)
    elif not args.no_block:
        logger.debug("sent and processed: %s", ", ".join(fields))
    return code


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
    address = notify_socket()
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
    main = main_pid()
    if valid and main is not None and main != os.getpid():
        who = "the calling shell" if main == os.getppid() else f"pid {main}"
        hints.append(
            f"the unit's main process is {who}, not this command (pid {os.getpid()}): "
            "'sdready notify' from it needs NotifyAccess=all, or --pid parent as root"
        )
    period, watchdog_for = watchdog_setting()
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
        "main_pid": main,
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
    """The method ``sdready exec --discovery auto`` uses here, and why not the better ones."""
    from .._listen._proctree import pidfd_getfd_support, sockdiag_support

    diag, diag_why = sockdiag_support()
    if diag:
        return f"sockdiag ({diag_why}; for a child in our network namespace)"
    usable, why = pidfd_getfd_support()
    return f"pidfd ({why}; {diag_why})" if usable else f"proc ({why}; {diag_why})"


# -- waiting for another process's listeners -----------------------------------------------


def _flatten_expect(groups: list[list[int | str]] | None) -> list[int | str] | None:
    if not groups:
        return None
    return [item for group in groups for item in group]


# -- wait-listen ---------------------------------------------------------------------------


def _cmd_wait_listen(args: argparse.Namespace) -> int:
    expect = _flatten_expect(args.expect)
    if args.pid is None and expect is None:
        raise _UsageError("give --expect ADDR (or --pid PID to take its first listener)")
    from ._cli_wait import wait_listen

    method = _discovery_method(args.discovery)
    return wait_listen(expect, pid=args.pid, timeout=args.timeout, probe=args.probe, method=method)


# -- doctor --------------------------------------------------------------------------------


def _cmd_doctor(args: argparse.Namespace) -> int:
    from ._doctor import run

    return run(args)


# -- exec ----------------------------------------------------------------------------------


def _cmd_exec(args: argparse.Namespace) -> int:
    argv: list[str] = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise _UsageError("give the command to run: sdready exec [OPTIONS] -- COMMAND [ARGS ...]")
    from ._cli_exec import run
    from ._exec import Supervisor

    try:
        supervisor = Supervisor(
            argv,
            {
                "ready_timeout": args.ready_timeout,
                "on_timeout": args.on_timeout,
                "expect": _flatten_expect(args.expect),
                "probe": args.probe,
                "watchdog": args.watchdog,
            },
            pass_notify=args.pass_notify,
            method=_discovery_method(args.discovery),
            listen=args.listen or (),
            ready_address=args.ready_address,
            shutdown_delay=args.shutdown_delay,
        )
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    return run(supervisor)


def _delay_arg(text: str) -> float:
    from .._values import PARSERS

    return float(PARSERS["shutdown_delay"]("--shutdown-delay", text))  # type: ignore[arg-type]


def _discovery_method(name: str) -> Method:
    from .._listen._proctree import pidfd_getfd_support, sockdiag_support

    for method, support in (("pidfd", pidfd_getfd_support), ("sockdiag", sockdiag_support)):
        if name == method and not support()[0]:
            raise _UsageError(f"--discovery {method}: {support()[1]}")
    return cast("Method", name)
