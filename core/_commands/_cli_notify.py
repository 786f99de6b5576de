"""``sdready notify``: one message to the service manager, then wait until it processed it.

Shell scripts call it at each step of a start, so it must start about as fast as the
interpreter itself. The command's logic lives here, with two drivers: :mod:`._cli`
(argparse: every form of the command line, ``--help``, usage errors) and :func:`fast_main`,
which :mod:`.__main__` tries first: it reads the common forms with :mod:`._cli_fast`, and
this module imports only what sending needs (no argparse, logging, dataclasses or typing).
"""

import time

from .._cstd import TYPE_CHECKING
from .._env import notify_socket
from .._notify._notifier import Notifier
from .._notify._protocol import NOTIFY_BUFFER_MAX, encode
from ._cli_fast import Found, duration_of, last, read

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
    "status_cut",
]

EXIT_OK = 0
EXIT_NO_SOCKET = 1
EXIT_SEND_FAILED = 3

DEFAULT_TIMEOUT = 5.0  #: --timeout: how long to wait for the manager (BARRIER)

_FLAGS = {
    "--ready": "ready",
    "--reloading": "reloading",
    "--stopping": "stopping",
    "--no-block": "no_block",
    "-q": "quiet",
    "--quiet": "quiet",
}
_VALUES = {"--status": "status", "--timeout": "timeout"}


def fields_of(options: "Options") -> dict[str, str | int]:
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


def status_cut(fields: dict[str, str | int]) -> str | None:
    """The warning for a STATUS too long for one message (sent shortened, as systemd drops
    a longer datagram whole, ``systemd-notify``'s included); None when it fits."""
    status = fields.get("STATUS")
    if status is None:
        return None
    data, _ = encode(fields)
    given = len(str(status).encode("utf-8", "replace"))
    for line in data.split(b"\n"):
        if line.startswith(b"STATUS="):
            sent = len(line) - len(b"STATUS=")
            if sent < given:
                return (
                    f"STATUS is {given} bytes, more than one message to the manager holds "
                    f"({NOTIFY_BUFFER_MAX} bytes): it is cut to its first {sent}"
                )
    return None


def deliver(
    fields: dict[str, str | int], *, pid: int | None, no_block: bool, timeout: float
) -> tuple[int, str | None]:
    """Send *fields* to ``$NOTIFY_SOCKET`` (set) and, unless *no_block*, wait for BARRIER.

    Returns the exit status and, for a failure, the error to report.
    """
    try:
        with Notifier(notify_socket(), strict=True) as notifier:
            notifier.send(fields, pid=pid)
            if not no_block and not notifier.barrier(timeout):
                return EXIT_SEND_FAILED, (
                    f"the service manager did not confirm the message within {timeout:g} s "
                    "(BARRIER)"
                )
    except Exception as exc:
        from .._exceptions import NotifyError  # a failure's import: not every notify's

        if not isinstance(exc, NotifyError):
            raise
        return EXIT_SEND_FAILED, str(exc)
    return EXIT_OK, None


class _Request:
    """The fast path's ``notify`` options, as :func:`fields_of` reads them."""

    __slots__ = ("assignments", "ready", "reloading", "status", "stopping")

    def __init__(self, found: Found, assignments: list[str]) -> None:
        self.ready = "ready" in found
        self.reloading = "reloading" in found
        self.stopping = "stopping" in found
        self.status = last(found, "status")
        self.assignments = assignments


def fast_main(argv: list[str]) -> int | None:
    """Run ``sdready notify`` with *argv* (after ``notify``) if it takes no detour.

    Returns the exit status, or None when the full command line must run it instead: a
    form the fast parser leaves to argparse, no ``NOTIFY_SOCKET``, or a usage error. Only
    a failure after the message may have left is reported here, as the full path would.
    """
    if notify_socket() is None:
        return None  # the full command explains, unless --quiet
    parsed = read(argv, _FLAGS, _VALUES)
    if parsed is None:
        return None
    found, assignments = parsed
    try:
        timeout = duration_of(found, "timeout")
        fields = fields_of(_Request(found, assignments))
    except ValueError:
        return None  # a usage error: the full command reports it
    if status_cut(fields) is not None:
        return None  # rare: the full command warns (logging, -q)
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    code, error = deliver(fields, pid=None, no_block="no_block" in found, timeout=timeout)
    if error is not None:
        from .._log import report_error  # on this rare path only

        report_error("notify", error)
    return code
