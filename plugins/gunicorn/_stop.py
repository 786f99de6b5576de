"""The arbiter's stop: gunicorn's SIGTERM held for ``shutdown_delay``, and booting workers
ended at once when the stop comes before any of them served.

The delay is the core's :class:`~sdready.integration.ShutdownDelay`, chained in front of
gunicorn's own handler once gunicorn installed it (``when_ready``): the first SIGTERM sends
``STOPPING=1`` (the engine's phase moves, so the workers' ``ready_path`` answers 503) while
the arbiter and its workers go on accepting and serving; once the delay is over gunicorn
gets its SIGTERM and stops gracefully, as without sdready. The workers must not get a
SIGTERM of their own meanwhile: ``KillMode=mixed`` (gunicorn's own recommendation) sends it
to the arbiter only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from typing import TYPE_CHECKING

from sdready.integration import Readiness, ShutdownDelay

from . import _compat
from ._table import WorkerTable, plural

if TYPE_CHECKING:
    from gunicorn.arbiter import Arbiter

__all__ = ["DelayedStop", "cancel_boots"]

logger = logging.getLogger("sdready")


class DelayedStop:
    """gunicorn's SIGTERM, held for the engine's ``shutdown_delay`` (none when it is 0)."""

    def __init__(self) -> None:
        self._delay: ShutdownDelay | None = None
        self._server_term: object = None

    def remember_server_handler(self) -> None:
        """Note gunicorn's own SIGTERM handler, before sdready chains anything to it."""
        self._server_term = signal.getsignal(signal.SIGTERM)

    def install(self, readiness: Readiness) -> None:
        """Hold SIGTERM for *readiness*' ``shutdown_delay``; again after a SIGHUP, with the
        value it re-read (main thread: gunicorn's hooks run there)."""
        if self._delay is not None:
            self._delay.uninstall()
            self._delay = None
        seconds = readiness.options.shutdown_delay
        if seconds > 0:
            self._delay = ShutdownDelay(readiness, seconds)
            self._delay.install(self._server_term)


def cancel_boots(server: Arbiter, table: WorkerTable, signum: int) -> None:
    """A stop before any worker served: the booting ones have nothing to finish, so they
    must not hold the stop for ``graceful_timeout`` while they import the app (a worker
    ignores SIGTERM until it booted). SIGINT is gunicorn's quick exit for a worker
    (``sys.exit`` in the middle of the import), and the default action while an ASGI
    worker boots."""
    booting = [w for w in _compat.workers(server) if not table.has_booted(_compat.worker_age(w))]
    if not booting:
        return
    logger.warning(
        "%s before any worker could serve: ending %s at once (SIGINT)",
        signal.Signals(signum).name,
        plural(len(booting)),
    )
    for worker in booting:
        pid = _compat.worker_pid(worker)
        if isinstance(pid, int):  # else not forked yet
            with contextlib.suppress(ProcessLookupError):  # reaped meanwhile
                os.kill(pid, signal.SIGINT)
