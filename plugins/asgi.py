"""ASGI lifespan middleware: ``READY=1`` once the server's listening socket accepts connections.

Any ASGI app, any lifespan-capable server (uvicorn, hypercorn, granian, gunicorn with the
uvicorn worker)::

    from sdready.plugins.asgi import SystemdMiddleware

    app = SystemdMiddleware(app)  # or: starlette_app.add_middleware(SystemdMiddleware)

Why a background waiter: uvicorn runs the lifespan startup *before* it binds, hypercorn's
child and granian's workers listen only after it, so READY can never be sent from startup
code. The middleware snapshots the listening sockets when ``lifespan.startup`` arrives,
lets the app start, and on ``lifespan.startup.complete`` waits (without blocking the loop)
for a listener that was not there before, or one that was (``--fd``, socket activation,
hypercorn's trio worker, a pre-fork parent): only then ``READY=1``.

Outside systemd (no ``NOTIFY_SOCKET``) it is inert: it forwards everything untouched and
starts nothing, unless ``ready_path`` or ``shutdown_delay`` is set (Kubernetes): then the
phase moves as under systemd and ``GET <ready_path>`` answers from it, with nothing sent.
``shutdown_delay`` holds uvicorn's SIGTERM and hypercorn's stop trigger
(:class:`~sdready.integration.ShutdownDelay`).
A notify failure never reaches the app; a failed startup never gets READY.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sdready import texts
from sdready.integration import (
    PROBE_HEADERS,
    PhaseSource,
    Probes,
    Readiness,
    ReadyOptions,
    ShutdownDelay,
    chain_signal,
    contained,
    die_of,
)
from sdready.plugins import _compat_asgi as _compat

if TYPE_CHECKING:
    from sdready.integration import ASGIApp, Message, ReadyKeywords, Receive, Scope, Send
    from typing_extensions import Unpack

__all__ = ["SystemdMiddleware"]

logger = logging.getLogger("sdready")

_PROBE_HEADERS = [(name.lower().encode(), value.encode()) for name, value in PROBE_HEADERS]

# A STOPPING that met a full queue is retried from a thread: give it this long before the
# process ends by the stop signal (normally it was sent at once and this costs nothing).
_STOPPING_FLUSH = 0.25


#: Set on the lifespan scope by the instance that tells the story; inner ones stay silent,
#: so a middleware added twice (or SystemdNotify plus the middleware) sends one READY.
SCOPE_KEY = "sdready.readiness"


class SystemdMiddleware:
    """Pure ASGI middleware telling systemd when the app really accepts connections.

    http and websocket scopes go straight to the app. For the lifespan scope it sends
    ``STATUS=Starting…`` (and snapshots the listening sockets), lets the app start, then
    ``STATUS=Waiting for the listening socket…`` and, once the server listens,
    ``READY=1`` with ``STATUS=Ready: listening on <addresses> (pid N)``. A failed startup
    sends ``STATUS=Startup failed: <error>`` (plus ``ERRNO=`` when known) and never READY;
    ``lifespan.shutdown`` sends ``STOPPING=1`` before the app's own shutdown runs, except in
    a worker (``SYSTEMD_EXEC_PID`` names another process), whose restart must not read as
    the whole service stopping. With ``WatchdogSec=`` it pings from the event loop (gated
    by *health*). An app without lifespan support still gets READY: the middleware
    completes the protocol itself.

    Options are the keywords of :class:`~sdready.ReadyOptions` (``ready_timeout``,
    ``on_timeout``, ``expect``, ``probe``, ``watchdog``, ``health`` — sync or async —
    and ``notifier``), with its defaults. Bad option values raise :class:`ValueError`
    here, not at startup.
    """

    def __init__(self, app: ASGIApp, **options: Unpack[ReadyKeywords]) -> None:
        self.app = app
        self.options = ReadyOptions(**options)
        probes = Probes(self.options)
        self._cycle: LifespanCycle | None = None
        self._probes = ProbeMiddleware(app, probes=probes, readiness=self._readiness)
        self._has_probes = bool(probes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":  # http/websocket: one lookup, nothing else
            if self._has_probes:
                await self._probes(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        self._cycle = LifespanCycle(self.app, self.options)
        await self._cycle.run(scope, receive, send)

    def _readiness(self) -> Readiness | None:
        return None if self._cycle is None else self._cycle.readiness


class ProbeMiddleware:
    """Pure ASGI middleware answering ``ready_path`` and ``live_path`` from the engine that
    *readiness* returns (FastAPI's :class:`~sdready.plugins.fastapi.SystemdNotify` adds it:
    its lifespan hook sees no requests). The app never sees a probe; other requests go to
    it untouched."""

    def __init__(
        self, app: ASGIApp, *, probes: Probes, readiness: Callable[[], PhaseSource | None]
    ) -> None:
        self.app = app
        self.probes = probes
        self.readiness = readiness

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = self.probes.match(scope["path"]) if scope["type"] == "http" else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        engine = self.readiness()
        try:
            import asyncio

            asyncio.get_running_loop()
        except RuntimeError:  # trio: a sync health check only, in this task
            answer = self.probes.answer_blocking(kind, engine)
        else:
            answer = await self.probes.answer_async(kind, engine)
        headers = [*_PROBE_HEADERS, (b"content-length", str(len(answer.body)).encode())]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})


class LifespanCycle:
    """One lifespan run of *app*: the story told to systemd and the background work it needs.

    Shared with :mod:`sdready.plugins.fastapi`, which wraps the router's lifespan with it.
    """

    def __init__(self, app: ASGIApp, options: ReadyOptions) -> None:
        self.app = app
        self.readiness = Readiness(options)
        self._background: _Background | None = None
        self._receive: Receive | None = None
        self._send: Send | None = None
        self._startup_received = False
        self._startup_answered = False  # the app sent startup.complete or startup.failed
        self._failed = False
        self._shutdown_received = False
        self._shutdown_answered = False
        self._app_task: Any = None  # asyncio.Task running the app's lifespan, when cancellable
        self._stopped_by: str | None = None  # the stop signal that cancelled its startup
        self._delay: ShutdownDelay | None = None
        self._ungate: Callable[[], None] | None = None  # undoes hypercorn's gate
        self._server_handler: object = None  # SIGTERM's handler before ours: the server's

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app's lifespan, telling systemd how it goes."""
        if SCOPE_KEY in scope:
            self.readiness = scope[SCOPE_KEY]  # an outer instance tells: its phase answers
        if SCOPE_KEY in scope or not self.readiness.active:
            if SCOPE_KEY not in scope:
                self.readiness.check_unit()  # under systemd without NOTIFY_SOCKET: says why
            await self.app(scope, receive, send)  # inert, or an outer instance tells it
            return
        scope[SCOPE_KEY] = self.readiness
        self._receive, self._send = receive, send
        with contained("choosing the async backend"):
            self._background = _Background.for_running_loop(self.readiness)
        try:
            try:
                if not await self._run_app(scope):
                    return  # stopped during startup: the server was told it failed
            except Exception as exc:
                if self._startup_received or self._startup_answered:
                    if not self._startup_answered:  # raised during startup
                        self._startup_failed(exc)
                    raise
                # Raised before reading lifespan.startup: the app does not speak lifespan
                # (servers then carry on without it). Speak it for the app, so READY comes.
                logger.debug("app does not support lifespan (%r); sdready completes it", exc)
            await self._complete_protocol()
        finally:
            if self._background is not None:
                await self._background.stop()

    async def _run_app(self, scope: Scope) -> bool:
        """Run the app's lifespan; False when a stop signal cancelled its startup.

        A stop (``systemctl stop``, or systemd's SIGTERM after ``TimeoutStartSec=``) during
        a slow startup must not wait for it: servers ignore SIGTERM until startup completes,
        so the unit would sit in ``deactivating`` for the whole ``TimeoutStopSec=``. With
        asyncio in the unit's main process, the app's startup runs in a task of ours that a
        stop signal cancels; once the app's own cleanup ran, the process ends by that
        signal, as systemd expects of a stopped service (nothing listens yet, and the
        server would only exit with its startup-failure status).
        """
        import asyncio

        call = self.app(scope, self._wrapped_receive, self._wrapped_send)
        if not self._cancellable():
            try:
                await call
            finally:
                self._end_delay()
            return True
        self._app_task = task = asyncio.ensure_future(call)
        loop = asyncio.get_running_loop()
        self._server_handler = signal.getsignal(signal.SIGTERM)  # the server's own stop
        unchain = [
            chain_signal(signum, lambda n: loop.call_soon_threadsafe(self._stop_startup, n))
            for signum in (signal.SIGTERM, signal.SIGINT)
        ]
        try:
            await task
        except asyncio.CancelledError:
            if self._stopped_by is None:
                raise  # the server cancelled us: not ours to handle
            self._failed = True
            with contained("sending STOPPING"):
                self.readiness.notifier.flush(_STOPPING_FLUSH)
            die_of(signal.Signals[self._stopped_by])
            return False  # not reached, unless the signal is blocked
        finally:
            self._end_delay()  # first: it chained on top of the startup's handlers
            for undo in unchain:
                if undo is not None:
                    undo()
        return True

    def _cancellable(self) -> bool:
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False  # trio (hypercorn's worker): the server's own stop applies
        main = threading.current_thread() is threading.main_thread()
        return main and self.readiness.is_main

    def _stop_startup(self, signum: int) -> None:
        if self._startup_answered or self._app_task is None or self._stopped_by is not None:
            return  # startup is over: the server's own shutdown runs as usual
        self._stopped_by = signal.Signals(signum).name
        logger.warning(
            "%s during the app's startup: cancelling it (STOPPING=1); the process then ends "
            "by that signal",
            self._stopped_by,
        )
        with contained("reporting the stop"):
            self.readiness.stopping()
        self._app_task.cancel()

    async def _complete_protocol(self) -> None:
        # Whatever part of the protocol the app left undone, as servers expect it done.
        if self._failed:
            return
        if not self._startup_received:
            await self._wrapped_receive()
        if not self._startup_answered:
            await self._wrapped_send({"type": "lifespan.startup.complete"})
        if not self._shutdown_received:
            await self._wrapped_receive()
        if not self._shutdown_answered:
            await self._wrapped_send({"type": "lifespan.shutdown.complete"})

    async def _wrapped_receive(self) -> Message:
        assert self._receive is not None
        message = await self._receive()
        kind = message.get("type")
        if kind == "lifespan.startup":
            self._startup_received = True
            with contained("reporting startup"):
                self.readiness.starting()  # the baseline, before the app's own listeners
                if self._background is not None:
                    self._background.start_watchdog()  # a slow startup must not starve it
        elif kind == "lifespan.shutdown":
            self._shutdown_received = True
            with contained("reporting shutdown"):
                # Before the app's own shutdown runs; in a worker (uvicorn --workers) the
                # core sends nothing, as a worker restart is not the service stopping.
                self.readiness.stopping()
            if self._background is not None:
                await self._background.stop()
        return message

    async def _wrapped_send(self, message: Message) -> None:
        assert self._send is not None
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self._startup_answered = True
            with contained("reporting startup"):
                # Before forwarding: its look at the listeners marks the end of the app's
                # startup, and the server may listen as soon as it has the message.
                self.readiness.waiting()
            if self._background is not None:
                with contained("starting the listener wait"):
                    self._background.start_waiter()
            delay = self.readiness.options.shutdown_delay
            if delay > 0:
                with contained("installing the shutdown delay"):
                    self._install_delay(delay)
        elif kind == "lifespan.startup.failed" and self._stopped_by is not None:
            return  # our cancellation, which the app reports (Starlette): we end the process
        elif kind == "lifespan.startup.failed":
            self._startup_answered = True
            # Starlette sends this from inside its ``except`` block: the exception is at hand.
            error = sys.exc_info()[1]
            if isinstance(error, Exception):
                self._startup_failed(error)
            else:
                self._startup_failed(texts.error_line(str(message.get("message") or "")))
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            self._shutdown_answered = True
            self.readiness.drained()  # the app's shutdown is over: its progress buys no time
        await self._send(message)  # hypercorn raises here on *.failed: let it

    def _install_delay(self, seconds: float) -> None:
        delay = ShutdownDelay(self.readiness, seconds)
        ungate = _compat.gate_hypercorn_stop(delay.gate)
        if ungate is not None:
            # hypercorn: its stop trigger (its parent's event, its loop's signal handler)
            # awaits the gate. Signals sent to this process too (systemd's to the whole
            # unit) are held, so that the worker does not die of its default action.
            self._delay, self._ungate = delay, ungate
            if threading.current_thread() is threading.main_thread():
                delay.install(signal.getsignal(signal.SIGTERM), gated=True)
        elif self._app_task is not None:
            # The server installed its signal handlers before the lifespan (uvicorn):
            # chained now, ours run first and hold its SIGTERM for the delay.
            self._delay = delay
            delay.install(self._server_handler)

    def _end_delay(self) -> None:
        if self._delay is not None:
            self._delay.uninstall()
        if self._ungate is not None:
            self._ungate()
        self._delay = self._ungate = None

    def _startup_failed(self, error: Exception | str) -> None:
        self._failed = True
        with contained("reporting the failed startup"):
            self.readiness.startup_failed(error or "lifespan.startup.failed")


