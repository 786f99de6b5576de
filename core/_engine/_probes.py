"""The readiness and liveness endpoints' answers, derived from the engine's phase.

Kubernetes' words: ``GET <ready_path>`` answers ``200 ready`` only between READY and the
stop while the ``health=`` check passes, else ``503`` with the phase (``starting``,
``waiting``, ``stopping``…) or ``unhealthy``; ``GET <live_path>`` answers ``200 live``
unless the check fails. :func:`answer` decides, without I/O, from the phase alone: there is
no second copy of the state. :class:`Probes` adds the health check: the watchdog pinger's
current streak when a pinger runs it, else the check itself, bounded by
:data:`HEALTH_BOUND` so a hung database cannot hang the probe. The phase comes from the
engine, or from a :class:`~sdready._engine._phase_cell.PhaseCell` it publishes to (gunicorn's
workers answer from their arbiter's engine). :class:`WSGIProbeApp` serves the answers in
front of a WSGI app (Flask, gunicorn's WSGI workers).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, Union

from .._log import logger
from ._phase import Phase
from ._phase_cell import PhaseCell

if TYPE_CHECKING:
    from .._options import HealthCheck, ReadyOptions
    from ._readiness import Readiness

__all__ = [
    "HEADERS",
    "HEALTH_BOUND",
    "LIVE",
    "READY",
    "Answer",
    "PhaseSource",
    "Probes",
    "WSGIProbeApp",
    "answer",
]

#: Where an answer's phase comes from: the engine, or the cell it publishes to.
PhaseSource = Union["Readiness", PhaseCell]

#: Which endpoint a path is.
READY = "ready"
LIVE = "live"
#: Seconds a health check evaluated for one probe request may take (then: unhealthy).
HEALTH_BOUND = 1.0


class Answer(NamedTuple):
    """An endpoint's HTTP answer: a status code and a short plain-text body."""

    status: int
    body: bytes


#: An answer's headers besides its length: plain text, never cached by a proxy.
HEADERS = (("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store"))


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

    async def answer_async(self, kind: str, engine: PhaseSource | None) -> Answer:
        """*kind*'s answer now, evaluating the health check on the running asyncio loop when
        no pinger runs it."""
        phase = Phase.NEW if engine is None else engine.phase
        if kind == READY and phase is not Phase.READY:
            return answer(kind, phase, False)
        known = self._known(engine)
        failing = known if known is not None else await self._check_async()
        return answer(kind, phase, failing)

    def answer_blocking(self, kind: str, engine: PhaseSource | None) -> Answer:
        """*kind*'s answer now, evaluating a synchronous health check in this thread."""
        phase = Phase.NEW if engine is None else engine.phase
        if kind == READY and phase is not Phase.READY:
            return answer(kind, phase, False)
        known = self._known(engine)
        return answer(kind, phase, known if known is not None else self._check_blocking())

    def _known(self, engine: PhaseSource | None) -> bool | None:
        if self._health is None:
            return False
        if isinstance(engine, PhaseCell):
            return None  # another process's engine: this one evaluates the check
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


class WSGIProbeApp:
    """WSGI wrapper answering *probes*' paths from the phase *engine* returns; the wrapped
    app never sees these requests, and gets every other one untouched."""

    def __init__(self, app: Any, probes: Probes, engine: Callable[[], PhaseSource | None]) -> None:
        self.app = app
        self.probes = probes
        self.engine = engine

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        kind = self.probes.match(environ.get("PATH_INFO", ""))
        if kind is None:
            result: Iterable[bytes] = self.app(environ, start_response)
            return result
        answer = self.probes.answer_blocking(kind, self.engine())
        reason = "OK" if answer.status == 200 else "Service Unavailable"
        headers = [*HEADERS, ("Content-Length", str(len(answer.body)))]
        start_response(f"{answer.status} {reason}", headers)
        return [answer.body]
