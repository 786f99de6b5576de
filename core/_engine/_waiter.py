"""Driving the engine's listener wait: which sockets, which probe, and the three drivers.

The wait itself (the selection rule, the polling schedule, the probe rounds) is
:class:`sdready._listen._wait._Wait`, the one loop every waiter runs. This module holds what the
engine adds around it: the baseline taken before the app's startup code, the switch to an
HTTP probe for sockets that accept before the app serves (``probe="auto"``, a front end's
``accepts_early`` hook), and the drivers — :meth:`ListenerWaiter.announce` (asyncio),
:meth:`ListenerWaiter.announce_blocking` (a thread) and :meth:`ListenerWaiter.step` (the
caller's own loop). It reports the outcome to its engine and decides nothing else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from .. import texts
from .._env import listen_fds_count
from .._exceptions import NotifyError
from .._listen._listeners import (
    Listener,
    ListenerSnapshot,
    ListenerSource,
    listening_sockets,
    own_listeners,
    snapshot_listeners,
)
from .._listen._probe import parse_probe
from .._listen._wait import _Wait
from .._log import logger
from .._options import INHERITED_PROBE, ReadyOptions
from .._values import DEFAULT_PROBE_TIMEOUT


class Engine(Protocol):
    """What the wait asks of its engine (:class:`sdready.integration.Readiness`): whether
    READY is still pending, and the outcomes to apply."""

    pid: int

    @property
    def awaiting_timeout(self) -> bool: ...
    @property
    def ready_sent(self) -> bool: ...
    def ready(self, status: str, *, listeners: list[Listener] | None = None) -> bool: ...
    def timed_out(self, reason: object) -> bool: ...
    def abandon(self, reason: str) -> None: ...


__all__ = ["ListenerWaiter"]

#: What a wait's failure looks like: a timeout (NotifyError), or no /proc, no netlink.
WAIT_ERRORS = (NotifyError, NotImplementedError, OSError)


class ListenerWaiter:
    """One engine's wait for its server's listening sockets.

    *source* is where listeners are looked for (default: this process's own descriptors;
    ``sdready exec`` passes another process tree's). *accepts_early* sees the selected
    listeners before READY and returns why they accept before this process serves
    (werkzeug's reloader watcher), or None: with ``probe="auto"`` READY then waits for an
    HTTP probe.
    """

    def __init__(
        self,
        engine: Engine,
        options: ReadyOptions,
        *,
        source: ListenerSource | None = None,
        accepts_early: Callable[[list[Listener]], str | None] | None = None,
    ) -> None:
        self.engine = engine
        self.options = options
        self.source = source
        self.accepts_early = accepts_early
        self.baseline: ListenerSnapshot | None = None
        self.wait_started: ListenerSnapshot | None = None
        self.probe: str | None = None if options.auto_probe else options.probe
        self._wait: _Wait | None = None

    def reset(self, options: ReadyOptions) -> None:
        """A new generation: the next wait starts afresh, with *options*."""
        self.options = options
        self._wait = None

    # -- before the app's startup code, and after it ----------------------------------------

    def take_baseline(self) -> None:
        """Snapshot what listens before the app's own startup code runs."""
        if self.source is not None:
            return
        try:
            self.baseline = snapshot_listeners()
        except (NotImplementedError, OSError) as exc:  # no /proc: the wait says so
            logger.debug("cannot snapshot listening sockets: %s", exc)
        inherited = self.baseline.listeners if self.baseline is not None else ()
        if self.options.auto_probe and (inherited or listen_fds_count()):
            self._probe_inherited(inherited)

    def mark_startup_done(self) -> None:
        """Listeners opened since the baseline are the app's own (a metrics port)."""
        if self.source is not None or self.baseline is None:
            return
        try:
            # Only what listens now matters here: no need for the snapshot's extra walk over
            # unlistened sockets, on the event loop, at the end of startup.
            self.wait_started = ListenerSnapshot(tuple(listening_sockets()), time.monotonic())
        except (NotImplementedError, OSError) as exc:
            logger.debug("cannot snapshot listening sockets: %s", exc)

    def inherited(self, listeners: list[Listener], *, why: str) -> None:
        """Sockets that listen before the app serves: READY must wait for the app."""
        if self.options.auto_probe:
            self._probe_inherited(listeners, why)
        elif self.probe is None or not self.probe.startswith("http:"):
            logger.warning(
                "%s already listened (%s): the kernel accepts connections into its backlog "
                "before the app serves, so READY after probe=%r proves little",
                texts.format_addresses(listeners),
                why,
                self.probe,
            )

    def _probe_inherited(self, listeners: Sequence[Listener], why: str = "") -> None:
        if self.probe == INHERITED_PROBE:
            return
        self.probe = INHERITED_PROBE
        logger.info(
            "%s already listened when the app was created (%s): the kernel accepts "
            "connections into its backlog before the app serves, so READY waits until a "
            "GET (%s) answers below 500",
            texts.format_addresses(listeners),
            why or "socket activation, a parent's fd or a pre-fork master",
            INHERITED_PROBE,
        )

    # -- the drivers --------------------------------------------------------------------------

    async def announce(self) -> bool:
        """Wait without blocking the event loop, then READY per the options; True when READY
        was sent. Cancelling the task sends nothing."""
        if not self.engine.awaiting_timeout:
            return False
        try:
            listeners = await self._current().run_async()
        except WAIT_ERRORS as exc:
            return self.engine.timed_out(exc)
        return self._found(listeners)

    def announce_blocking(self, stop: threading.Event | None = None) -> bool:
        """Wait in the calling thread; give up silently once *stop* is set (or once the
        engine's READY was abandoned); True when READY was sent."""
        if not self.engine.awaiting_timeout:
            return False
        try:
            selected = self._current().run_blocking(
                stop, inspect=self._inspect, proceed=lambda: self.engine.awaiting_timeout
            )
        except WAIT_ERRORS as exc:
            return self.engine.timed_out(exc)
        return selected is not None and self._found(selected)

    def step(self) -> float | None:
        """One poll (and probe); the seconds until the next, or None once the wait is over."""
        if not self.engine.awaiting_timeout:
            return None
        try:
            wait = self._current()
            selected = wait.step_blocking(self._inspect)
        except WAIT_ERRORS as exc:
            self.engine.timed_out(exc)
            return None
        if selected is not None:
            self._found(selected)
            return None
        return wait.next_delay()

    def _found(self, listeners: list[Listener]) -> bool:
        """The server's *listeners* exist (and answered the probe): READY, naming them."""
        if self.source is None and not threading.main_thread().is_alive():
            # A server thread that listened while the interpreter shuts down.
            self.engine.abandon("the main thread has ended: the process exits before it served")
            return False
        addresses = texts.format_addresses(listeners)
        status = texts.READY.format(addresses=addresses, pid=self.engine.pid)
        return self.engine.ready(status, listeners=listeners)

    def _inspect(self, selected: list[Listener]) -> None:
        if self.accepts_early is None or self._wait is None or self._wait.probe is not None:
            return
        why = self.accepts_early(selected)
        if why is not None:
            self.inherited(selected, why=why)
            if self.probe is not None:
                self._wait.probe = parse_probe(self.probe)

    def _current(self) -> _Wait:
        """This generation's wait, made on first use (its clock starts then)."""
        if self._wait is None:
            options = self.options
            self._wait = _Wait(
                options.ready_timeout,
                options.expect,
                self.baseline,
                self.probe,
                DEFAULT_PROBE_TIMEOUT,
                wait_started=self.wait_started,
                source=own_listeners() if self.source is None else self.source,
            )
        return self._wait
