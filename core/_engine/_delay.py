"""The shutdown delay: keep serving after SIGTERM while traffic moves away, then stop.

On SIGTERM a load balancer (or Kubernetes' endpoint controller) still sends new
connections until its next health check fails; a server that closes its listening socket
at once refuses them. With a delay, the first SIGTERM sends ``STOPPING=1`` (the readiness
endpoint answers 503 from now on, as the phase says), extends systemd's stop timeout, and is
*held*: the server keeps accepting and serving. Once the delay is over the held signal is
raised again and reaches the handler that was there before (the server's own graceful
shutdown), exactly as it would have without us. A second SIGTERM or a SIGINT during the
delay ends it at once. A SIGTERM before the service was ever READY is not held: no
balancer sends it traffic yet, and a stop during a slow start must not wait (gunicorn's
arbiter installs the delay before its workers boot). Main thread only (Python's signal
handlers live there).
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

from .._contain import contained, pass_on
from .._log import logger

if TYPE_CHECKING:
    from ._readiness import Readiness

__all__ = ["ShutdownDelay"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: Where asyncio's placeholder handler for ``loop.add_signal_handler`` lives (CPython 3.10+).
_LOOP_HANDLERS = "asyncio.unix_events"


class ShutdownDelay:
    """Hold the first SIGTERM for *seconds* while *engine* answers 503 (see the module)."""

    def __init__(self, engine: Readiness, seconds: float) -> None:
        self._engine = engine
        self._seconds = seconds
        self._previous: dict[int, object] = {}
        self._pid = os.getpid()
        self._over = threading.Event()  # set: the delay ends now
        self._held: int | None = None
        self._released = False

    def install(self, server_handler: object) -> bool:
        """Chain SIGTERM and SIGINT before their current handlers; True if installed.

        *server_handler* is what handled SIGTERM before the front end touched it: the
        server's own graceful stop. Only a Python handler of its own can be held (uvicorn).
        Not when the server handles SIGTERM in its asyncio loop (``loop.add_signal_handler``:
        the loop hears of it through its wakeup fd whatever Python handler is set), nor when
        there is none (hypercorn's workers are stopped by their parent): a WARNING says the
        delay does not apply, rather than a STOPPING that promises it.
        """
        if self._previous or self._seconds <= 0:
            return False
        in_loop = getattr(server_handler, "__module__", None) == _LOOP_HANDLERS
        if in_loop or not callable(server_handler):
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
        """True while a SIGTERM is held."""
        return self._held is not None and not self._released

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid or self._released:
            pass_on(self._previous.get(signum, signal.SIG_DFL), signum, frame)
        elif self._held is not None:
            logger.info("%s during the shutdown delay: stopping now", signal.Signals(signum).name)
            self._over.set()  # the waiting thread releases the held signal
        elif signum == signal.SIGTERM and self._engine.ever_ready:
            self._held = signum
            # The engine is told from a thread, never from here: the handler runs between
            # two bytecodes of the main thread, which may hold the very lock a send takes
            # (uvicorn's loop pings the watchdog and sends from the main thread).
            with contained("starting the shutdown delay"):
                threading.Thread(
                    target=self._run, name="sdready-shutdown-delay", daemon=True
                ).start()
        else:
            pass_on(self._previous.get(signum, signal.SIG_DFL), signum, frame)

    def _run(self) -> None:
        logger.info(
            "SIGTERM: readiness answers 503 and the server keeps serving for the shutdown "
            "delay of %g s, then stops",
            self._seconds,
        )
        with contained("sending STOPPING for the shutdown delay"):
            self._engine.stopping(delay=self._seconds)
        self._over.wait(self._seconds)
        self._released = True
        logger.info("shutdown delay over: the server's own shutdown begins")
        assert self._held is not None
        # Raised again rather than handled from here: Python runs it in the main thread,
        # where the previous handler (the server's) expects to run.
        os.kill(self._pid, self._held)
