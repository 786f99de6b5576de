"""The engine's watchdog: who feeds ``WatchdogSec=``, from where, and until when.

One :class:`Pinger` per engine (``readiness.watchdog``), whatever the front end: a thread
(:meth:`Pinger.start`: Flask, gunicorn's arbiter), the app's event loop
(:meth:`Pinger.loop`: ASGI, so a blocked loop stops the pings), or the front end's own
loop (:meth:`Pinger.ping`: ``sdready exec``). Every way stops at ``STOPPING=1``: a service
that is stopping is no longer watched, and a late ping would read as alive.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from .. import texts
from .._env import watchdog_elsewhere, watchdog_interval
from .._log import logger

if TYPE_CHECKING:
    from .._notify._notifier import Notifier
    from .._options import HealthCheck
    from .._units._unitcheck import Engine as CheckedEngine
    from ._watchdog import Watchdog

    class Engine(CheckedEngine, Protocol):
        """What the pinger asks of its engine (:class:`sdready.integration.Readiness`):
        what the unit check asks, and these."""

        notifier: Notifier

        @property
        def took_over_from(self) -> int | None: ...
        @property
        def stopping_began(self) -> bool: ...
        @property
        def last_status(self) -> str: ...
        @property
        def ever_ready(self) -> bool: ...
        def status(self, text: str, *, errno: int | None = None) -> bool: ...


__all__ = ["Pinger"]

#: How often a pinger waiting for READY looks whether it came (the loop's own sleeps).
_READY_POLL = 0.1


class Pinger:
    """Feeds systemd's watchdog for one engine while it runs (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._thread: Watchdog | None = None
        self._lock = threading.Lock()
        self._status_before: str | None = None  # the STATUS a failing check replaced
        self._unhealthy: str | None = None  # what STATUS says while the check fails
        self._failing: str | None = None  # why the check fails, while it does
        self._loops = 0  # event-loop pingers running

    def period(self) -> float | None:
        """systemd's watchdog period for this process, or None: off, or not ours to feed.

        Follows ``WATCHDOG_PID``, and a ``MAINPID`` take-over (the previous main pid's
        watchdog is ours then). Warns once when ``WatchdogSec=`` is meant for another process
        while this one runs the app (uvicorn ``--workers``, granian): nobody can feed it.
        """
        engine = self._engine
        if not engine.options.watchdog or not engine.enabled:
            return None
        previous = engine.took_over_from
        if previous is not None:
            # A USR2 successor feeds its predecessor's watchdog once it is the main pid.
            return watchdog_interval(taking_over=previous) if engine.is_main else None
        period = watchdog_interval()
        elsewhere = watchdog_elsewhere()
        if period is None and elsewhere is not None:
            logger.warning(
                "WatchdogSec= is set for pid %s, not this worker (pid %d): sdready does not "
                "ping from here; use a single-process server or drop WatchdogSec=",
                elsewhere,
                os.getpid(),
            )
        return period

    @property
    def watching(self) -> bool:
        """True while a pinger runs the health check (then :attr:`failing` is current)."""
        return self._thread is not None or self._loops > 0

    @property
    def failing(self) -> str | None:
        """Why the health check fails in the pinger's current streak, or None."""
        return self._failing

    def alive(self) -> bool:
        """True while the watchdog may be fed: never from STOPPING on."""
        return not self._engine.stopping_began

    def ping(self) -> bool:
        """One ``WATCHDOG=1``, for a front end that runs its own loop; none once stopping."""
        return self.alive() and self._engine.notifier.watchdog()

    def start(self, health: HealthCheck | None = None) -> bool:
        """Ping from a daemon thread while *health* passes; True if it started."""
        from ._watchdog import Watchdog

        period = self.period()
        with self._lock:
            if period is None or self._thread is not None or not self.alive():
                return False
            notifier = self._engine.notifier
            self._thread = Watchdog(
                notifier,
                period,
                self._once_ready(health),
                alive=self.alive,
                on_health=self.health_changed,
            ).start()
        return True

    async def loop(
        self,
        health: HealthCheck | None = None,
        *,
        sleep: Callable[[float], Awaitable[object]] | None = None,
    ) -> None:
        """Ping from the running event loop while *health* passes (see
        :func:`sdready.watchdog_loop`); returns at once when there is nothing to feed, and
        at STOPPING."""
        from ._watchdog import watchdog_loop

        period = self.period()
        if period is not None and self.alive():
            notifier = self._engine.notifier
            self._loops += 1
            try:
                await watchdog_loop(
                    notifier,
                    period,
                    self._once_ready(health),
                    sleep=sleep if health is None else self._waking_at_ready(sleep),
                    alive=self.alive,
                    on_health=self.health_changed,
                )
            finally:
                self._loops -= 1

    def _once_ready(self, health: HealthCheck | None) -> HealthCheck | None:
        """*health*, asked only once the service has been READY. A pinger may start with
        the app's startup (ASGI: so that a slow one is not killed), when what the check
        looks at (a pool, a model) may not exist yet: until READY a ping says only that
        the process runs, as systemd's start timeout, not the check, judges the start."""
        if health is None:
            return None
        engine = self._engine

        def check() -> bool | Awaitable[bool]:
            return health() if engine.ever_ready else True

        return check

    def _waking_at_ready(
        self, sleep: Callable[[float], Awaitable[object]] | None
    ) -> Callable[[float], Awaitable[object]]:
        """*sleep* (the loop's own; asyncio's by default), cut short at READY while the
        check waits for it: the first check comes right after READY, not up to half a
        period later (a check too slow for ``WatchdogSec=`` is said before systemd kills)."""
        if sleep is None:
            import asyncio

            sleep = asyncio.sleep
        engine = self._engine

        async def nap(seconds: float) -> object:
            if engine.ever_ready:
                return await sleep(seconds)
            deadline = time.monotonic() + seconds
            while not engine.ever_ready and (left := deadline - time.monotonic()) > 0:
                await sleep(min(left, _READY_POLL))
            return None

        return nap

    def health_changed(self, reason: str | None) -> None:
        """The health check began failing (*reason*) or passes again (None): STATUS says
        which check and since when, then goes back to what it said before."""
        engine = self._engine
        self._failing = reason
        if reason is not None:
            self._status_before = engine.last_status
            since = time.strftime("%H:%M:%S")
            self._unhealthy = texts.UNHEALTHY.format(
                since=since, reason=texts.one_line(reason, 120)
            )
            engine.status(self._unhealthy)
        elif self._status_before is not None:
            before, self._status_before, self._unhealthy = self._status_before, None, None
            engine.status(before)

    def restate(self) -> None:
        """READY just replaced STATUS: a failing check must stay visible (its streak began
        during the startup, when the pinger already ran)."""
        if self._unhealthy is not None:
            self._status_before = self._engine.last_status
            self._engine.status(self._unhealthy)

    def stop(self) -> None:
        """Stop the pinging thread, without waiting for a health check in progress."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.stop(timeout=0)
