"""The app's own :func:`progress` calls, and where each process sends them.

A front end's engine registers itself for its process when a start begins; a process
whose app runs where systemd is not told directly (a gunicorn worker) registers a relay
instead. Without either, progress goes straight to ``NOTIFY_SOCKET``.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Protocol

from .._notify._notifier import PROGRESS_EXTEND, _process_notifier
from .._notify._protocol import timeout_usec


class Engine(Protocol):
    """What routing the app's progress asks of a front end's engine."""

    @property
    def enabled(self) -> bool: ...
    def progress(self, text: str, *, extend: float | None = None) -> bool: ...


__all__ = ["progress", "register_engine", "relay_progress"]

#: The engine of this process's front end, by pid (a forked child must not use its parent's).
_engines: dict[int, weakref.ref[Engine]] = {}
#: Where this process's progress goes instead, by pid (a gunicorn worker: to its arbiter).
_relays: dict[int, Callable[[str, float], bool]] = {}


def register_engine(engine: Engine) -> None:
    """*engine* decides this process's :func:`progress` calls from now on."""
    _engines.clear()
    _engines[os.getpid()] = weakref.ref(engine)


def relay_progress(relay: Callable[[str, float], bool] | None) -> None:
    """Send this process's :func:`progress` calls to *relay* ``(text, extend)`` (None: stop).

    The hook for a front end whose app runs where systemd is not told directly: gunicorn's
    workers never see ``NOTIFY_SOCKET`` and pass the app's progress to the arbiter, whose
    engine decides. Per process: a child forked later does not inherit it.
    """
    _relays.pop(os.getpid(), None)
    if relay is not None:
        _relays[os.getpid()] = relay


def progress(text: str, *, extend: float = PROGRESS_EXTEND) -> bool:
    """Say what the service is doing, and keep its start or stop alive *extend* more seconds.

    ``STATUS=text`` plus ``EXTEND_TIMEOUT_USEC=`` in one datagram: call it before each step
    of a long startup (or of the app's own shutdown), each time asking for as long as the
    step may take; a start that stops calling it is killed by ``TimeoutStartSec=`` as
    before. With a front end in this process (SystemdMiddleware, SystemdNotify, gunicorn's
    arbiter, or its workers through it) its engine decides: once the app runs, only
    ``STATUS``. A plain datagram send, safe from sync and async code; outside systemd it
    does nothing and returns False. Raises :class:`ValueError` unless *extend* is positive
    and finite.

    Example (a FastAPI lifespan)::

        for i, shard in enumerate(shards, 1):
            sdready.progress(f"Loading shard {i}/{len(shards)}", extend=60)
            await load(shard)
    """
    pid = os.getpid()
    ref = _engines.get(pid)
    engine = ref() if ref is not None else None
    if engine is not None and engine.enabled:
        return engine.progress(text, extend=extend)
    relay = _relays.get(pid)
    if relay is not None:
        timeout_usec(extend)  # the same check as everywhere: a bug shows in the worker
        return relay(text, extend)
    return _process_notifier().progress(text, extend=extend)