class _Background:
    """The listener waiter and the watchdog pinger, on the async library running the app."""

    def __init__(self, readiness: Readiness) -> None:
        self.readiness = readiness
        self._stop = threading.Event()

    @staticmethod
    def for_running_loop(readiness: Readiness) -> _Background:
        # Detected at call time: the same app may run under asyncio or trio (hypercorn).
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            return _AsyncioBackground(readiness)
        if _compat.in_trio_task():
            return _TrioBackground(readiness)
        return _Background(readiness)

    def _watchdog_period(self) -> float | None:
        return self.readiness.watchdog.period()

    def start_waiter(self) -> None:
        """Wait for the listener and send READY from a daemon thread (no asyncio loop here)."""
        if self._stop.is_set():
            return
        threading.Thread(
            target=self._announce_blocking, name="sdready-ready-waiter", daemon=True
        ).start()

    def _announce_blocking(self) -> None:
        with contained("waiting for the listening socket"):
            self.readiness.waiter.announce_blocking(stop=self._stop)

    def start_watchdog(self) -> None:
        """Ping from the event loop; without a known loop there is nothing honest to ping from."""
        if self._watchdog_period() is not None:
            logger.warning("sdready feeds the watchdog only from asyncio or trio event loops")

    async def stop(self) -> None:
        """Abandon the wait and stop pinging; never raises."""
        self._stop.set()


