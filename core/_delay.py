"""The shutdown delay: keep serving after SIGTERM while traffic moves away, then stop.

On SIGTERM a load balancer (or Kubernetes' endpoint controller) still sends new
connections until its next health check fails; a server that closes its listening socket
at once refuses them. With a delay, the first SIGTERM sends ``STOPPING=1`` (the readiness
endpoint answers 503 from now on, as the phase says), extends systemd's stop timeout, and is
*held*: the server keeps accepting and serving. Once the delay is over the held signal is
raised again and reaches the handler that was there before (the server's own graceful
shutdown, or for waitress and werkzeug the default action: their stop), exactly as it would
have without us. A second SIGTERM or a SIGINT during the delay ends it at once.

A server whose stop does not come from a signal in this process (hypercorn: its parent sets
an event that the worker polls, or the event loop hears SIGTERM itself) awaits
:meth:`ShutdownDelay.gate` between its own stop trigger and its shutdown instead; the gate
begins the delay if no signal did. Signal handlers: main thread only.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import TYPE_CHECKING

from ._contain import contained, pass_on
from ._log import logger

if TYPE_CHECKING:
    from ._readiness import Readiness

__all__ = ["ShutdownDelay"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: Where asyncio's placeholder handler for ``loop.add_signal_handler`` lives (CPython 3.10+).
_LOOP_HANDLERS = "asyncio.unix_events"
#: How often :meth:`ShutdownDelay.gate` looks whether the delay is over (hypercorn polls
#: its own shutdown event as often).
_GATE_POLL = 0.1


class ShutdownDelay:
    """Hold the first SIGTERM for *seconds* while *engine* answers 503 (see the module)."""

    def __init__(self, engine: Readiness, seconds: float) -> None:
        self._engine = engine
        self._seconds = seconds
        self._previous: dict[int, object] = {}
        self._pid = os.getpid()
        self._over = threading.Event()  # set: the delay ends now
        self._lock = threading.Lock()  # the timer's release against the gate's arrival
        self._begun = False
        self._held: int | None = None
        self._gated = False  # the server's own stop trigger fired and waits at the gate
        self._released = False

    def install(
        self, server_handler: object, *, default_stops: bool = False, gated: bool = False
    ) -> bool:
        """Chain SIGTERM and SIGINT before their current handlers; True if installed.

        *server_handler* is what handled SIGTERM before the front end touched it: the
        server's own graceful stop. A Python handler of its own can be held (uvicorn); the
        default action too when *default_stops* says it is the server's stop (waitress and
        werkzeug install no handler: they die of SIGTERM). With *gated* the server's stop
        awaits :meth:`gate` (hypercorn), so any handler will do: the signals only begin and
        end the delay. Otherwise not when the server handles SIGTERM in its asyncio loop
        (``loop.add_signal_handler``: the loop hears of it through its wakeup fd whatever
        Python handler is set), nor when it has none (its parent stops it): a WARNING says
        the delay does not apply, rather than a STOPPING that promises it.
        """
        if self._previous or self._seconds <= 0:
            return False
        in_loop = getattr(server_handler, "__module__", None) == _LOOP_HANDLERS
        default = server_handler in (signal.SIG_DFL, None)
        if not gated and (in_loop or not (callable(server_handler) or (default_stops and default))):
            logger.warning(
                "shutdown_delay=%g does not apply: %s, which sdready cannot hold",
                self._seconds,
                "this server handles SIGTERM in its event loop"
                if in_loop
                else "this process has no SIGTERM handler of the server's (its parent stops it)",
            )
            return False
        for signum in _SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return True

    def uninstall(self) -> None:
        """Put the previous handlers back (those still ours); a running delay ends."""
        self._over.set()
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous)  # type: ignore[arg-type]
        self._previous = {}

    @property
    def delaying(self) -> bool:
        """True while the delay runs."""
        return self._begun and not self._released

    async def gate(
        self, trigger: Callable[[], Awaitable[object]], sleep: Callable[[float], Awaitable[object]]
    ) -> None:
        """Await the server's stop *trigger*, then the delay (begun here unless a SIGTERM
        began it); the server's own shutdown runs when this returns. *sleep* is the event
        loop's (``asyncio.sleep``, ``trio.sleep``). A server never ready stops at once."""
        await trigger()
        with self._lock:
            if self._released or not self._engine.ever_ready:
                return
            self._gated = True
        if not self._begun:
            with contained("starting the shutdown delay"):
                self._begin("the server's stop")
        while self._begun and not self._released:
            await sleep(_GATE_POLL)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid or self._released:
            pass_on(self._previous.get(signum, signal.SIG_DFL), signum, frame)
        elif self._begun:
            logger.info("%s during the shutdown delay: stopping now", signal.Signals(signum).name)
            self._over.set()  # the waiting thread ends the delay
        elif signum == signal.SIGTERM and self._engine.ever_ready:
            self._held = signum
            with contained("starting the shutdown delay"):
                self._begin("SIGTERM")
        else:  # SIGINT, or nothing was ever served: no traffic to move away
            pass_on(self._previous.get(signum, signal.SIG_DFL), signum, frame)

    def _begin(self, cause: str) -> None:
        self._begun = True
        logger.info(
            "%s: readiness answers 503 and the server keeps serving for the shutdown "
            "delay of %g s, then stops",
            cause,
            self._seconds,
        )
        self._engine.stopping(delay=self._seconds)
        threading.Thread(target=self._wait, name="sdready-shutdown-delay", daemon=True).start()

    def _wait(self) -> None:
        self._over.wait(self._seconds)
        with self._lock:
            self._released = True
            pass_signal = self._held is not None and not self._gated
        logger.info("shutdown delay over: the server's own shutdown begins")
        if pass_signal:
            assert self._held is not None
            # Raised again rather than handled from here: Python runs it in the main thread,
            # where the previous handler (the server's) expects to run.
            os.kill(self._pid, self._held)
