"""The shutdown delay: keep serving after SIGTERM while traffic moves away, then stop.

On SIGTERM a load balancer (or Kubernetes' endpoint controller) still sends new
connections until its next health check fails; a server that closes its listening socket
at once refuses them. With a delay, the first SIGTERM sends ``STOPPING=1`` (the readiness
endpoint answers 503 from now on, as the phase says), extends systemd's stop timeout, and is
*held*: the server keeps accepting and serving. Once the delay is over the held signal is
raised again and reaches the handler that was there before (the server's own graceful
shutdown, or for waitress and werkzeug the default action: their stop), exactly as it would
have without us. A second SIGTERM or a SIGINT during the delay ends it at once. A SIGTERM
before the service was ever READY is not held: no balancer sends it traffic yet, and a stop
during a slow start must not wait (gunicorn's arbiter installs the delay before its workers
boot).

A server whose stop does not come from a signal in this process (hypercorn: its parent sets
an event that the worker polls, or the event loop hears SIGTERM itself) awaits
:meth:`ShutdownDelay.gate` between its own stop trigger and its shutdown instead; the gate
begins the delay if no signal did. Signal handlers: main thread only.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Awaitable, Callable
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
#: How often :meth:`ShutdownDelay.gate` looks whether the delay is over (hypercorn polls
#: its own shutdown event as often).
_GATE_POLL = 0.1
#: What the delay's thread hears: begin, quit (uninstalled); a signal's number ends it.
_BEGIN, _QUIT = b"b", b"q"


class ShutdownDelay:
    """Hold the first SIGTERM for *seconds* while *engine* answers 503 (see the module)."""

    def __init__(self, engine: Readiness, seconds: float) -> None:
        self._engine = engine
        self._seconds = seconds
        self._previous: dict[int, object] = {}
        self._pid = os.getpid()
        self._lock = threading.Lock()  # the release against the gate's arrival; no handler's
        # The signal handler only writes a byte here: it interrupts the main thread anywhere,
        # maybe inside the engine's or the notifier's lock, so the engine is told from the
        # delay's own thread (a handler taking that lock would wait for itself forever).
        self._wakeup: int | None = None  # the pipe's writing end
        self._begun = False  # asked for, by a signal or the gate
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
        self._start_thread()
        for signum in _SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return True

    def uninstall(self) -> None:
        """Put the previous handlers back (those still ours); a running delay ends."""
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous)  # type: ignore[arg-type]
        self._previous = {}
        self._tell(_QUIT)
        writer, self._wakeup = self._wakeup, None
        if writer is not None:
            os.close(writer)

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
                self._start_thread()
                self._begun = True
                self._tell(_BEGIN)
        while self._begun and not self._released:
            await sleep(_GATE_POLL)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid or self._released:
            pass_on(self._previous.get(signum, signal.SIG_DFL), signum, frame)
        elif self._held is not None or (self._begun and signum == signal.SIGINT):
            self._tell(bytes([signum]))  # ends the delay
        elif signum == signal.SIGTERM and (self._begun or self._engine.ever_ready):
            # Begun already by the gate: the same stop, reaching this process as well
            # (systemd signals every process of the unit), is no second SIGTERM.
            self._held = signum
            if not self._begun:
                self._begun = True
                self._tell(_BEGIN)
        else:  # SIGINT, or nothing was ever served: no traffic to move away
            pass_on(self._previous.get(signum, signal.SIG_DFL), signum, frame)

    def _start_thread(self) -> None:
        if self._wakeup is not None:
            return
        reader, writer = os.pipe()
        os.set_blocking(writer, False)
        self._wakeup = writer
        threading.Thread(
            target=self._run, args=(reader,), name="sdready-shutdown-delay", daemon=True
        ).start()

    def _tell(self, what: bytes) -> None:
        if self._wakeup is not None:
            with contextlib.suppress(OSError):  # full, or the thread is gone: it heard enough
                os.write(self._wakeup, what)

    def _run(self, reader: int) -> None:
        # The writing end stays open until uninstall(): a handler may write at any time.
        try:
            if os.read(reader, 1) == _BEGIN:
                self._delay(reader)
        finally:
            os.close(reader)

    def _delay(self, reader: int) -> None:
        logger.info(
            "%s: readiness answers 503 and the server keeps serving for the shutdown "
            "delay of %g s, then stops",
            "SIGTERM" if self._held is not None else "the server's stop",
            self._seconds,
        )
        with contained("starting the shutdown delay"):
            self._engine.stopping(delay=self._seconds)
        deadline = time.monotonic() + self._seconds
        while (heard := _next(reader, deadline - time.monotonic())) == _BEGIN:
            pass  # the gate after a SIGTERM: the same stop
        if heard not in (None, b"", _QUIT):
            logger.info("%s during the shutdown delay: stopping now", signal.Signals(heard[0]).name)
        with self._lock:
            self._released = True
            pass_signal = self._held is not None and not self._gated
        logger.info("shutdown delay over: the server's own shutdown begins")
        if pass_signal:
            assert self._held is not None
            # Raised again rather than handled from here: Python runs it in the main thread,
            # where the previous handler (the server's) expects to run.
            os.kill(self._pid, self._held)


def _next(reader: int, timeout: float) -> bytes | None:
    """The next byte written to the pipe (``b""`` once closed), or None after *timeout*."""
    if timeout <= 0 or not select.select([reader], [], [], timeout)[0]:
        return None
    return os.read(reader, 1)
