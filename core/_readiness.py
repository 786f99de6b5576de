"""The readiness engine: one service's story, told to systemd, decided in one place.

Starting… → Waiting for the listening socket… → ``READY=1`` (or why not) → ``STOPPING=1``,
and for servers that reload, ``RELOADING=1`` → ``READY=1`` again, once per generation.

Every front end drives a :class:`Readiness` and decides nothing itself: the ASGI and
FastAPI plugins and Flask (this process's own sockets), ``sdready exec`` (another process
tree's sockets), gunicorn's arbiter (readiness pushed by its workers). Here, and only here:

- the phases and their STATUS texts (from :mod:`sdready.texts`);
- the listener rule and the one wait loop, over any *listener source*
  (:mod:`sdready._listeners`);
- the timeout policy (``on_timeout``) and its one default;
- READY at most once per generation, never after a failed or abandoned startup, with
  ``ERRNO=`` on failure;
- STOPPING only from the unit's main process (a worker's restart is not the service's);
- progress: ``EXTEND_TIMEOUT_USEC=`` only while a start, a reload or a drain demonstrably
  goes on (the app's own :func:`progress` calls, the front ends' milestones, a server's
  drain with its own budget), never while running, never from a worker;
- the watchdog period (``WatchdogSec=``, ``WATCHDOG_PID`` and a ``MAINPID`` take-over).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar, NamedTuple

from . import texts
from ._env import (
    invocation_id,
    is_main_process,
    listen_fds_count,
    main_pid,
    watchdog_elsewhere,
    watchdog_interval,
)
from ._exceptions import NotifyError
from ._listeners import (
    Listener,
    ListenerSnapshot,
    ListenerSource,
    async_wait_until_listening,
    listening_sockets,
    own_listeners,
    snapshot_listeners,
)
from ._log import logger
from ._notifier import PROGRESS_EXTEND, Notifier, _process_notifier
from ._options import INHERITED_PROBE, ReadyOptions
from ._probe import parse_probe
from ._protocol import timeout_usec
from ._wait import _Wait

if TYPE_CHECKING:
    from ._watchdog import HealthCheck, Watchdog

__all__ = ["Readiness", "ReadyOptions", "TimeoutTexts", "progress", "relay_progress"]

#: The probe's own bound per attempt; the wait's deadline bounds all of them.
_PROBE_TIMEOUT = 1.0


class TimeoutTexts(NamedTuple):
    """What the timeout policy says: STATUS texts ``warn`` (``.format(timeout=, pid=)``)
    and ``fail`` (``.format(timeout=)``), and ``awaited``, for the log: what was not seen."""

    warn: str
    fail: str
    awaited: str


LISTENER_TIMEOUTS = TimeoutTexts(texts.TIMEOUT_WARN, texts.TIMEOUT_FAIL, "listening socket")


class Readiness:
    """Tell systemd how one service starts, and send READY only once a client can connect.

    Driven by a front end through a small API:

    - :meth:`starting` before the app's own startup code (snapshots the listening sockets
      that exist already), :meth:`waiting` after it;
    - then either wait for a listener here — :meth:`announce` (asyncio),
      :meth:`announce_blocking` (a thread) or :meth:`step` (the caller's own loop) — or,
      when the front end learns readiness itself (gunicorn's workers report), call
      :meth:`ready` and, once :meth:`time_left` runs out, :meth:`timed_out`;
    - :meth:`abandon` when READY would be a lie (the process will never serve),
      :meth:`startup_failed`, :meth:`reloading` (a new generation), :meth:`stopping`;
    - :meth:`progress` for a milestone (a worker booted), :meth:`drain` when the server
      drains after :meth:`stopping` with a budget of its own, :meth:`drained` once done.

    *source* is where listeners are looked for: default, this process's own descriptors;
    ``sdready exec`` passes another process tree's. *timeout_texts* are the STATUS texts
    of the timeout policy. *accepts_early*, the front end's hook, sees the selected
    listeners before READY and returns why they accept before this process serves (werkzeug's
    reloader watcher), or None: with ``probe="auto"``, READY then waits for an HTTP probe.
    Without a notify socket every method is a no-op, so front ends stay inert outside
    systemd. Thread-safe: a front end may call from several threads.
    """

    #: A milestone extends a start by twice as long as it has taken so far, at least this.
    MILESTONE_MIN: ClassVar[float] = 1.0
    #: While a server drains: every DRAIN_TICK s, DRAIN_STEP s more, never past its own
    #: budget plus DRAIN_MARGIN after STOPPING=1, and never once the drain ended.
    DRAIN_TICK: ClassVar[float] = 1.0
    DRAIN_STEP: ClassVar[float] = 3.0
    DRAIN_MARGIN: ClassVar[float] = 2.0

    def __init__(
        self,
        options: ReadyOptions | None = None,
        *,
        source: ListenerSource | None = None,
        timeout_texts: TimeoutTexts = LISTENER_TIMEOUTS,
        accepts_early: Callable[[list[Listener]], str | None] | None = None,
    ) -> None:
        self.options = options if options is not None else ReadyOptions()
        self.notifier = self.options.notifier if self.options.notifier is not None else Notifier()
        self.source = source
        self.timeout_texts = timeout_texts
        self.accepts_early = accepts_early
        #: The pid READY's STATUS names: this process, or the server ``sdready exec`` runs.
        self.pid = os.getpid()
        self.baseline: ListenerSnapshot | None = None
        self.wait_started: ListenerSnapshot | None = None
        self.listeners: list[Listener] = []
        self.generation = 1
        self.ready_sent = False  # in this generation
        self.ever_ready = False
        self.deadline = 0.0
        self._phase_started = 0.0  # this start, or this reload
        self._begin_phase()
        self._lock = threading.RLock()
        self._closed = False  # READY would be a lie from now on
        self._stopping = False
        self._timed_out = False
        self._probe: str | None = None if self.options.auto_probe else self.options.probe
        self._wait: _Wait | None = None
        self._status = ""
        self._took_over: int | None = None  # the main pid this process replaced (MAINPID=)
        self._main: bool | None = None  # None: as SYSTEMD_EXEC_PID says
        self._stop_started = 0.0
        self._drain_limit: float | None = None  # the server's budget, once it drains
        self._drained = threading.Event()
        self._watchdog: Watchdog | None = None
        if not self.enabled and main_pid() == os.getpid():
            # The unit's main process without NOTIFY_SOCKET (Type=simple): front ends go
            # inert, so the unit check starts here to say what is wrong.
            self.check_unit()

    def _begin_phase(self) -> None:
        """A start or a reload generation begins: ``ready_timeout`` counts from now."""
        self._phase_started = now = time.monotonic()
        self.deadline = now + self.options.ready_timeout

    @property
    def enabled(self) -> bool:
        """False outside systemd (no notify socket): nothing is sent, nothing is waited for."""
        return self.notifier.enabled

    @property
    def closed(self) -> bool:
        """True once READY would be a lie: startup failed, was abandoned, or stopping began."""
        return self._closed

    # -- the startup -------------------------------------------------------------------------

    def starting(self) -> None:
        """Snapshot existing listeners and send ``STATUS=Starting…``."""
        if not self.enabled:
            return
        self.check_unit()
        self._begin_phase()
        _engines.clear()  # sdready.progress() in this process goes through this engine
        _engines[os.getpid()] = weakref.ref(self)
        if self.source is None:
            try:
                self.baseline = snapshot_listeners()
            except (NotImplementedError, OSError) as exc:  # no /proc: the wait says so
                logger.debug("cannot snapshot listening sockets: %s", exc)
            inherited = self.baseline.listeners if self.baseline is not None else ()
            if self.options.auto_probe and (inherited or listen_fds_count()):
                self._probe_inherited(inherited)
        self.status(texts.STARTING)

    def inherited(self, listeners: list[Listener], *, why: str) -> None:
        """Sockets the server listens on before the app serves (socket activation, a parent's
        fd, werkzeug's reloader): READY must wait for the app to answer, not for the kernel.

        With ``probe="auto"`` this switches the wait to an HTTP probe of them; with another
        probe it says, once, how little the kernel's word proves here.
        """
        if self.options.auto_probe:
            self._probe_inherited(listeners, why)
        elif self._probe is None or not self._probe.startswith("http:"):
            logger.warning(
                "%s already listened (%s): the kernel accepts connections into its backlog "
                "before the app serves, so READY after probe=%r proves little",
                texts.format_addresses(listeners),
                why,
                self._probe,
            )

    def _probe_inherited(self, listeners: Sequence[Listener], why: str = "") -> None:
        if self._probe == INHERITED_PROBE:
            return
        self._probe = INHERITED_PROBE
        logger.info(
            "%s already listened when the app was created (%s): the kernel accepts "
            "connections into its backlog before the app serves, so READY waits until a "
            "GET (%s) answers below 500",
            texts.format_addresses(listeners),
            why or "socket activation, a parent's fd or a pre-fork master",
            INHERITED_PROBE,
        )

    def waiting(self) -> None:
        """Mark the end of the app's startup: ``STATUS=Waiting for the listening socket…``.

        Call it before the server can go on to listen (e.g. before forwarding ASGI's
        ``lifespan.startup.complete``): listeners opened between :meth:`starting` and now
        are the app's own, and this look decides which, whenever the wait then runs.
        """
        if not self.enabled or self._closed:
            return
        self.check_unit()  # sdready exec starts here
        if self.source is None and self.baseline is not None:
            try:
                # Only what listens now matters here: no need for the snapshot's extra walk
                # over unlistened sockets, on the event loop, at the end of startup.
                self.wait_started = ListenerSnapshot(tuple(listening_sockets()), time.monotonic())
            except (NotImplementedError, OSError) as exc:
                logger.debug("cannot snapshot listening sockets: %s", exc)
        self.progress(texts.WAITING)  # the app's startup is done: a milestone

    async def announce(self) -> bool:
        """Wait (asynchronously) for the server's listener, then send READY per the options.

        Returns True when READY was sent. Cancelling the task sends nothing.
        """
        if not self._may_announce():
            return False
        options = self.options
        try:
            listeners = await async_wait_until_listening(
                options.ready_timeout,
                options.expect,
                baseline=self.baseline,
                probe=self._probe,
                wait_started=self.wait_started,
            )
        except (NotifyError, NotImplementedError, OSError) as exc:  # timeout, or no /proc
            return self.timed_out(exc)
        return self._listening(listeners)

    def announce_blocking(self, stop: threading.Event | None = None) -> bool:
        """Like :meth:`announce`, in the calling thread; give up silently once *stop* is set
        (or once :meth:`abandon` was called)."""
        if not self._may_announce():
            return False
        while (delay := self.step()) is not None:
            if stop is not None and stop.wait(delay):
                return False
            if stop is None:
                time.sleep(delay)
        return self.ready_sent

    def step(self) -> float | None:
        """One poll (and probe) of the wait, for a front end that runs its own loop.

        Returns the seconds until the next step is due, or None when the wait is over
        (READY sent, the timeout policy applied, or READY abandoned).
        """
        if not self._may_announce():
            return None
        try:
            if self._wait is None:
                self._wait = self._new_wait()
            selected = self._wait.step_blocking(self._inspect)
        except (NotifyError, NotImplementedError, OSError) as exc:
            self.timed_out(exc)
            return None
        if selected is not None:
            self._listening(selected)
            return None
        return self._wait.next_delay()

    def _inspect(self, selected: list[Listener]) -> None:
        if self.accepts_early is None or self._wait is None or self._wait.probe is not None:
            return
        why = self.accepts_early(selected)
        if why is not None:
            self.inherited(selected, why=why)
            if self._probe is not None:
                self._wait.probe = parse_probe(self._probe)

    def _new_wait(self) -> _Wait:
        options = self.options
        return _Wait(
            options.ready_timeout,
            options.expect,
            self.baseline,
            self._probe,
            _PROBE_TIMEOUT,
            wait_started=self.wait_started,
            source=own_listeners() if self.source is None else self.source,
        )

    @property
    def awaiting_timeout(self) -> bool:
        """True while READY is pending and the timeout policy has not been applied yet."""
        return self._may_announce()

    @property
    def last_status(self) -> str:
        """The last STATUS text sent (READY's included)."""
        return self._status

    def time_left(self) -> float:
        """Seconds until ``ready_timeout`` runs out for this generation (0 once it has)."""
        return max(0.0, self.deadline - time.monotonic())

    # -- the outcome -------------------------------------------------------------------------

    def ready(self, status: str, *, listeners: list[Listener] | None = None) -> bool:
        """Send ``READY=1`` with *status*, unless already sent this generation or a lie now.

        For front ends that learn readiness themselves (gunicorn's arbiter).
        """
        with self._lock:
            if not self.enabled or self._closed or self.ready_sent:
                return False
            takes_over = self._took_over is not None and not self.ever_ready
            if takes_over:
                # This process replaces the unit's main one (gunicorn's USR2 master): systemd
                # must track it from now on (accepted only with NotifyAccess=all).
                self.notifier.send({"MAINPID": os.getpid(), "READY": 1, "STATUS": status})
                self._main = True
            else:
                self.notifier.ready(status)
            # Only now: a text the protocol refuses (a newline) raised above, and nothing
            # may then say that READY went out.
            self.listeners = list(listeners or [])
            self.ready_sent = self.ever_ready = True
            self._status = status
        logger.debug("READY sent: %s", status)
        return True

    def _listening(self, listeners: list[Listener]) -> bool:
        if self.source is None and not threading.main_thread().is_alive():
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
        with self._lock:
            if self._closed or self.ready_sent or self._timed_out or not self.enabled:
                return False
            self._timed_out = True
        policy = self.options.on_timeout
        timeout = self.options.ready_timeout
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
            if not self._closed:
                logger.debug("READY abandoned: %s", reason)
            self._closed = True

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
        self.abandon("startup failed")
        if not self.enabled:
            return
        fields: dict[str, str | int] = {
            "STATUS": texts.STARTUP_FAILED.format(message=_one_line(message))
        }
        if errno is not None and errno > 0:
            fields["ERRNO"] = errno
        self.notifier.send(fields)

    def reloading(self, status: str) -> None:
        """A new generation begins: ``RELOADING=1`` (with ``MONOTONIC_USEC``) if the previous
        one was ready, and READY may be sent once more."""
        with self._lock:
            if not self.enabled or self._stopping:
                return
            was_ready = self.ready_sent
            self.generation += 1
            self._begin_phase()
            self.ready_sent = self._timed_out = self._closed = False
            self._wait = None
            if was_ready:
                self._status = status
                self.notifier.reloading(status)
            else:
                self.status(status)

    def status(self, text: str) -> bool:
        """``STATUS=text``, unless it says what the last one said or stopping began."""
        with self._lock:
            if not self.enabled or text == self._status or self._stopping:
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
            if allowed is None and (text == self._status or (self._stopping and extend is None)):
                return False
            self._status = text
        if allowed is None:
            return self.notifier.status(text)
        return self.notifier.progress(text, extend=allowed)

    def _extension(self, asked: float | None) -> float | None:
        """The seconds to ask systemd for now, or None (called with the lock held)."""
        now = time.monotonic()
        if self._stopping:
            if asked is None or self._drained.is_set():
                return None
            if self._drain_limit is not None:
                asked = min(asked, self._drain_limit - now)
            return asked if asked > 0 and self.is_main else None
        if self._closed or self.ready_sent or not self.is_main:
            return None  # running, failed or abandoned; or a worker (its restart is no start)
        if asked is None:
            taken = now - self._phase_started
            asked = min(max(self.MILESTONE_MIN, 2 * taken), self.options.ready_timeout)
        return asked

    def stopping(self) -> bool:
        """Send ``STOPPING=1`` with ``STATUS=Stopping…``; a pending READY is abandoned.

        Not from a worker (``SYSTEMD_EXEC_PID`` names another process) nor from a master
        that handed over: a server restarting one of its workers is not the service
        stopping, and with ``NotifyAccess=all`` systemd would take it as such.
        """
        with self._lock:
            self.abandon("stopping")
            if self._stopping or not self.enabled:
                return False
            self._stopping = True
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
        while it demonstrably does, within the server's own *budget*.

        *remaining* says how much is still draining (gunicorn: its workers still alive);
        *budget*, the seconds the server itself allows from the stop on (gunicorn's
        ``graceful_timeout``). Every :attr:`DRAIN_TICK` s while ``remaining()`` is above
        0, the engine asks for :attr:`DRAIN_STEP` s more, never past *budget* +
        :attr:`DRAIN_MARGIN` after ``STOPPING=1``: a drain that hangs is still killed.
        Runs in a daemon thread, started only after a ``STOPPING=1`` from the main process
        of a service that was ready, and for a positive, finite budget; returns True if it
        started.
        """
        if not 0 < budget < float("inf"):
            return False  # gunicorn's graceful_timeout 0: nothing is waited for
        with self._lock:
            if not self._stopping or not self.enabled or not self.is_main:
                return False
            if not self.ever_ready:  # nothing was served: nothing to drain (a failed start)
                return False
            if self._drain_limit is not None or self._drained.is_set():
                return False
            self._drain_limit = self._stop_started + budget + self.DRAIN_MARGIN
        threading.Thread(
            target=self._drain, args=(remaining, budget), name="sdready-drain", daemon=True
        ).start()
        return True

    def _drain(self, remaining: Callable[[], int], budget: float) -> None:
        limit = self._drain_limit
        assert limit is not None
        while not self._drained.is_set():
            try:
                count = remaining()
            except Exception:  # the front end's fact is unknown: no more time on credit
                logger.exception("sdready: cannot tell whether the server still drains")
                break
            left = limit - time.monotonic()
            if count <= 0 or left <= 0:
                logger.debug("drain over: %d still draining, %.1f s of budget left", count, left)
                break
            text = texts.DRAINING.format(count=count, budget=budget)
            with self._lock:
                self._status = text
            self.notifier.progress(text, extend=min(self.DRAIN_STEP, left))
            self._drained.wait(self.DRAIN_TICK)
        self._drained.set()

    def drained(self) -> None:
        """The drain (or the app's own shutdown) is over: no extension from now on."""
        self._drained.set()

    @property
    def is_main(self) -> bool:
        """True when this process speaks for the unit (its main pid, or took over as such)."""
        return is_main_process() if self._main is None else self._main

    def check_unit(self) -> None:
        """Start the startup self-check (:mod:`sdready._unitcheck`), once per process.

        Only under systemd (``INVOCATION_ID``): a daemon thread asks systemd for this
        process's unit and logs one WARNING per setting that does not match what this front
        end does. Returns at once: READY never waits for it; its failures stay at DEBUG.
        """
        pid = os.getpid()
        if pid in _UNIT_CHECKED or invocation_id() is None:
            return
        _UNIT_CHECKED.add(pid)
        threading.Thread(
            target=_check_unit, args=(self,), name="sdready-unit-check", daemon=True
        ).start()

    # -- the watchdog ------------------------------------------------------------------------

    def watchdog_period(self) -> float | None:
        """systemd's watchdog period for this process, or None: off, or not ours to feed.

        Follows ``WATCHDOG_PID``, and a ``MAINPID`` take-over (the previous main pid's
        watchdog is ours then). Warns once when ``WatchdogSec=`` is meant for another process
        while this one runs the app (uvicorn ``--workers``, granian): nobody can feed it.
        """
        if not self.options.watchdog or not self.enabled:
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

    def start_watchdog(self, health: HealthCheck | None = None) -> bool:
        """Ping from a daemon thread while *health* passes; True if it started."""
        from ._watchdog import Watchdog

        period = self.watchdog_period()
        with self._lock:
            if period is None or self._watchdog is not None or self._stopping:
                return False
            self._watchdog = Watchdog(self.notifier, period, health).start()
        return True

    def stop_watchdog(self) -> None:
        """Stop the pinging thread, without waiting for a health check in progress."""
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.stop(timeout=0)

    # -- internals ---------------------------------------------------------------------------

    def _may_announce(self) -> bool:
        return self.enabled and not self._closed and not self.ready_sent and not self._timed_out


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(no message)"


#: Pids that started the unit self-check (a forked worker checks on its own, if at all).
_UNIT_CHECKED: set[int] = set()


def _check_unit(readiness: Readiness) -> None:
    from ._unitcheck import self_check  # loaded only under systemd, off the app's path

    self_check(readiness)


# -- the module helper ----------------------------------------------------------------------

#: The engine of this process's front end, by pid (a forked child must not use its parent's).
_engines: dict[int, weakref.ref[Readiness]] = {}
#: Where this process's progress goes instead, by pid (a gunicorn worker: to its arbiter).
_relays: dict[int, Callable[[str, float], bool]] = {}


def relay_progress(relay: Callable[[str, float], bool] | None) -> None:
    """Send this process's :func:`progress` calls to *relay* ``(text, extend)`` (None: stop).

    The hook for a front end whose app runs where systemd is not told directly: gunicorn's
    workers never see ``NOTIFY_SOCKET`` and pass the app's progress to the arbiter, whose
    engine decides. Per process: a child forked later does not inherit it.
    """
    _relays.pop(os.getpid(), None)
    if relay is not None:
        _relays[os.getpid()] = relay


def progress(text: str, *, extend: float = PROGRESS_EXTEND) -> bool:
    """Say what the service is doing, and keep its start or stop alive *extend* more seconds.

    ``STATUS=text`` plus ``EXTEND_TIMEOUT_USEC=`` in one datagram: call it before each step
    of a long startup (or of the app's own shutdown), each time asking for as long as the
    step may take; a start that stops calling it is killed by ``TimeoutStartSec=`` as
    before. With a front end in this process (SystemdMiddleware, SystemdNotify, gunicorn's
    arbiter, or its workers through it) its engine decides: once the app runs, only
    ``STATUS``. A plain datagram send, safe from sync and async code; outside systemd it
    does nothing and returns False. Raises :class:`ValueError` unless *extend* is positive
    and finite.

    Example (a FastAPI lifespan)::

        for i, shard in enumerate(shards, 1):
            sdready.progress(f"Loading shard {i}/{len(shards)}", extend=60)
            await load(shard)
    """
    pid = os.getpid()
    ref = _engines.get(pid)
    engine = ref() if ref is not None else None
    if engine is not None and engine.enabled:
        return engine.progress(text, extend=extend)
    relay = _relays.get(pid)
    if relay is not None:
        timeout_usec(extend)  # the same check as everywhere: a bug shows in the worker
        return relay(text, extend)
    return _process_notifier().progress(text, extend=extend)