class _AsyncioBackground(_Background):
    def __init__(self, readiness: Readiness) -> None:
        super().__init__(readiness)
        self._tasks: list[Any] = []  # asyncio.Task; strong references until stopped

    def _spawn(self, work: Callable[[], Awaitable[object]], what: str) -> None:
        import asyncio

        task = asyncio.get_running_loop().create_task(_quiet(work, what), name=f"sdready: {what}")
        self._tasks.append(task)

    def start_waiter(self) -> None:
        if not self._stop.is_set():
            self._spawn(self.readiness.waiter.announce, "waiting for the listening socket")

    def start_watchdog(self) -> None:
        period = self._watchdog_period()
        if period is not None and not self._stop.is_set():
            health = self.readiness.options.health
            self._spawn(lambda: self.readiness.watchdog.loop(health), "watchdog loop")

    async def stop(self) -> None:
        import asyncio

        self._stop.set()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            # Let them finish here, so no loop ever destroys a pending task of ours.
            with contextlib.suppress(Exception):
                await asyncio.wait(tasks, timeout=1.0)


class _TrioBackground(_Background):
    # Waiter: the base class's thread (the core's async waiter is asyncio). Watchdog: a
    # trio system task, so a blocked trio loop stops the pings as it should.
    def __init__(self, readiness: Readiness) -> None:
        super().__init__(readiness)
        self._scopes: list[Any] = []  # trio.CancelScope

    def start_watchdog(self) -> None:
        period = self._watchdog_period()
        if period is None or self._stop.is_set():
            return
        import trio

        scope = trio.CancelScope()
        self._scopes.append(scope)

        async def pinger() -> None:
            with scope:
                await _quiet(
                    lambda: self.readiness.watchdog.loop(
                        self.readiness.options.health, sleep=trio.sleep
                    ),
                    "watchdog loop",
                )

        _compat.spawn_trio_system_task(pinger, "sdready watchdog")

    async def stop(self) -> None:
        self._stop.set()
        scopes, self._scopes = self._scopes, []
        for scope in scopes:
            scope.cancel()


async def _quiet(work: Callable[[], Awaitable[object]], what: str) -> None:
    # Background work must never surface as "Task exception was never retrieved" or crash
    # trio's system nursery; cancellation (a BaseException) still propagates. The coroutine
    # is made here, so a task cancelled before its first step leaves no "never awaited"
    # coroutine behind.
    with contained(what):
        await work()
