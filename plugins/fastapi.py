"""FastAPI integration: ``SystemdNotify(app)`` sends ``READY=1`` once the server accepts.

Usage::

    from fastapi import FastAPI
    from sdready.plugins.fastapi import SystemdNotify

    app = FastAPI(lifespan=lifespan)  # your lifespan and @app.on_event handlers keep working
    SystemdNotify(app)

It hooks the router's lifespan handler, the one place every FastAPI version runs startup
and shutdown through: ``STATUS=Starting…`` comes before your ``lifespan=`` context and
``on_event("startup")`` handlers run (in their own order, untouched), the wait for the
listening socket begins after the last of them, and ``STOPPING=1`` is sent before your
shutdown code runs. Which of your handlers run is FastAPI's business, unchanged: on
FastAPI 0.165 (whose Starlette 1.x dropped ``on_startup``) FastAPI still runs
``on_event`` handlers itself, and, as before, not when ``lifespan=`` is given.

``SystemdNotify(app)`` or ``app.add_middleware(SystemdMiddleware)``? Both send the same
messages with the same options. Prefer ``SystemdNotify`` for FastAPI apps: requests never
pass through it (no per-request cost at all), it can be called at any point before the
server starts (after ``include_router``, after other middleware), and registering it twice
fails loudly. Prefer the middleware for plain Starlette or any other ASGI app, for apps
configured through a ``middleware=[...]`` list, or to wrap an app object you do not build
yourself (``app = SystemdMiddleware(app)``); it costs one extra ASGI layer per request
(benchmarks/asgi_overhead.py) and, in Starlette, must be added before the app starts.
Using both is harmless: the outer one tells systemd, the inner one stays silent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sdready.integration import missing_framework

try:
    import fastapi
except ImportError as exc:  # pragma: no cover
    raise missing_framework("fastapi", "FastAPI") from exc

from sdready.integration import Probes, Readiness, ReadyOptions
from sdready.plugins import _compat_fastapi as _compat
from sdready.plugins.asgi import LifespanCycle, ProbeMiddleware

if TYPE_CHECKING:
    from sdready.integration import ReadyKeywords, Receive, Scope, Send
    from typing_extensions import Unpack

__all__ = ["SystemdNotify"]

_MIN_VERSION = (0, 100)


class SystemdNotify:
    """Tell systemd when a FastAPI app really accepts connections; see the module docstring.

    Takes the same keyword options as :class:`~sdready.plugins.asgi.SystemdMiddleware`.
    Outside systemd (no ``NOTIFY_SOCKET``) it changes nothing. Raises :class:`ValueError`
    for bad option values, :class:`RuntimeError` when already registered on *app* or when
    FastAPI is older than 0.100.

    Example::

        app = FastAPI()
        SystemdNotify(app, ready_timeout=60, health=check_database)
    """

    def __init__(self, app: fastapi.FastAPI, **options: Unpack[ReadyKeywords]) -> None:
        _check_version()
        self.options = ReadyOptions(**options)
        #: The current (or last) startup's :class:`~sdready.Readiness`; None before one.
        self.readiness: Readiness | None = None
        self._cycle: LifespanCycle | None = None
        original = _compat.lifespan_handler(app)
        if original is None:
            raise TypeError(f"{app!r} has no router.lifespan handler to hook")
        if getattr(original, "__sdready__", None) is not None:
            raise RuntimeError("SystemdNotify is already registered on this app; reuse it.")

        async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
            # Every lifespan message of the app passes here, and only those.
            cycle = LifespanCycle(original, self.options)
            self.readiness = cycle.readiness
            self._cycle = cycle
            await cycle.run(scope, receive, send)

        lifespan.__sdready__ = self  # type: ignore[attr-defined]
        _compat.replace_lifespan_handler(app, lifespan)
        probes = Probes(self.options)
        if probes:
            # The lifespan hook sees no requests: the endpoints need a (pure ASGI) middleware,
            # outermost among the app's own, so no other middleware runs for a probe.
            app.add_middleware(ProbeMiddleware, probes=probes, readiness=self._current)

    def _current(self) -> Readiness | None:
        return self._cycle.readiness if self._cycle is not None else None

    @property
    def ready_sent(self) -> bool:
        """True once this startup's READY=1 was sent."""
        return self.readiness is not None and self.readiness.ready_sent


def _check_version() -> None:
    text = getattr(fastapi, "__version__", "0")
    parts: list[int] = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    if tuple(parts) < _MIN_VERSION:
        raise RuntimeError(
            f"sdready.plugins.fastapi needs FastAPI >= 0.100, found {text}: "
            "pip install 'sdready[fastapi]'"
        )
