"""gunicorn's arbiter: it drives the readiness engine with what its workers report.

Each worker reports over a pipe created before the fork (see :mod:`._worker`) once it can
serve; a thread here reads the pipe, counts the workers of the current generation (one per
``SIGHUP``) and tells the engine: READY once enough of them serve, the booting progress
and the failures as STATUS, STOPPING on TERM/INT/QUIT. The engine decides the rest: the
timeout policy, READY once per generation, the STOPPING rule, the watchdog.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import MutableMapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sdready import Notifier, texts
from sdready.integration import (
    Phase,
    Readiness,
    ReadyOptions,
    TimeoutTexts,
    chain_signal,
    contained,
    prefixed,
    watchdog_interval,
)

from . import _compat, _keep
from ._endpoint import Endpoint
from ._pipe import ReportPipe
from ._stop import DelayedStop, cancel_boots
from ._table import Booted, WorkerTable, plural

if TYPE_CHECKING:
    from gunicorn.arbiter import Arbiter
    from gunicorn.workers.base import Worker

__all__ = ["OptionError", "arbiter"]

logger = logging.getLogger("sdready")

_TIMEOUTS = TimeoutTexts(
    texts.GUNICORN_TIMEOUT_WARN, texts.GUNICORN_TIMEOUT_FAIL, "worker ready to serve"
)
_OPTIONS = (
    "ready_workers",
    "ready_timeout",
    "on_timeout",
    "watchdog",
    "keep_sockets",
    "ready_path",
    "live_path",
    "shutdown_delay",
    "health",
)
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


class _OptionError(ValueError, RuntimeError):
    """An invalid ``sdready_*`` option: gunicorn must not start with it.

    A RuntimeError too: gunicorn prints those as one ``Error: …`` line and exits 1, as for
    its own bad settings, instead of a chained traceback.
    """


def _read_options(namespace: MutableMapping[str, Any]) -> ReadyOptions:
    """``sdready_*`` config variables, then ``SDREADY_*`` environment variables (which win,
    as with ``GUNICORN_CMD_ARGS``); an invalid one stops gunicorn."""
    try:
        configured = prefixed(namespace, "sdready_")
        # The environment may carry SDREADY_* settings meant for a plugin in the workers.
        environment = {
            k: v for k, v in prefixed(os.environ, "SDREADY_", strict=False).items() if k in _OPTIONS
        }
        ReadyOptions.from_settings(environment, label="SDREADY_{}")  # its errors name it so
        settings = {**configured, **environment}
        unused = sorted(set(configured) - set(_OPTIONS))
        if unused:
            # The workers report readiness themselves: nothing here would use these.
            raise ValueError(
                f"{', '.join('sdready_' + name for name in unused)} do not apply to gunicorn; "
                f"its options: {', '.join('sdready_' + name for name in _OPTIONS)}"
            )
        return ReadyOptions.from_settings(settings, label="sdready_{}")
    except ValueError as exc:
        raise _OptionError(f"sdready: {exc}") from exc


def _required_workers(options: ReadyOptions, total: int, reuse_port: bool) -> int:
    wanted = options.ready_workers
    if wanted is None:  # each worker's own reuse_port socket: all of them must listen
        wanted = "all" if reuse_port else 1
    return max(1, total) if wanted == "all" else min(int(wanted), max(1, total))


class _ArbiterSide:
    """The arbiter's view: which workers can serve, and what systemd was told."""

    def __init__(self) -> None:
        self.taken = False
        self.pid = 0
        self.notifier: Notifier | None = None
        self.server: Arbiter | None = None
        #: The config module's namespace, where the ``sdready_*`` options are read.
        self.namespace: MutableMapping[str, Any] = {}
        #: The engine; its options are re-read on SIGHUP.
        self.readiness = Readiness(ReadyOptions(notifier=Notifier(None)))
        #: The paths the workers answer, and the phase they answer from (made when active).
        self.endpoint: Endpoint | None = None
        self._lock = threading.Lock()
        self._pipe = ReportPipe()
        self._delay = DelayedStop()
        self._stop_seen = False
        self._thread: threading.Thread | None = None
        self._closing = False
        self._stop_signal = 0
        # The engine counts generations (1 at start, +1 per SIGHUP) and holds the phase;
        # the table, which workers belong to this one and what each did.
        self._workers = WorkerTable()
        self._all_booted = False  # this generation had all its workers at some point
        self._over = False  # on_exit ran: nothing more is decided here
        self._failure = ""
        self._failed_unbooted = False  # a worker failed and none booted since

    @property
    def active(self) -> bool:
        """True in the arbiter process when there is a notify socket to report to, or a
        readiness path or a shutdown delay to serve (Kubernetes: the phase moves anyway)."""
        return self.readiness.active and self.pid == os.getpid()

    # -- main thread: gunicorn's hooks --------------------------------------------------

    def take_notify_socket(self, server: Arbiter) -> None:
        """Keep NOTIFY_SOCKET for the arbiter and hide it from gunicorn and the workers."""
        if self.taken:
            return
        self.taken = True
        self.pid = os.getpid()
        self.server = server
        address = os.environ.pop("NOTIFY_SOCKET", None)
        if not address:
            logger.debug("no NOTIFY_SOCKET: sdready's gunicorn plugin stays inert")
            return
        self.notifier = Notifier(address)
        logger.debug("took NOTIFY_SOCKET=%s from the environment for the arbiter", address)

    def starting(self, server: Arbiter) -> None:
        self.take_notify_socket(server)
        try:
            options = _read_options(self.namespace)
        except _OptionError as exc:
            if self.notifier is not None:  # the unit says why, not only the journal
                failed = texts.one_line(texts.STARTUP_FAILED.format(message=exc))
                self.notifier.status(failed)
                self.notifier.flush(1.0)
            raise
        if self.notifier is None and not options.serves_probes:
            self.readiness.check_unit()  # under systemd without NOTIFY_SOCKET: says why
        else:
            self.endpoint = Endpoint()  # before any worker forks: they share its cell
            self.endpoint.configure(options)
            self.readiness = Readiness(
                replace(options, notifier=self.notifier or Notifier(None)),
                timeout_texts=_TIMEOUTS,
            )
            self.readiness.publish_phase(self.endpoint.cell.publish)
            old_master = _compat.master_pid(server)
            if old_master:  # a USR2 child: READY takes over as the unit's main pid
                self.readiness.took_over(old_master)
            self.readiness.starting()

    def when_ready(self, server: Arbiter) -> None:
        if not self.active:
            return
        self._pipe.open()  # before the first fork: every worker inherits its write end
        self._delay.remember_server_handler()
        for signum in _STOP_SIGNALS:
            # gunicorn installs its handlers after on_starting: chain ours in front here.
            chain_signal(signum, self._on_stop_signal)
        self._delay.install(self.readiness)  # after ours: it holds SIGTERM in front of all
        with self._lock:
            self._update()
        self._thread = threading.Thread(target=self._run, name="sdready-gunicorn", daemon=True)
        self._thread.start()
        self._start_watchdog()

    def reloading(self, server: Arbiter) -> None:
        if not self.active:
            return
        try:
            options = _read_options(self.namespace)
            self.readiness.reconfigure(replace(options, notifier=self.readiness.notifier))
            if self.endpoint is not None:
                self.endpoint.configure(options)
            self._delay.install(self.readiness)
        except _OptionError:
            logger.exception("keeping the previous sdready options")
        with self._lock:
            # Workers spawned from now on are the new ones.
            self._workers.new_generation(_compat.spawned_age(server))
            self._all_booted = False
            following = self.readiness.ready_sent or self._reloading()
            generation = self.readiness.generation + 1  # the one this reload opens
            self.readiness.reloading(self._progress_text(following, generation))
        self._pipe.wake()

    def forking(self, worker: Worker) -> None:
        if self.active:
            with self._lock:
                self._workers.forked(_compat.worker_age(worker))

    def worker_exited(self, worker: Worker) -> None:
        if not self.active:
            return
        age = _compat.worker_age(worker)
        with self._lock:
            self._workers.gone(age)
            self._update()

    def workers_changed(self) -> None:
        if self.active and self._thread is not None:
            with self._lock:
                self._update()

    def before_exec(self, server: Arbiter) -> None:
        """USR2, in the child about to exec the new master: hand it NOTIFY_SOCKET.

        gunicorn execs with a copy of the environment taken when the config was loaded;
        after a SIGHUP that copy no longer has the variable.
        """
        if self.notifier is not None and self.notifier.address:
            _compat.exec_environment(server)["NOTIFY_SOCKET"] = self.notifier.address

    def in_child(self) -> int:
        """After fork, in the worker: drop the arbiter's duties and descriptors; return the
        pipe's write end for the worker's report (-1 when inert)."""
        if not self._pipe.opened:
            return -1
        fd = self._pipe.in_child()
        self.notifier = None
        self.readiness = Readiness(ReadyOptions(notifier=Notifier(None)))
        return fd

    def exiting(self, server: Arbiter) -> None:
        if not self.active:
            return
        if self._stop_signal:  # the thread may not have got to it yet
            self._stopping(self._stop_signal)
        halt = sys.exc_info()[1]  # gunicorn calls on_exit while handling HaltServer
        reason = _compat.halt_reason(halt)
        with self._lock:
            if reason and not self.readiness.stopping_began and not self._over:
                message = f"{reason.rstrip('.')} ({self._failure})" if self._failure else reason
                ever = self.readiness.ever_ready
                text = texts.GUNICORN_FAILED if ever else texts.STARTUP_FAILED
                self.readiness.status(text.format(message=message))
            self._over = True
        self.readiness.drained()  # the arbiter exits: nothing drains any more
        self._closing = True
        self._pipe.wake()
        self.readiness.watchdog.stop()
        if self._thread is not None:
            self._thread.join(2.0)
        self.readiness.notifier.flush(2.0)

    # -- signal handler (main thread, any moment): only set a flag and wake the thread --

    def _on_stop_signal(self, signum: int) -> None:
        self._stop_signal = signum
        if self.server is not None:
            _keep.stopping(self.server)  # a kept unix socket's file must survive the exit
        self._pipe.wake()

    # -- the sdready-gunicorn thread ----------------------------------------------------

    def _run(self) -> None:
        while not self._closing:
            wait = None
            if self.readiness.awaiting_timeout:
                wait = int(self.readiness.time_left() * 1000) + 1
            try:
                for event in self._pipe.wait(wait):
                    with self._lock:
                        self._on_event(event)
                if self._stop_signal:
                    self._stopping(self._stop_signal)
                with self._lock:
                    if self.readiness.awaiting_timeout and not self.readiness.time_left():
                        self._timeout()
            except Exception:  # keep serving later reports: one bad one must not end it all
                logger.exception("sdready's gunicorn thread")
                time.sleep(0.1)

    def _on_event(self, event: dict[str, Any]) -> None:
        age = int(event["age"])
        if age in self._workers.exited:
            return  # reaped before its report was read
        if event["event"] == "progress":
            self._on_progress(age, event)
            return
        if event["event"] == "booted":
            if not event["complete"]:
                logger.warning("worker %s booted but not all its sockets listen", event["pid"])
            self._workers.boot(age, int(event["pid"]), event["addresses"])
            logger.debug(
                "worker %s (age %d) can serve on %s", event["pid"], age, event["addresses"]
            )
        else:
            self._failure = f"worker {event['pid']}: {event['reason']}"
            logger.debug("worker %s failed to boot: %s", event["pid"], event["reason"])
            if not self.readiness.ready_sent:
                failed = texts.STARTUP_FAILED.format(message=self._failure)
                self.readiness.status(failed, errno=event.get("errno"))
                self._failed_unbooted = True  # the failure stays in STATUS until one boots
                return
        self._update(booted=True)

    def _on_progress(self, age: int, event: dict[str, Any]) -> None:
        # The app's progress in a worker booting for the generation that awaits READY;
        # a worker replaced while serving is no start, and its text would hide the READY one.
        if self._workers.of_this_generation(age) and self.readiness.phase.pending:
            self.readiness.progress(str(event["text"]), extend=float(event["extend"]))

    def _stopping(self, signum: int) -> None:
        self._stop_signal = 0
        server = self.server
        assert server is not None
        with self._lock:
            if self._stop_seen or self._over:
                return
            self._stop_seen = True
            if _compat.reexec_pid(server):  # USR2: the new master speaks for the unit from now on
                self.readiness.handed_over()
            served = self.readiness.ever_ready
            # The shutdown delay sent STOPPING=1 when it began; its SIGTERM comes now.
            delayed = self.readiness.stopping_began
            budget = _compat.graceful_timeout(server)
            if not delayed and not self.readiness.stopping():
                logger.debug("signal %d: no STOPPING=1, this master is not the main one", signum)
            elif not served:
                cancel_boots(server, self._workers, signum)
            else:  # gunicorn lets its workers finish for graceful_timeout: tell the engine
                delay = self.readiness.options.shutdown_delay if delayed else 0
                self.readiness.drain(lambda: _compat.still_running(server), budget + delay)

    def _timeout(self) -> None:
        timeout = self.readiness.options.ready_timeout
        if self.readiness.timed_out(f"no worker could serve within {timeout:g} s"):
            self._now_ready()

    # -- deciding (called with the lock held) -------------------------------------------

    def _total(self) -> int:
        return _compat.num_workers(self.server) if self.server is not None else 1

    def _required(self) -> int:
        assert self.server is not None
        return _required_workers(self.readiness.options, self._total(), _reuse_port(self.server))

    def _reloading(self) -> bool:
        """True while a generation after a READY one boots (a SIGHUP during the very first
        start still boots it)."""
        return self.readiness.phase is Phase.RELOADING and self.readiness.ever_ready

    def _progress_text(self, reloading: bool | None = None, generation: int = 0) -> str:
        booted, total = len(self._workers.current()), self._total()
        if self._reloading() if reloading is None else reloading:
            return texts.GUNICORN_RELOADING.format(
                booted=booted, total=total, generation=generation or self.readiness.generation
            )
        return texts.GUNICORN_BOOTING.format(booted=booted, total=total)

    def _update(self, *, booted: bool = False) -> None:
        if self.readiness.stopping_began or self._over:
            return
        if self.server is not None and _compat.reexec_pid(self.server):
            return  # USR2: the new master speaks for the unit now
        current = self._workers.current()
        readiness = self.readiness
        if not readiness.ready_sent:
            if len(current) >= self._required():
                if readiness.ready(self._serving_text(current)):
                    self._now_ready()
            elif readiness.awaiting_timeout:
                if booted:  # a worker that booted is progress: a milestone
                    self._failed_unbooted = False
                    readiness.progress(self._progress_text())
                elif not self._failed_unbooted:  # else the failure stays visible
                    readiness.status(self._progress_text())
            return
        readiness.status(self._serving_text(current))

    def _serving_text(self, serving: list[Booted]) -> str:
        addresses = texts.format_addresses(a for b in serving for a in b.addresses)
        number = self.readiness.generation
        generation = f", generation {number}" if number > 1 else ""
        booted, total = len(serving), self._total()
        if booted >= total:
            self._all_booted = True
        elif self._all_booted:  # one went away: say so until gunicorn has replaced it
            return texts.GUNICORN_DEGRADED.format(
                booted=booted, total=total, addresses=addresses, pid=os.getpid(),
                generation=generation,
            )  # fmt: skip
        workers = plural(total) if booted >= total else f"{booted}/{total} workers"
        return texts.GUNICORN_READY.format(
            workers=workers, addresses=addresses, pid=os.getpid(), generation=generation
        )

    def _now_ready(self) -> None:
        sent = "sent" if self.readiness.enabled else "reached (no systemd: nothing sent)"
        logger.info("READY %s: %s", sent, self.readiness.last_status)
        if self.readiness.is_main:  # a USR2 child feeds the watchdog once it took over
            self._start_watchdog()
            if self.server is not None and self.notifier is not None:
                with contained("keeping the listening sockets in the fd store"):
                    _keep.keep_listeners(self.server, self.notifier, self.readiness.options)

    # -- watchdog -----------------------------------------------------------------------

    def _start_watchdog(self) -> None:
        self.readiness.watchdog.start(self._healthy)

    def _healthy(self) -> bool:
        """A worker is alive and not stuck, by gunicorn's own rule and its ``timeout``.

        Booted workers must have heartbeated within ``timeout``; a worker still booting
        counts for ``timeout`` after its fork (a reload or a respawn takes that long at
        most before gunicorn's own test applies), so only hung or missing workers stop
        the pings.
        """
        server = self.server
        if server is None:
            return False
        limit = _compat.worker_timeout(server) or (watchdog_interval() or 30.0)
        workers = [
            (_compat.worker_age(w), functools.partial(_compat.last_heartbeat, w))
            for w in _compat.workers(server)
        ]
        with self._lock:
            return self._workers.alive(workers, limit)


def _reuse_port(server: Arbiter) -> bool:
    return _compat.reuse_port(server) and hasattr(socket, "SO_REUSEPORT")


arbiter = _ArbiterSide()
OptionError = _OptionError
