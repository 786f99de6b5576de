"""``sdready notify``: one message to the service manager, then wait until it processed it.

Shell scripts call it at each step of a start, so it must start about as fast as the
interpreter itself. The command's logic lives here, with two drivers: :mod:`._cli`
(argparse: every form of the command line, ``--help``, usage errors) and :func:`fast_main`,
which :mod:`.__main__` tries first. It reads the common forms without argparse and this
module imports only what sending needs (no argparse, logging, dataclasses or typing); any
other command line, and every problem found before sending, goes to :mod:`._cli`, which
then handles it as it always did. See ``benchmarks/cli_startup.py``.
"""

from __future__ import annotations

import os
import time

from ._exceptions import NotifyError
from ._notifier import Notifier
from ._protocol import encode

TYPE_CHECKING = False  # typing itself is not imported on this path
if TYPE_CHECKING:
    from typing import Protocol

    class Options(Protocol):
        """argparse's namespace, or the fast parser's request."""

        ready: bool
        reloading: bool
        stopping: bool
        status: str | None
        assignments: list[str]


__all__ = [
    "DEFAULT_TIMEOUT",
    "EXIT_NO_SOCKET",
    "EXIT_OK",
    "EXIT_SEND_FAILED",
    "deliver",
    "fast_main",
    "fields_of",
]

EXIT_OK = 0
EXIT_NO_SOCKET = 1
EXIT_SEND_FAILED = 3

_FLAGS = {
    "--ready": "ready",
    "--reloading": "reloading",
    "--stopping": "stopping",
    "--no-block": "no_block",
    "-q": "quiet",
    "--quiet": "quiet",
}
DEFAULT_TIMEOUT = 5.0  #: --timeout: how long to wait for the manager (BARRIER)


def fields_of(options: Options) -> dict[str, str | int]:
    """The message the command line's *options* ask for; :class:`ValueError` for a usage
    error."""
    fields: dict[str, str | int] = {}
    if options.ready:
        fields["READY"] = 1
    if options.reloading:
        fields["RELOADING"] = 1
        fields["MONOTONIC_USEC"] = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    if options.stopping:
        fields["STOPPING"] = 1
    if options.status is not None:
        fields["STATUS"] = options.status
    for assignment in options.assignments:
        name, sep, value = assignment.partition("=")
        if not sep:
            raise ValueError(f"{assignment!r} is not FIELD=VALUE")
        fields[name] = value
    if not fields:
        raise ValueError("nothing to send: give --ready, --status TEXT, FIELD=VALUE, ...")
    encode(fields)  # a bad field name or a newline is the caller's mistake: a usage error
    return fields


def deliver(
    fields: dict[str, str | int], *, pid: int | None, no_block: bool, timeout: float
) -> tuple[int, str | None]:
    """Send *fields* to ``$NOTIFY_SOCKET`` (set) and, unless *no_block*, wait for BARRIER.

    Returns the exit status and, for a failure, the error to report.
    """
    try:
        with Notifier(os.environ["NOTIFY_SOCKET"], strict=True) as notifier:
            notifier.send(fields, pid=pid)
            if not no_block and not notifier.barrier(timeout):
                return EXIT_SEND_FAILED, (
                    f"the service manager did not confirm the message within {timeout:g} s "
                    "(BARRIER)"
                )
    except NotifyError as exc:
        return EXIT_SEND_FAILED, str(exc)
    return EXIT_OK, None


class _Request:
    """What the fast parser read: the subset of the command line it understands."""

    __slots__ = (
        "assignments",
        "no_block",
        "quiet",
        "ready",
        "reloading",
        "status",
        "stopping",
        "timeout",
    )

    def __init__(self) -> None:
        self.ready = self.reloading = self.stopping = self.no_block = self.quiet = False
        self.status: str | None = None
        self.timeout = DEFAULT_TIMEOUT
        self.assignments: list[str] = []


def _parse(argv: list[str]) -> _Request | None:
    """The command line as argparse would read it, or None for anything less common."""
    request = _Request()
    items = iter(argv)
    block_ended = False  # argparse takes FIELD=VALUE as one block: later ones are errors
    for item in items:
        if item in _FLAGS:
            setattr(request, _FLAGS[item], True)
        elif item in ("--status", "--timeout") or item.startswith(("--status=", "--timeout=")):
            name, sep, value = item.partition("=")
            if not sep:
                value = next(items, "-")
                if value.startswith("-"):  # argparse's own rules decide
                    return None
            if name == "--status":
                request.status = value
            elif value.replace(".", "", 1).isdigit() and float(value) > 0:
                request.timeout = float(value)  # as parse_duration reads a plain number
            else:
                return None
        elif item.startswith("-") or (block_ended and request.assignments):
            return None  # -v, --pid, --help, --, abbreviations, a second FIELD=VALUE block
        else:
            request.assignments.append(item)
            continue
        block_ended = bool(request.assignments)
    return request


def fast_main(argv: list[str]) -> int | None:
    """Run ``sdready notify`` with *argv* (after ``notify``) if it takes no detour.

    Returns the exit status, or None when the full command line must run it instead: a
    form the fast parser leaves to argparse, no ``NOTIFY_SOCKET``, or a usage error. Only
    a failure after the message may have left is reported here, as the full path would.
    """
    request = _parse(argv)
    if request is None or "NOTIFY_SOCKET" not in os.environ:
        return None
    try:
        fields = fields_of(request)
    except ValueError:
        return None
    code, error = deliver(fields, pid=None, no_block=request.no_block, timeout=request.timeout)
    if error is not None:
        from ._log import report_error  # logging, on this rare path only

        report_error("notify", error)
    return code
