"""The readiness engine: one service's story, told to systemd, decided in one place.

Starting… → Waiting for the listening socket… → ``READY=1`` (or why not) → ``STOPPING=1``,
and for servers that reload, ``RELOADING=1`` → ``READY=1`` again, once per generation.

Every front end drives a :class:`Readiness` and decides nothing itself: the ASGI and
FastAPI plugins, Flask and Django (this process's own sockets), ``sdready exec`` (another
process tree's sockets), gunicorn's arbiter (readiness pushed by its workers). The engine's
state is one :class:`~sdready._engine._phase.Phase` moved through one table
(:mod:`sdready._engine._phase`); what systemd is told follows from the move, and is said by
:mod:`sdready._engine._messenger`:

- the STATUS texts (from :mod:`sdready.texts`) and the timeout policy (``on_timeout``);
- READY at most once per generation, never after a failed or abandoned startup, with
  ``ERRNO=`` on failure;
- STOPPING only from the unit's main process (a worker's restart is not the service's);
- progress: ``EXTEND_TIMEOUT_USEC=`` only while a start, a reload or a drain demonstrably
  goes on (the app's own :func:`progress` calls, the front ends' milestones, a server's
  drain with its own budget: :mod:`sdready._engine._drain`), never while running, never from a
  worker;
- the watchdog: one pinger per engine, fed only until STOPPING (:mod:`sdready._engine._watchdog`).

The wait for the listener lives with the wait (:mod:`sdready._engine._waiter`).

A front end's calls, each an event of the phase machine:

- :meth:`Readiness.starting` before the app's own startup code (snapshots the listening
  sockets that exist already), :meth:`~Readiness.waiting` after it;
- then either wait for a listener with ``readiness.waiter`` (``announce()`` in asyncio,
  ``announce_blocking()`` in a thread, ``step()`` in the caller's own loop) or, when the
  front end learns readiness itself (gunicorn's workers report), call
  :meth:`~Readiness.ready` and, once :meth:`~Readiness.time_left` runs out,
  :meth:`~Readiness.timed_out`;
- :meth:`~Readiness.abandon` when READY would be a lie (the process will never serve),
  :meth:`~Readiness.startup_failed`, :meth:`~Readiness.reloading` (a new generation),
  :meth:`~Readiness.stopping`;
- :meth:`~Readiness.progress` for a milestone (a worker booted), :meth:`~Readiness.drain`
  when the server drains after STOPPING with a budget of its own,
  :meth:`~Readiness.drained` once done;
- ``readiness.watchdog``: ``start()`` (a thread), ``loop()`` (the event loop) or ``ping()``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from .. import texts
from .._listen._listeners import Listener, ListenerSource
from .._log import logger
from .._notify._notifier import Notifier
from .._notify._protocol import encode, timeout_usec
from .._options import ReadyOptions
from ._drain import Drain
from ._extend import GenerationClock
from ._messenger import (
    EXPECTED_TIMEOUTS,
    LISTENER_TIMEOUTS,
    Messenger,
    TimeoutTexts,
    timeout_status,
)
from ._phase import AWAITING, STOPPED_PHASES, Event, Phase, PhaseMachine
from ._pinger import Pinger
from ._progress import progress, register_engine, relay_progress
from ._selfcheck import start_self_check
from ._waiter import ListenerWaiter

__all__ = ["Readiness", "ReadyOptions", "TimeoutTexts", "progress", "relay_progress"]


class Readiness:
    """Tell systemd how one service starts, and send READY only once a client can connect.

    A front end reports its server's life with the calls the module docstring lists. *source*
    is where listeners are looked for (default: this process's own descriptors);
    *timeout_texts*, the timeout policy's STATUS texts; *accepts_early* sees the selected
    listeners before READY and returns why they accept before this process serves, or None;
    *pid*, the process READY's STATUS names (``sdready exec`` names its command). Making
    one has no side effect (the unit self-check is :meth:`check_unit`). Without a notify
    socket, a readiness path or a shutdown delay every method is a no-op: front ends stay
    inert outside systemd. Thread-safe.
    """

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
        expected = timeout_texts is LISTENER_TIMEOUTS and self._options.expect is not None
        self.timeout_texts = EXPECTED_TIMEOUTS if expected else timeout_texts
        #: The pid READY's STATUS names: this process, or the server ``sdready exec`` runs.
        self.pid = os.getpid() if pid is None else pid
        #: The listeners READY named (empty before READY, or when a front end said none).
        self.listeners: list[Listener] = []
        #: The wait for the server's listeners (:mod:`sdready._engine._waiter`).
        self.waiter = ListenerWaiter(
            self, self._options, source=source, accepts_early=accepts_early
        )
        self._machine = PhaseMachine()
        self._on_move: Callable[[Phase], object] | None = None
        self._lock = threading.RLock()
        self._tell = Messenger(self.notifier)  # what systemd is told, and how
        self._clock = GenerationClock(self._options.ready_timeout)
        self._stop_started = 0.0
        self._drain: Drain | None = None
        #: The watchdog pinger (:mod:`sdready._engine._pinger`): fed until STOPPING.
        self.watchdog = Pinger(self)

    # -- what a front end and systemd see ------------------------------------------------------

    @property
    def options(self) -> ReadyOptions:
        """The options of this generation (see :meth:`reconfigure`)."""
        return self._options

    @property
    def phase(self) -> Phase:
        """Where the service stands: :class:`~sdready._engine._phase.Phase`."""
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
    def active(self) -> bool:
        """True when the phase moves: under systemd, or with a readiness path or a shutdown
        delay (Kubernetes: the phase moves as if READY were sent, nothing is sent)."""
        return self.notifier.enabled or self._options.serves_probes

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
        return self.active and self._machine.phase in AWAITING

    @property
    def last_status(self) -> str:
        """The last STATUS text sent (READY's included)."""
        return self._tell.last_status

    def time_left(self) -> float:
        """Seconds until ``ready_timeout`` runs out for this generation (0 once it has)."""
        return self._clock.time_left()

    def reconfigure(self, options: ReadyOptions) -> None:
        """Use *options* from the next generation on (gunicorn re-reads them on SIGHUP)."""
        with self._lock:
            self._options = options
            self.waiter.reset(options)

    def _move(self, event: Event) -> bool:
        """Apply *event* (the lock held); False when the phase table refuses it."""
        before = self._machine.phase
        moved = self._machine.move(event)
        if moved:
            logger.debug("phase %s -> %s (%s)", before, self._machine.phase, event.value)
            if self._on_move is not None:
                self._on_move(self._machine.phase)
        return moved

    def publish_phase(self, publish: Callable[[Phase], object]) -> None:
        """Call ``publish(phase)`` now and on every move of the phase (gunicorn's arbiter
        writes it where its workers, which answer ``ready_path``, read it)."""
        with self._lock:
            self._on_move = publish
            publish(self._machine.phase)

    # -- the startup ---------------------------------------------------------------------------

    def starting(self) -> None:
        """Snapshot existing listeners and send ``STATUS=Starting…``."""
        self.check_unit()
        if not self.active:
            return
        with self._lock:
            if not self._move(Event.START):
                return
            self._clock.begin(self._options.ready_timeout)
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
        if not self.active:
            return
        with self._lock:
            if not self._move(Event.WAIT):
                return
        self.waiter.mark_startup_done()
        self.progress(texts.WAITING)  # the app's startup is done: a milestone

    # -- the outcome ---------------------------------------------------------------------------

    def ready(self, status: str, *, listeners: list[Listener] | None = None) -> bool:
        """Send ``READY=1`` with *status*, unless already sent this generation or a lie now.

        For front ends that learn readiness themselves (gunicorn's arbiter).
        """
        with self._lock:
            if not self.active or not self._machine.allows(Event.READY):
                return False
            first = not self.ever_ready
            if self.enabled:
                encode({"STATUS": status})  # a text the protocol refuses raises before the move
            # The phase moves before the datagram goes: whoever sees READY (systemd, a
            # balancer told by it) must find the endpoint answering 200 already.
            self._move(Event.READY)
            self._tell.ready(status, first=first)
            self.listeners = list(listeners or [])
        logger.debug("READY %s: %s", "sent" if self.enabled else "reached (no systemd)", status)
        self.watchdog.restate()
        return True

    def timed_out(self, reason: object) -> bool:
        """Apply the ``on_timeout`` policy once per generation; True when READY was sent:
        ``"warn"`` logs an error and sends READY saying nothing was seen (a unit that is up
        beats one killed by ``TimeoutStartSec=`` when detection is what failed), ``"fail"``
        sends no READY and says why (a later :meth:`ready` may still come), ``"ready"``
        sends READY quietly."""
        policy = self._options.on_timeout
        timeout = self._options.ready_timeout
        with self._lock:
            if not self.awaiting_timeout:
                return False
            if policy == "fail":
                self._move(Event.TIME_OUT)
        text = timeout_status(policy, self.timeout_texts, timeout, self.pid, reason)
        if policy == "fail":
            self.status(text)
            return False
        return self.ready(text)

    def abandon(self, reason: str) -> None:
        """READY would be a lie from now on (this process will never serve): never send it.

        The documented veto for front ends: werkzeug's reloader watcher, a process that is
        exiting, a gunicorn master replaced by its USR2 successor. A running wait stops at
        its next step; :meth:`reloading` opens a new generation.
        """
        with self._lock:
            if self._move(Event.ABANDON):
                logger.debug("READY abandoned: %s", reason)

    @property
    def is_main(self) -> bool:
        """True when this process speaks for the unit (its main pid, or took over as such)."""
        return self._tell.is_main

    def handed_over(self) -> None:
        """Another process is the unit's main one now (a USR2 successor took over)."""
        self.abandon("another process is the unit's main one now")
        self._tell.handed_over()
        self.watchdog.stop()

    def took_over(self, previous_main: int) -> None:
        """This process replaces main pid *previous_main*: READY carries ``MAINPID=``."""
        self._tell.took_over(previous_main)

    @property
    def took_over_from(self) -> int | None:
        """The main pid this process replaces (see :meth:`took_over`), or None."""
        return self._tell.took_over_from

    def startup_failed(self, message: str | BaseException, errno: int | None = None) -> None:
        """Report a failed startup (``STATUS=Startup failed: …``, ``ERRNO=``); never READY after.

        *message* may be the exception itself: its one-line text, and the errno of an
        :class:`OSError` in its causes (:func:`sdready.texts.failure`).
        """
        with self._lock:
            moved = self._move(Event.FAIL)
        if moved:
            self._tell.startup_failed(message, errno)

    def reloading(self, status: str) -> None:
        """A new generation begins: ``RELOADING=1`` (with ``MONOTONIC_USEC``) if the previous
        one was ready, and READY may be sent once more."""
        with self._lock:
            if not self.active:
                return
            was_ready = self.ready_sent
            if not self._move(Event.RELOAD):
                return
            self._clock.begin(self._options.ready_timeout)
            self.waiter.reset(self._options)
            if was_ready:
                self._tell.reloading(status)
                return
        self.status(status)

    def status(self, text: str, *, errno: int | None = None) -> bool:
        """``STATUS=text`` (one line, :data:`sdready.texts.STATUS_BUDGET` at most), with
        ``ERRNO=`` for a failure's *errno*; not when it says what the last one said, nor
        once stopping began."""
        return not self.stopping_began and self._tell.status(text, errno=errno)

    def progress(self, text: str, *, extend: float | None = None) -> bool:
        """``STATUS=text``, plus ``EXTEND_TIMEOUT_USEC=`` while the service demonstrably
        gets on with a start, a reload or a drain (:mod:`sdready._engine._extend` decides how much).

        *extend*: the seconds the caller asks for (the app's :func:`sdready.progress`); None
        for a front end's milestone (a worker booted, the app's startup done). Raises
        :class:`ValueError` unless *extend* is positive and finite.
        """
        seconds = None if extend is None else timeout_usec(extend) / 1_000_000
        with self._lock:
            if not self.enabled:
                return False
            drain = self._drain.limit if self._drain is not None else None
            allowed = self._clock.extension(
                self._machine.phase, seconds, main=self.is_main, drain_limit=drain
            )
            if allowed is None and (
                text == self._tell.last_status or (self.stopping_began and extend is None)
            ):
                return False
        return self._tell.progress(text, allowed)

    # -- the stop ------------------------------------------------------------------------------

    def stopping(self, *, delay: float = 0) -> bool:
        """Send ``STOPPING=1`` with ``STATUS=Stopping…``; a pending READY is abandoned.

        Not from a worker (``SYSTEMD_EXEC_PID`` names another process) nor from a master
        that handed over: with ``NotifyAccess=all`` systemd would take a worker's restart for
        the service stopping. A shutdown *delay* (seconds the server keeps serving first)
        extends the stop timeout (:meth:`sdready._engine._messenger.Messenger.stopping`).
        """
        with self._lock:
            if not self.active or not self._move(Event.STOP):
                return False
            self._stop_started = time.monotonic()
        self.watchdog.stop()
        return self._tell.stopping(delay)

    def drain(self, remaining: Callable[[], int], budget: float) -> bool:
        """After :meth:`stopping`, extend the stop timeout while the server demonstrably
        drains (*remaining* says how much: gunicorn's live workers), within its own positive,
        finite *budget* of seconds from the stop (``graceful_timeout``;
        :mod:`sdready._engine._drain`). Only from the unit's main process, once the service
        was ready; True if it started."""
        if not 0 < budget < float("inf"):
            return False  # gunicorn's graceful_timeout 0: nothing is waited for
        with self._lock:
            if not self.enabled or not self.is_main or not self.ever_ready:
                return False  # nothing was served (a failed start): nothing to drain
            if not self._move(Event.DRAIN):
                return False
            # The drain's extensions end with it, and it ends before the phase moves on.
            self._drain = Drain(
                remaining, budget, self._stop_started, self._tell.progress, self.drained
            )
        self._drain.start()
        return True

    def drained(self) -> None:
        """The drain (or the app's own shutdown) is over: no extension from now on."""
        with self._lock:
            if self._drain is not None:
                self._drain.end()
            self._move(Event.DRAINED)

    # -- the unit check ------------------------------------------------------------------------

    def check_unit(self) -> None:
        """Start the unit self-check in the background, once per process
        (:mod:`sdready._engine._selfcheck`); front ends call it even when inert, which also says
        once why a ``NOTIFY_SOCKET`` that is set cannot be used."""
        start_self_check(self)
