"""``sdready notify``: one message to the service manager, then wait until it processed it.

Shell scripts call it at each step of a start, so it must start about as fast as the
interpreter itself. The command's logic lives here, with two drivers: :mod:`._cli`
(argparse: every form of the command line, ``--help``, usage errors) and the fast path
of :mod:`._cli_fast`, which :mod:`.__main__` tries first. This module imports only what
sending needs (no argparse, logging, dataclasses or typing).
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
    "fields_of",
]

EXIT_OK = 0
EXIT_NO_SOCKET = 1
EXIT_SEND_FAILED = 3

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
