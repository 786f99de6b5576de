"""The readiness engine: one service's story, told to systemd, decided in one place.

Starting… → Waiting for the listening socket… → ``READY=1`` (or why not) → ``STOPPING=1``,
and for servers that reload, ``RELOADING=1`` → ``READY=1`` again, once per generation.

Every front end drives a :class:`Readiness` and decides nothing itself: the ASGI and
FastAPI plugins, Flask and Django (this process's own sockets), ``sdready exec`` (another
process tree's sockets), gunicorn's arbiter (readiness pushed by its workers). The engine's
state is one :class:`~sdready._phase.Phase` moved through one table
(:mod:`sdready._phase`); what systemd is told follows from the move:

- the STATUS texts (from :mod:`sdready.texts`) and the timeout policy (``on_timeout``);
- READY at most once per generation, never after a failed or abandoned startup, with
  ``ERRNO=`` on failure;
- STOPPING only from the unit's main process (a worker's restart is not the service's);
- progress: ``EXTEND_TIMEOUT_USEC=`` only while a start, a reload or a drain demonstrably
  goes on (the app's own :func:`progress` calls, the front ends' milestones, a server's
  drain with its own budget: :mod:`sdready._drain`), never while running, never from a
  worker;
- the watchdog: one pinger per engine, fed only until STOPPING (:mod:`sdready._watchdog`).

The wait for the listener lives with the wait (:mod:`sdready._waiter`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, ClassVar, NamedTuple

from . import texts
from ._drain import Drain
from ._env import (
    invocation_id,
    is_main_process,
    main_pid,
    watchdog_elsewhere,
    watchdog_interval,
)
from ._listeners import Listener, ListenerSnapshot, ListenerSource
from ._log import logger
from ._notifier import Notifier
from ._options import ReadyOptions
from ._phase import PENDING, STOPPED_PHASES, Event, Phase, PhaseMachine
from ._progress import progress, register_engine, relay_progress
from ._protocol import timeout_usec
from ._waiter import ListenerWaiter

if TYPE_CHECKING:
    from ._watchdog import HealthCheck, Watchdog

__all__ = ["Readiness", "ReadyOptions", "TimeoutTexts", "progress", "relay_progress"]


class TimeoutTexts(NamedTuple):
    """What the timeout policy says: STATUS texts ``warn`` (``.format(timeout=, pid=)``)
    and ``fail`` (``.format(timeout=)``), and ``awaited``, for the log: what was not seen."""

    warn: str
    fail: str
    awaited: str


LISTENER_TIMEOUTS = TimeoutTexts(texts.TIMEOUT_WARN, texts.TIMEOUT_FAIL, "listening socket")


class Readiness:
    """Tell systemd how one service starts, and send READY only once a client can connect.

    A front end reports its server's life with a few calls, each an event of the phase
    machine (:mod:`sdready._phase`):

    - :meth:`starting` before the app's own startup code (snapshots the listening sockets
      that exist already), :meth:`waiting` after it;
    - then either wait for a listener here — :meth:`announce` (asyncio),
      :meth:`announce_blocking` (a thread) or :meth:`step` (the caller's own loop) — or,
      when the front end learns readiness itself (gunicorn's workers report), call
      :meth:`ready` and, once :meth:`time_left` runs out, :meth:`timed_out`;
    - :meth:`abandon` when READY would be a lie (the process will never serve),
      :meth:`startup_failed`, :meth:`reloading` (a new generation), :meth:`stopping`;
    - :meth:`progress` for a milestone (a worker booted), :meth:`drain` when the server
      drains after :meth:`stopping` with a budget of its own, :meth:`drained` once done;
    - :meth:`start_watchdog` (a thread) or :meth:`watchdog_loop` (the event loop).

    *source* is where listeners are looked for (default: this process's own descriptors).
    *timeout_texts* are the STATUS texts of the timeout policy. *accepts_early* sees the
    selected listeners before READY and returns why they accept before this process
    serves, or None. *pid* is the process READY's STATUS names (default: this one;
    ``sdready exec`` names its command). Making one has no side effect; the unit
    self-check is :meth:`check_unit`. Without a notify socket every method is a no-op, so
    front ends stay inert outside systemd. Thread-safe.
    """

    #: A milestone extends a start by twice as long as it has taken so far, at least this.
    MILESTONE_MIN: ClassVar[float] = 1.0

    def __init__(
        self,
        options: ReadyOptions | None = None,
        *,
        source: ListenerSource | None = None,
        timeout_texts: TimeoutTexts = LISTENER_TIMEOUTS,
        accepts_early: Callable[[list[Listener]], str | None] | None = None,
        pid: int | None = None,
    ) -> None:
        self._options = options if options is not None else ReadyOptions()
        self.notifier = self._options.notifier if self._options.notifier is not None else Notifier()
        self.timeout_texts = timeout_texts
        #: The pid READY's STATUS names: this process, or the server ``sdready exec`` runs.
        self.pid = os.getpid() if pid is None else pid
        #: The listeners READY named (empty before READY, or when a front end said none).
        self.listeners: list[Listener] = []
        self.waiter = ListenerWaiter(
            self, self._options, source=source, accepts_early=accepts_early
        )
        self._machine = PhaseMachine()
        self._lock = threading.RLock()
        self._status = ""
        self._phase_started = self._deadline = 0.0
        self._begin_generation()
        self._took_over: int | None = None  # the main pid this process replaced (MAINPID=)
        self._main: bool | None = None  # None: as SYSTEMD_EXEC_PID says
        self._stop_started = 0.0
        self._drain: Drain | None = None
        self._watchdog: Watchdog | None = None

    # -- what a front end and systemd see ------------------------------------------------------

    @property
    def options(self) -> ReadyOptions:
        """The options of this generation (see :meth:`reconfigure`)."""
        return self._options

    @property
    def phase(self) -> Phase:
        """Where the service stands: :class:`~sdready._phase.Phase`."""
        return self._machine.phase

    @property
    def generation(self) -> int:
        """1, plus one per :meth:`reloading`."""
        return self._machine.generation

    @property
    def enabled(self) -> bool:
        """False outside systemd (no notify socket): nothing is sent, nothing is waited for."""
        return self.notifier.enabled

    @property
    def ready_sent(self) -> bool:
        """True once READY was sent in this generation (and until the phase moves on)."""
        return self._machine.phase is Phase.READY

    @property
    def ever_ready(self) -> bool:
        """True once any generation reached READY."""
        return self._machine.ready_count > 0

    @property
    def closed(self) -> bool:
        """True once READY would be a lie: startup failed, was abandoned, or stopping began."""
        return self._machine.phase in (Phase.FAILED, Phase.ABANDONED) or self.stopping_began

    @property
    def stopping_began(self) -> bool:
        """True from :meth:`stopping` on."""
        return self._machine.phase in STOPPED_PHASES

    @property
    def awaiting_timeout(self) -> bool:
        """True while READY is pending and the timeout policy has not been applied yet."""
        return self.enabled and self._machine.phase in PENDING - {Phase.OVERDUE}

    @property
    def last_status(self) -> str:
        """The last STATUS text sent (READY's included)."""
        return self._status

    @property
    def baseline(self) -> ListenerSnapshot | None:
        """What listened when :meth:`starting` ran (None before, or without /proc)."""
        return self.waiter.baseline

    @property
    def is_main(self) -> bool:
        """True when this process speaks for the unit (its main pid, or took over as such)."""
        return is_main_process() if self._main is None else self._main

    def time_left(self) -> float:
        """Seconds until ``ready_timeout`` runs out for this generation (0 once it has)."""
        return max(0.0, self._deadline - time.monotonic())

    def reconfigure(self, options: ReadyOptions) -> None:
        """Use *options* from the next generation on (gunicorn re-reads them on SIGHUP)."""
        with self._lock:
            self._options = options
            self.waiter.reset(options)

    def _begin_generation(self) -> None:
        """A start or a reload generation begins: ``ready_timeout`` counts from now."""
        self._phase_started = now = time.monotonic()
        self._deadline = now + self._options.ready_timeout

    def _move(self, event: Event) -> bool:
        """Apply *event* (the lock held); False when the phase table refuses it."""
        before = self._machine.phase
        moved = self._machine.move(event)
        if moved:
            logger.debug("phase %s -> %s (%s)", before, self._machine.phase, event.value)
        return moved

    # -- the startup ---------------------------------------------------------------------------

    def starting(self) -> None:
        """Snapshot existing listeners and send ``STATUS=Starting…``."""
        self.check_unit()
        if not self.enabled:
            return
        with self._lock:
            if not self._move(Event.START):
                return
            self._begin_generation()
        register_engine(self)  # sdready.progress() in this process goes through this engine
        self.waiter.take_baseline()
        self.status(texts.STARTING)

    def waiting(self) -> None:
        """Mark the end of the app's startup: ``STATUS=Waiting for the listening socket…``.

        Call it before the server can go on to listen (e.g. before forwarding ASGI's
        ``lifespan.startup.complete``): listeners opened between :meth:`starting` and now
        are the app's own, and this look decides which, whenever the wait then runs.
        """
        self.check_unit()  # sdready exec starts here
        if not self.enabled:
            return
        with self._lock:
            if not self._move(Event.WAIT):
                return
        self.waiter.mark_startup_done()
        self.progress(texts.WAITING)  # the app's startup is done: a milestone

    def inherited(self, listeners: list[Listener], *, why: str) -> None:
        """Sockets the server listens on before the app serves (socket activation, a parent's
        fd, werkzeug's reloader): READY must wait for the app to answer, not for the kernel.

        With ``probe="auto"`` this switches the wait to an HTTP probe of them; with another
        probe it says, once, how little the kernel's word proves here.
        """
        self.waiter.inherited(listeners, why=why)

    async def announce(self) -> bool:
        """Wait (asynchronously) for the server's listener, then send READY per the options.

        Returns True when READY was sent. Cancelling the task sends nothing.
        """
        return await self.waiter.announce()

    def announce_blocking(self, stop: threading.Event | None = None) -> bool:
        """Like :meth:`announce`, in the calling thread; give up silently once *stop* is set
        (or once :meth:`abandon` was called)."""
        return self.waiter.run_blocking(stop)

    def step(self) -> float | None:
        """One poll (and probe) of the wait, for a front end that runs its own loop.

        Returns the seconds until the next step is due, or None when the wait is over
        (READY sent, the timeout policy applied, or READY abandoned).
        """
        return self.waiter.step()

    # -- the outcome ---------------------------------------------------------------------------

    def ready(self, status: str, *, listeners: list[Listener] | None = None) -> bool:
        """Send ``READY=1`` with *status*, unless already sent this generation or a lie now.

        For front ends that learn readiness themselves (gunicorn's arbiter).
        """
        with self._lock:
            if not self.enabled:
                return False
            takes_over = self._took_over is not None and not self.ever_ready
            if not self._move(Event.READY):
                return False
            self.listeners = list(listeners or [])
            self._status = status
            if takes_over:
                # This process replaces the unit's main one (gunicorn's USR2 master): systemd
                # must track it from now on (accepted only with NotifyAccess=all).
                self._main = True
                self.notifier.send({"MAINPID": os.getpid(), "READY": 1, "STATUS": status})
            else:
                self.notifier.ready(status)
        logger.debug("READY sent: %s", status)
        return True

    def listening(self, listeners: list[Listener]) -> bool:
        """The wait found the server's *listeners*: READY, naming them."""
        if self.waiter.source is None and not threading.main_thread().is_alive():
            # A server thread that listened while the interpreter shuts down.
            self.abandon("the main thread has ended: the process is exiting before it served")
            return False
        addresses = texts.format_addresses(listeners)
        return self.ready(
            texts.READY.format(addresses=addresses, pid=self.pid), listeners=listeners
        )

    def timed_out(self, reason: object) -> bool:
        """Apply the ``on_timeout`` policy once per generation; True when READY was sent.

        ``"warn"`` logs an error and sends READY with a STATUS saying nothing was seen (a
        unit that is up beats one killed by ``TimeoutStartSec=`` when detection is what
        failed); ``"fail"`` sends no READY and says why (a later :meth:`ready` may still
        come); ``"ready"`` sends READY quietly.
        """
        policy = self._options.on_timeout
        timeout = self._options.ready_timeout
        with self._lock:
            if not self.awaiting_timeout:
                return False
            if policy == "fail":
                self._move(Event.TIME_OUT)
        if policy == "fail":
            logger.error("not sending READY: %s", reason)
            self.status(self.timeout_texts.fail.format(timeout=timeout))
            return False
        if policy == "warn":
            logger.error(
                "sending READY although no %s was seen (on_timeout='warn'): %s",
                self.timeout_texts.awaited,
                reason,
            )
            return self.ready(self.timeout_texts.warn.format(timeout=timeout, pid=self.pid))
        logger.debug("sending READY after the wait timed out (on_timeout='ready'): %s", reason)
        return self.ready(texts.READY_UNCHECKED.format(pid=self.pid))

    def abandon(self, reason: str) -> None:
        """READY would be a lie from now on (this process will never serve): never send it.

        The documented veto for front ends: werkzeug's reloader watcher, a process that is
        exiting, a gunicorn master replaced by its USR2 successor. A running wait stops at
        its next step; :meth:`reloading` opens a new generation.
        """
        with self._lock:
            if self._move(Event.ABANDON):
                logger.debug("READY abandoned: %s", reason)

    def handed_over(self) -> None:
        """Another process is the unit's main one now (a USR2 successor took over)."""
        self.abandon("another process is the unit's main one now")
        self._main = False
        self.stop_watchdog()

    def took_over(self, previous_main: int) -> None:
        """This process replaces main pid *previous_main*: READY carries ``MAINPID=``."""
        self._took_over = previous_main

    def startup_failed(self, message: str, errno: int | None = None) -> None:
        """Report a failed startup (``STATUS=Startup failed: …``, ``ERRNO=``); never READY after."""
        with self._lock:
            moved = self._move(Event.FAIL)
        if not self.enabled or not moved:
            return
        fields: dict[str, str | int] = {
            "STATUS": texts.STARTUP_FAILED.format(message=_one_line(message))
        }
        if errno is not None and errno > 0:
            fields["ERRNO"] = errno
        self._status = str(fields["STATUS"])
        self.notifier.send(fields)

    def reloading(self, status: str) -> None:
        """A new generation begins: ``RELOADING=1`` (with ``MONOTONIC_USEC``) if the previous
        one was ready, and READY may be sent once more."""
        with self._lock:
            if not self.enabled:
                return
            was_ready = self.ready_sent
            if not self._move(Event.RELOAD):
                return
            self._begin_generation()
            self.waiter.reset(self._options)
            if was_ready:
                self._status = status
                self.notifier.reloading(status)
                return
        self.status(status)

    def status(self, text: str) -> bool:
        """``STATUS=text``, unless it says what the last one said or stopping began."""
        with self._lock:
            if not self.enabled or text == self._status or self.stopping_began:
                return False
            self._status = text
        return self.notifier.status(text)

    def progress(self, text: str, *, extend: float | None = None) -> bool:
        """``STATUS=text``, plus ``EXTEND_TIMEOUT_USEC=`` while the service demonstrably
        gets on with a start, a reload or a drain.

        *extend*: the seconds the caller asks for (the app's :func:`sdready.progress`); None
        for a front end's milestone (a worker booted, the app's startup done), which the
        engine extends by twice as long as this start or reload has taken so far (at least
        :attr:`MILESTONE_MIN`, at most ``ready_timeout``): a start that got this far may
        take that long again, with as much to spare. No extension while running (systemd
        would stretch ``RuntimeMaxSec=`` and the watchdog), after a failed or abandoned
        start, after :meth:`drained`, past a drain's budget, nor from a process that is not
        the unit's main one. Raises :class:`ValueError` unless *extend* is positive and finite.
        """
        seconds = None if extend is None else timeout_usec(extend) / 1_000_000
        with self._lock:
            if not self.enabled:
                return False
            allowed = self._extension(seconds)
            if allowed is None and (
                text == self._status or (self.stopping_began and extend is None)
            ):
                return False
            self._status = text
        if allowed is None:
            return self.notifier.status(text)
        return self.notifier.progress(text, extend=allowed)

    def _extension(self, asked: float | None) -> float | None:
        """The seconds to ask systemd for now, or None (called with the lock held)."""
        phase = self._machine.phase
        if not self.is_main:
            return None  # a worker: its restart is no start, its exit no stop
        if phase in STOPPED_PHASES:
            if asked is None or phase is Phase.STOPPED:
                return None
            if self._drain is not None:
                asked = min(asked, self._drain.limit - time.monotonic())
            return asked if asked > 0 else None
        if phase not in PENDING:
            return None  # running, failed or abandoned
        if asked is None:
            taken = time.monotonic() - self._phase_started
            asked = min(max(self.MILESTONE_MIN, 2 * taken), self._options.ready_timeout)
        return asked

    # -- the stop ------------------------------------------------------------------------------

    def stopping(self) -> bool:
        """Send ``STOPPING=1`` with ``STATUS=Stopping…``; a pending READY is abandoned.

        Not from a worker (``SYSTEMD_EXEC_PID`` names another process) nor from a master
        that handed over: a server restarting one of its workers is not the service
        stopping, and with ``NotifyAccess=all`` systemd would take it as such.
        """
        with self._lock:
            if not self.enabled or not self._move(Event.STOP):
                return False
            self._stop_started = time.monotonic()
        self.stop_watchdog()
        if not self.is_main:
            logger.debug(
                "pid %d is a worker, not the unit's main process: no STOPPING=1", os.getpid()
            )
            return False
        self._status = texts.STOPPING
        return self.notifier.stopping(texts.STOPPING)

    def drain(self, remaining: Callable[[], int], budget: float) -> bool:
        """The server drains in-flight work after :meth:`stopping`: extend the stop timeout
        while it demonstrably does, within the server's own *budget* (:mod:`sdready._drain`).

        *remaining* says how much is still draining (gunicorn: its workers still alive);
        *budget*, the seconds the server itself allows from the stop on (gunicorn's
        ``graceful_timeout``). Starts only after a ``STOPPING=1`` from the main process of
        a service that was ready, and for a positive, finite budget; returns True if it
        started.
        """
        if not 0 < budget < float("inf"):
            return False  # gunicorn's graceful_timeout 0: nothing is waited for
        with self._lock:
            if not self.enabled or not self.is_main or not self.ever_ready:
                return False  # nothing was served (a failed start): nothing to drain
            if not self._move(Event.DRAIN):
                return False
            self._drain = Drain(
                remaining, budget, self._stop_started, self._drain_extend, self.drained
            )
        self._drain.start()
        return True

    def _drain_extend(self, text: str, seconds: float) -> None:
        with self._lock:
            if self._machine.phase is not Phase.DRAINING:
                return
            self._status = text
        self.notifier.progress(text, extend=seconds)

    def drained(self) -> None:
        """The drain (or the app's own shutdown) is over: no extension from now on."""
        with self._lock:
            self._move(Event.DRAINED)
            drain = self._drain
        if drain is not None:
            drain.end()

    # -- the unit check and the watchdog -----------------------------------------------------

    def check_unit(self) -> None:
        """Start the startup self-check (:mod:`sdready._unitcheck`), once per process.

        Only under systemd (``INVOCATION_ID``) and from a process that notifies or is the
        unit's main one (``Type=simple``: sdready stays inert there, and the check says
        why): a daemon thread asks systemd for this process's unit and logs one WARNING per
        setting that does not match what this front end does. Returns at once: READY never
        waits for it; its failures stay at DEBUG.
        """
        pid = os.getpid()
        if pid in _UNIT_CHECKED or invocation_id() is None:
            return
        if not self.enabled and main_pid() != pid:
            return
        _UNIT_CHECKED.add(pid)
        threading.Thread(
            target=_check_unit, args=(self,), name="sdready-unit-check", daemon=True
        ).start()

    def watchdog_period(self) -> float | None:
        """systemd's watchdog period for this process, or None: off, or not ours to feed.

        Follows ``WATCHDOG_PID``, and a ``MAINPID`` take-over (the previous main pid's
        watchdog is ours then). Warns once when ``WatchdogSec=`` is meant for another process
        while this one runs the app (uvicorn ``--workers``, granian): nobody can feed it.
        """
        if not self._options.watchdog or not self.enabled:
            return None
        if self._took_over is not None:
            # A USR2 successor feeds its predecessor's watchdog once it is the main pid.
            return watchdog_interval(taking_over=self._took_over) if self._main else None
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

    def pinging(self) -> bool:
        """True while the watchdog may be fed: never from STOPPING on."""
        return not self.stopping_began

    def ping(self) -> bool:
        """One ``WATCHDOG=1``, for a front end that runs its own loop; none once stopping."""
        return self.pinging() and self.notifier.watchdog()

    def start_watchdog(self, health: HealthCheck | None = None) -> bool:
        """Ping from a daemon thread while *health* passes; True if it started."""
        from ._watchdog import Watchdog

        period = self.watchdog_period()
        with self._lock:
            if period is None or self._watchdog is not None or self.stopping_began:
                return False
            self._watchdog = Watchdog(self.notifier, period, health, alive=self.pinging)
            self._watchdog.start()
        return True

    async def watchdog_loop(
        self,
        health: HealthCheck | None = None,
        *,
        sleep: Callable[[float], Awaitable[object]] | None = None,
    ) -> None:
        """Ping from the running event loop while *health* passes (see
        :func:`sdready.watchdog_loop`); returns at once when there is nothing to feed, and
        at STOPPING."""
        from ._watchdog import watchdog_loop

        period = self.watchdog_period()
        if period is not None and self.pinging():
            await watchdog_loop(self.notifier, period, health, sleep=sleep, alive=self.pinging)

    def stop_watchdog(self) -> None:
        """Stop the pinging thread, without waiting for a health check in progress."""
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.stop(timeout=0)


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(no message)"


#: Pids that started the unit self-check (a forked worker checks on its own, if at all).
_UNIT_CHECKED: set[int] = set()


def _check_unit(readiness: Readiness) -> None:
    from ._unitcheck import self_check  # loaded only under systemd, off the app's path

    self_check(readiness)
