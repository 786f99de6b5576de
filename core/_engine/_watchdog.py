"""Keep systemd's watchdog fed, but only while the app is really healthy.

A ping proves liveness only if it comes from the part of the app that can hang: the
thread runner suits thread-based servers; the asyncio loop pings from the event loop, so a
loop blocked by a synchronous call stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable

from .. import texts
from .._env import watchdog_interval
from .._log import logger
from .._notify._notifier import Notifier, _process_notifier
from .._options import HealthCheck

__all__ = ["HealthCheck", "Watchdog", "watchdog_loop"]


def _resolve(notifier: Notifier | None, interval: float | None) -> tuple[Notifier, float | None]:
    notifier = notifier if notifier is not None else _process_notifier()
    period = interval if interval is not None else watchdog_interval()
    if period is not None and not period > 0:
        raise ValueError(f"watchdog interval must be positive, got {period!r}")
    return notifier, period if notifier.enabled else None


def _is_awaitable(value: object) -> bool:
    # Not inspect.isawaitable: importing inspect would slow down `import sdready`.
    return hasattr(value, "__await__")


def _skip_reason(result: object) -> str | None:
    return None if result else f"health check returned {result!r}"


HealthHook = Callable[[str | None], object]


class _Streak:
    """A failing health check said once per streak, at WARNING (systemd will kill the
    service), and its end: the operator sees why before the kill, not after."""

    def __init__(self, period: float, hook: HealthHook | None) -> None:
        self.period = period
        self.hook = hook
        self.since: float | None = None

    def observe(self, reason: str | None) -> None:
        if reason is not None and self.since is None:
            self.since = time.monotonic()
            logger.warning(
                "health check failed: %s; the watchdog is not fed, so systemd restarts the "
                "service within WatchdogSec=%g s unless it passes again",
                reason,
                self.period,
            )
            self._tell(reason)
        elif reason is None and self.since is not None:
            took = time.monotonic() - self.since
            self.since = None
            logger.warning("health check passes again after %.1f s: the watchdog is fed", took)
            self._tell(None)
        elif reason is not None:
            logger.debug("watchdog ping skipped: %s", reason)

    def _tell(self, reason: str | None) -> None:
        if self.hook is not None:
            try:
                self.hook(reason)
            except Exception:  # a report about health must not stop the pings
                logger.exception("sdready: reporting the health check failed")


class _SlowHealth:
    """The unit check a pinger can only make at run time: a health check that takes over
    half of ``WatchdogSec=`` delays the next ping past the period. Warns once per pinger."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.warned = False

    def took(self, started: float) -> None:
        took = time.monotonic() - started
        if took > self.period / 2 and not self.warned:
            self.warned = True
            logger.warning(texts.CHECK_WATCHDOG_HEALTH.format(took=took, period=self.period))


class Watchdog:
    """A daemon thread sending ``WATCHDOG=1`` every half watchdog period.

    ``interval`` is the watchdog period in seconds (default :func:`watchdog_interval`, i.e.
    ``WatchdogSec=``). When ``health()`` returns a falsy value or raises, that ping is
    skipped, so systemd restarts a sick app: a failing streak is logged once at WARNING
    (and its end), and ``on_health(reason)`` / ``on_health(None)`` is told. When the watchdog is off
    or there is no notify socket, :meth:`start` starts no thread. ``alive``, when given,
    is asked before each ping: the thread ends once it says False (an engine's STOPPING).

    Example::

        with Watchdog(health=db.ping):
            serve_forever()
    """

    def __init__(
        self,
        notifier: Notifier | None = None,
        interval: float | None = None,
        health: Callable[[], object] | None = None,
        *,
        alive: Callable[[], bool] | None = None,
        on_health: HealthHook | None = None,
    ) -> None:
        self._notifier, self.interval = _resolve(notifier, interval)
        self._health = health
        self._alive = alive
        self._on_health = on_health
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        """True when there is a watchdog to feed and a socket to feed it through."""
        return self.interval is not None

    @property
    def running(self) -> bool:
        """True while the pinging thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Watchdog:
        """Start pinging (no-op when disabled or already running). Returns ``self``."""
        if self.interval is None or self.running:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sdready-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop pinging and wait up to *timeout* seconds for the thread to end."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> Watchdog:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        assert self.interval is not None
        half = self.interval / 2
        slow = _SlowHealth(self.interval)
        streak = _Streak(self.interval, self._on_health)
        while not self._stop.is_set() and (self._alive is None or self._alive()):
            started = time.monotonic()
            reason = self._check()
            slow.took(started)
            streak.observe(reason)
            if reason is None and not self._notifier.watchdog():
                logger.debug("watchdog ping not delivered (see earlier warnings)")
            self._stop.wait(half)

    def _check(self) -> str | None:
        if self._health is None:
            return None
        try:
            result = self._health()
        except Exception as exc:
            return f"health check raised {exc!r}"
        if _is_awaitable(result):
            close = getattr(result, "close", None)
            if close is not None:
                close()  # never awaited: avoid "coroutine was never awaited"
            return "health check is async; use watchdog_loop() in an event loop"
        return _skip_reason(result)


async def watchdog_loop(  # noqa: PLR0913  (public API: the last three keyword-only)
    notifier: Notifier | None = None,
    interval: float | None = None,
    health: HealthCheck | None = None,
    *,
    sleep: Callable[[float], Awaitable[object]] | None = None,
    alive: Callable[[], bool] | None = None,
    on_health: HealthHook | None = None,
) -> None:
    """Ping ``WATCHDOG=1`` every half watchdog period from the running event loop.

    Returns at once when the watchdog is off or there is no notify socket; otherwise runs
    until cancelled. ``health`` may be sync or async; a falsy result or an exception skips
    that ping (a failing streak logged once at WARNING, and its end; ``on_health`` told).
    Because the pings come from the loop itself, a loop
    blocked by synchronous work stops them and systemd restarts the service.

    Example::

        task = asyncio.create_task(watchdog_loop(health=check_db))
        ...
        task.cancel()

    ``sleep`` is the event loop's own sleep (default :func:`asyncio.sleep`; ``trio.sleep``
    under trio), so the pings stop whenever that loop is blocked. ``alive``, when given,
    is asked before each ping: the loop returns once it says False (an engine's STOPPING).
    """
    if sleep is None:
        import asyncio

        sleep = asyncio.sleep
    notifier, period = _resolve(notifier, interval)
    if period is None:
        return
    half = period / 2
    slow = _SlowHealth(period)
    streak = _Streak(period, on_health)
    while alive is None or alive():
        reason: str | None = None
        if health is not None:
            started = time.monotonic()
            try:
                result: object = health()
                if _is_awaitable(result):
                    result = await result  # type: ignore[misc]
            except Exception as exc:  # cancellation is a BaseException: it ends the loop
                reason = f"health check raised {exc!r}"
            else:
                reason = _skip_reason(result)
            slow.took(started)
        streak.observe(reason)
        if reason is None and not notifier.watchdog():
            logger.debug("watchdog ping not delivered (see earlier warnings)")
        await sleep(half)
