"""The readiness and liveness endpoints' answers, derived from the engine's phase.

Kubernetes' words: ``GET <ready_path>`` answers ``200 ready`` only between READY and the
stop while the ``health=`` check passes, else ``503`` with the phase (``starting``,
``waiting``, ``stopping``…) or ``unhealthy``; ``GET <live_path>`` answers ``200 live``
unless the check fails. :func:`answer` decides, without I/O, from the phase alone: there is
no second copy of the state. :class:`Probes` adds the health check: the watchdog pinger's
current streak when a pinger runs it, else the check itself, bounded by
:data:`HEALTH_BOUND` so a hung database cannot hang the probe.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, NamedTuple

from .._log import logger
from ._phase import Phase

if TYPE_CHECKING:
    from .._options import HealthCheck, ReadyOptions
    from ._readiness import Readiness

__all__ = ["HEALTH_BOUND", "LIVE", "READY", "Answer", "Probes", "answer"]

#: Which endpoint a path is.
READY = "ready"
LIVE = "live"
#: Seconds a health check evaluated for one probe request may take (then: unhealthy).
HEALTH_BOUND = 1.0


class Answer(NamedTuple):
    """An endpoint's HTTP answer: a status code and a short plain-text body."""

    status: int
    body: bytes


def answer(kind: str, phase: Phase, failing: bool) -> Answer:
    """The answer of endpoint *kind* (:data:`READY` or :data:`LIVE`) in *phase*, with the
    health check *failing* or not."""
    if kind == LIVE:
        return Answer(503, b"unhealthy") if failing else Answer(200, b"live")
    if phase is not Phase.READY:
        return Answer(503, phase.value.encode())
    return Answer(503, b"unhealthy") if failing else Answer(200, b"ready")


class Probes:
    """The endpoints one front end serves: which paths, and their answers for an engine."""

    def __init__(self, options: ReadyOptions, *, health: HealthCheck | None = None) -> None:
        self._paths = {
            path: kind
            for path, kind in ((options.ready_path, READY), (options.live_path, LIVE))
            if path is not None
        }
        #: *health* replaces ``options.health`` where the check needs a context (Flask's).
        self._health = health if health is not None else options.health

    def __bool__(self) -> bool:
        return bool(self._paths)

    def match(self, path: str) -> str | None:
        """The endpoint *path* is (:data:`READY`, :data:`LIVE`), or None: the app's."""
        return self._paths.get(path)

    async def answer_async(self, kind: str, engine: Readiness | None) -> Answer:
        """*kind*'s answer now, evaluating the health check on the running asyncio loop when
        no pinger runs it."""
        phase = Phase.NEW if engine is None else engine.phase
        if kind == READY and phase is not Phase.READY:
            return answer(kind, phase, False)
        known = self._known(engine)
        failing = known if known is not None else await self._check_async()
        return answer(kind, phase, failing)

    def answer_blocking(self, kind: str, engine: Readiness | None) -> Answer:
        """*kind*'s answer now, evaluating a synchronous health check in this thread."""
        phase = Phase.NEW if engine is None else engine.phase
        if kind == READY and phase is not Phase.READY:
            return answer(kind, phase, False)
        known = self._known(engine)
        return answer(kind, phase, known if known is not None else self._check_blocking())

    def _known(self, engine: Readiness | None) -> bool | None:
        if self._health is None:
            return False
        if engine is not None and engine.watchdog.watching:
            return engine.watchdog.failing is not None  # the pinger's streak: one truth
        return None

    async def _check_async(self) -> bool:
        import asyncio

        assert self._health is not None
        health = self._health
        try:
            if inspect.iscoroutinefunction(health):
                result = await asyncio.wait_for(health(), HEALTH_BOUND)
            else:
                result = await asyncio.wait_for(asyncio.to_thread(health), HEALTH_BOUND)
                if inspect.isawaitable(result):
                    result = await asyncio.wait_for(result, HEALTH_BOUND)
        except Exception as exc:  # a timeout included: the probe says unhealthy
            logger.debug("health check for a probe failed: %r", exc)
            return True
        return not result

    def _check_blocking(self) -> bool:
        assert self._health is not None
        try:
            result = self._health()
        except Exception as exc:
            logger.debug("health check for a probe failed: %r", exc)
            return True
        if inspect.isawaitable(result):
            close = getattr(result, "close", None)
            if close is not None:
                close()
            return True  # an async check needs an event loop
        return not result
