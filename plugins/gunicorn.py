"""gunicorn: ``READY=1`` from the arbiter only once workers really serve.

gunicorn sends ``READY=1`` itself as soon as the arbiter has bound its sockets, before any
worker has imported the app. This module is a gunicorn configuration module that takes
that job over::

    gunicorn -c python:sdready.plugins.gunicorn app:app

or, as the last lines of your own ``gunicorn.conf.py`` (your hooks keep running)::

    from sdready.plugins.gunicorn import install
    install(globals())

Options, as ``sdready_<name>`` variables in the config file or ``SDREADY_<NAME>``
environment variables (the environment wins, as with ``GUNICORN_CMD_ARGS``):
``ready_workers`` (1, or ``"all"``; ``"all"`` under ``reuse_port``), ``ready_timeout``
(30 s), ``on_timeout`` (``"warn"``), ``watchdog`` (true). See README for the table.

How: before gunicorn's own ``READY`` (and before ``--preload`` imports the app) the
arbiter takes ``NOTIFY_SOCKET`` out of the environment, so gunicorn and everything in the
workers stay silent. Each worker reports over a pipe created before the fork once it can
serve (WSGI: after ``post_worker_init``; ASGI: once its lifespan startup completed) and
which of its sockets listen; a thread in the arbiter reads the pipe and sends READY,
STATUS and STOPPING (RELOADING comes from ``on_reload``). Without ``NOTIFY_SOCKET``
nothing happens: no pipe, no thread, nothing logged above DEBUG.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sdready import Notifier, Readiness, ReadyOptions, texts, watchdog_interval
from sdready._contain import chain_signal, contained
from sdready._exceptions import require_framework
from sdready._options import prefixed
from sdready._readiness import TimeoutTexts

if TYPE_CHECKING:
    from gunicorn.arbiter import Arbiter
    from gunicorn.workers.base import Worker

require_framework("gunicorn", "gunicorn", "gunicorn")  # the hooks import it only when called

__all__ = ["install"]

logger = logging.getLogger("sdready")

_TIMEOUTS = TimeoutTexts(
    texts.GUNICORN_TIMEOUT_WARN, texts.GUNICORN_TIMEOUT_FAIL, "worker ready to serve"
)
_OPTIONS = ("ready_workers", "ready_timeout", "on_timeout", "watchdog")
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
_MAX_REASON = 1000  # keeps a worker's report under PIPE_BUF, so the write is atomic
# (module, class) of ASGI worker classes, whose app is ready only after lifespan startup.
_ASGI_WORKERS = {
    ("gunicorn.workers.gasgi", "ASGIWorker"),
    ("uvicorn_worker._workers", "UvicornWorker"),
    ("uvicorn.workers", "UvicornWorker"),
}


class _OptionError(ValueError):
    """An invalid ``sdready_*`` option: gunicorn must not start with it."""


def _read_options(namespace: MutableMapping[str, Any]) -> ReadyOptions:
    """``sdready_*`` config variables, then ``SDREADY_*`` environment variables (which win,
    as with ``GUNICORN_CMD_ARGS``); an invalid one stops gunicorn."""
    try:
        configured = prefixed(namespace, "sdready_")
        # The environment may carry SDREADY_* settings meant for a plugin in the workers.
        environment = prefixed(os.environ, "SDREADY_", strict=False)
        settings = {**configured, **{k: v for k, v in environment.items() if k in _OPTIONS}}
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


def _plural(count: int) -> str:
    return f"{count} worker" if count == 1 else f"{count} workers"


@dataclass
class _Booted:
    pid: int
    addresses: tuple[str, ...]


class _ArbiterSide:
    """The arbiter's view: which workers can serve, and what systemd was told."""

    def __init__(self) -> None:
        self.taken = False
        self.pid = 0
        self.notifier: Notifier | None = None
        self.server: Arbiter | None = None
        #: The engine; its options are re-read on SIGHUP.
        self.readiness = Readiness(ReadyOptions(notifier=Notifier(None)))
        self._lock = threading.Lock()
        self._event_r = self._event_w = self._wake_r = self._wake_w = -1
        self._thread: threading.Thread | None = None
        self._closing = False
        self._stop_signal = 0
        # Per generation (1 at start, +1 per SIGHUP); workers older than gen_age are older.
        self.generation = 1
        self._gen_age = 0
        self._all_booted = False  # this generation had all its workers at some point
        self.phase = "starting"  # starting | ready | reloading | stopping | exited
        self._booted: dict[int, _Booted] = {}  # by worker age, which never repeats
        self._spawned: dict[int, float] = {}  # age: when forked (the watchdog's boot clock)
        self._exited: set[int] = set()
        self._failure = ""

    @property
    def active(self) -> bool:
        """True in the arbiter process when there is a notify socket to report to."""
        return self.notifier is not None and self.pid == os.getpid()

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
        options = _read_options(_namespace)
        if self.active:
            _ensure_hooks(server)
            self.readiness = Readiness(
                replace(options, notifier=self.notifier), timeout_texts=_TIMEOUTS
            )
            if server.master_pid:  # a USR2 child: READY takes over as the unit's main pid
                self.readiness.took_over(server.master_pid)
            self.readiness.starting()

    def when_ready(self, server: Arbiter) -> None:
        if not self.active:
            return
        # The pipe exists before the first fork, so every worker inherits its write end;
        # both ends are non-blocking: a worker never waits for the arbiter.
        self._event_r, self._event_w = os.pipe()
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._event_r, self._event_w, self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        for signum in _STOP_SIGNALS:
            # gunicorn installs its handlers after on_starting: chain ours in front here.
            chain_signal(signum, self._on_stop_signal)
        with self._lock:
            self._update()
        self._thread = threading.Thread(target=self._run, name="sdready-gunicorn", daemon=True)
        self._thread.start()
        self._start_watchdog()

    def reloading(self, server: Arbiter) -> None:
        if not self.active:
            return
        _ensure_hooks(server)
        try:
            self.readiness.options = replace(_read_options(_namespace), notifier=self.notifier)
        except _OptionError:
            logger.exception("keeping the previous sdready options")
        with self._lock:
            self.generation += 1
            self._gen_age = server.worker_age  # workers spawned from now on are the new ones
            self._all_booted = False
            if self.phase == "ready":
                self.phase = "reloading"
            self.readiness.reloading(self._progress_text())
        self._wake()

    def forking(self, worker: Worker) -> None:
        if self.active:
            with self._lock:
                self._spawned[worker.age] = time.monotonic()

    def worker_exited(self, worker: Worker) -> None:
        if not self.active:
            return
        with self._lock:
            self._exited.add(worker.age)
            self._booted.pop(worker.age, None)
            self._spawned.pop(worker.age, None)
            if len(self._exited) > 4096:  # ages only grow: forget the oldest
                self._exited = set(sorted(self._exited)[-1024:])
            self._update()

    def workers_changed(self) -> None:
        if self.active and self._thread is not None:
            with self._lock:
                self._update()

    def before_exec(self, server: Arbiter) -> None:
        """USR2, in the child about to exec the new master: hand it NOTIFY_SOCKET.

        gunicorn execs with ``cfg.env_orig``, a copy of the environment taken when the
        config was loaded; after a SIGHUP that copy no longer has the variable.
        """
        if self.notifier is not None and self.notifier.address:
            server.cfg.env_orig["NOTIFY_SOCKET"] = self.notifier.address

    def in_child(self) -> None:
        """After fork, in the worker: arbiter-only descriptors and duties are not ours."""
        for fd in (self._event_r, self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._event_r = self._wake_r = self._wake_w = -1
        self.notifier = None
        self.readiness = Readiness(ReadyOptions(notifier=Notifier(None)))

    def exiting(self, server: Arbiter) -> None:
        if not self.active:
            return
        if self._stop_signal:  # the thread may not have got to it yet
            self._stopping(self._stop_signal)
        halt = sys.exc_info()[1]  # gunicorn calls on_exit while handling HaltServer
        reason = getattr(halt, "reason", None)
        with self._lock:
            if reason and self.phase not in ("stopping", "exited"):
                message = f"{reason.rstrip('.')} ({self._failure})" if self._failure else reason
                ever = self.readiness.ever_ready
                text = texts.GUNICORN_FAILED if ever else texts.STARTUP_FAILED
                self.readiness.status(text.format(message=message))
            self.phase = "exited"
        self._closing = True
        self._wake()
        self.readiness.stop_watchdog()
        if self._thread is not None:
            self._thread.join(2.0)
        assert self.notifier is not None
        self.notifier.flush(2.0)

    # -- signal handler (main thread, any moment): only set a flag and wake the thread --

    def _on_stop_signal(self, signum: int) -> None:
        self._stop_signal = signum
        self._wake()

    def _wake(self) -> None:
        if self._wake_w >= 0:
            with contextlib.suppress(BlockingIOError):  # already full of wake-ups
                os.write(self._wake_w, b"!")

    # -- the sdready-gunicorn thread ----------------------------------------------------

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._event_r, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        pending = b""
        while not self._closing:
            wait = None
            if self.readiness.awaiting_timeout:
                wait = int(self.readiness.time_left() * 1000) + 1
            try:
                for fd, _ in poller.poll(wait):
                    if fd == self._event_r:
                        pending = self._read_events(pending)
                    else:
                        _drain(self._wake_r)
                if self._stop_signal:
                    self._stopping(self._stop_signal)
                with self._lock:
                    if self.readiness.awaiting_timeout and not self.readiness.time_left():
                        self._timeout()
            except Exception:  # keep serving later reports: one bad one must not end it all
                logger.exception("sdready's gunicorn thread")
                time.sleep(0.1)

    def _read_events(self, pending: bytes) -> bytes:
        while True:
            try:
                chunk = os.read(self._event_r, 65536)
            except BlockingIOError:
                return pending
            if not chunk:
                return pending
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                try:
                    event = json.loads(line)
                except ValueError:
                    logger.debug("ignoring a garbled worker report: %r", line)
                    continue
                with self._lock:
                    self._on_event(event)

    def _on_event(self, event: dict[str, Any]) -> None:
        age = int(event["age"])
        if age in self._exited:
            return  # reaped before its report was read
        if event["event"] == "booted":
            if not event["complete"]:
                logger.warning("worker %s booted but not all its sockets listen", event["pid"])
            self._booted[age] = _Booted(int(event["pid"]), tuple(event["addresses"]))
            logger.debug(
                "worker %s (age %d) can serve on %s", event["pid"], age, event["addresses"]
            )
        else:
            self._failure = f"worker {event['pid']}: {event['reason']}"
            logger.debug("worker %s failed to boot: %s", event["pid"], event["reason"])
            if not self.readiness.ready_sent:
                self.readiness.status(texts.STARTUP_FAILED.format(message=self._failure))
                return
        self._update()

    def _stopping(self, signum: int) -> None:
        self._stop_signal = 0
        server = self.server
        assert server is not None
        with self._lock:
            if self.phase in ("stopping", "exited"):
                return
            self.phase = "stopping"
            if server.reexec_pid:  # USR2: the new master speaks for the unit from now on
                self.readiness.handed_over()
            if not self.readiness.stopping():
                logger.debug("signal %d: no STOPPING=1, this master is not the main one", signum)

    def _timeout(self) -> None:
        if self.phase not in ("starting", "reloading"):
            return
        timeout = self.readiness.options.ready_timeout
        if self.readiness.timed_out(f"no worker could serve within {timeout:g} s"):
            self._now_ready()

    # -- deciding (called with the lock held) -------------------------------------------

    def _current(self) -> list[_Booted]:
        return [b for age, b in self._booted.items() if age > self._gen_age and b.addresses]

    def _total(self) -> int:
        return int(self.server.num_workers) if self.server is not None else 1

    def _required(self) -> int:
        assert self.server is not None
        return _required_workers(self.readiness.options, self._total(), _reuse_port(self.server))

    def _progress_text(self) -> str:
        booted, total = len(self._current()), self._total()
        if self.phase == "reloading":
            return texts.GUNICORN_RELOADING.format(
                booted=booted, total=total, generation=self.generation
            )
        return texts.GUNICORN_BOOTING.format(booted=booted, total=total)

    def _update(self) -> None:
        if self.phase in ("stopping", "exited"):
            return
        if self.server is not None and self.server.reexec_pid:
            return  # USR2: the new master speaks for the unit now
        current = self._current()
        readiness = self.readiness
        if not readiness.ready_sent:
            if len(current) >= self._required():
                if readiness.ready(self._serving_text(current)):
                    self._now_ready()
            elif readiness.awaiting_timeout:
                readiness.status(self._progress_text())
            return
        readiness.status(self._serving_text(current))

    def _serving_text(self, serving: list[_Booted]) -> str:
        addresses = texts.format_addresses(a for b in serving for a in b.addresses)
        generation = f", generation {self.generation}" if self.generation > 1 else ""
        booted, total = len(serving), self._total()
        if booted >= total:
            self._all_booted = True
        elif self._all_booted:  # one went away: say so until gunicorn has replaced it
            return texts.GUNICORN_DEGRADED.format(
                booted=booted, total=total, addresses=addresses, pid=os.getpid(),
                generation=generation,
            )  # fmt: skip
        workers = _plural(total) if booted >= total else f"{booted}/{total} workers"
        return texts.GUNICORN_READY.format(
            workers=workers, addresses=addresses, pid=os.getpid(), generation=generation
        )

    def _now_ready(self) -> None:
        logger.info("READY sent: %s", self.readiness.last_status)
        self.phase = "ready"
        if self.readiness.is_main:  # a USR2 child feeds the watchdog once it took over
            self._start_watchdog()

    # -- watchdog -----------------------------------------------------------------------

    def _start_watchdog(self) -> None:
        self.readiness.start_watchdog(self._healthy)

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
        limit = server.timeout or (watchdog_interval() or 30.0)
        now = time.monotonic()
        with self._lock:
            booted = set(self._booted)
            spawned = dict(self._spawned)
        for worker in list(server.WORKERS.values()):
            if worker.age not in booted:
                if now - spawned.get(worker.age, -math.inf) <= limit:
                    return True
                continue
            try:
                if now - worker.tmp.last_update() <= limit:
                    return True
            except (OSError, ValueError):  # reaped meanwhile: its tmp file is closed
                continue
        return False


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _reuse_port(server: Arbiter) -> bool:
    return bool(server.cfg.reuse_port) and hasattr(socket, "SO_REUSEPORT")


class _WorkerSide:
    """One worker's report to the arbiter: booted (serving) or failed, once."""

    def __init__(self) -> None:
        self.fd = -1
        self.reported = False

    def report_booted(self, worker: Worker) -> None:
        if self.fd < 0 or self.reported:
            return
        from sdready import listening_sockets

        # By inode, not fd: the core reports a dup'ed socket once, under its lowest fd.
        own = {os.fstat(s.fileno()).st_ino for s in worker.sockets}
        listening = [item for item in listening_sockets() if item.inode in own]
        addresses = [item.address for item in listening][:32]
        complete = len(listening) == len(own)
        self._report(worker, event="booted", addresses=addresses, complete=complete)

    def report_failed(self, worker: Worker, reason: str) -> None:
        if self.fd >= 0 and not self.reported:
            self._report(worker, event="failed", reason=" ".join(reason.split())[:_MAX_REASON])

    def _report(self, worker: Worker, **fields: Any) -> None:
        self.reported = True
        line = json.dumps({"age": worker.age, "pid": os.getpid(), **fields}) + "\n"
        try:
            os.write(self.fd, line.encode())
        except OSError as exc:  # EAGAIN: the arbiter's thread is gone or far behind
            logger.debug("could not report to the arbiter: %s", exc)


_arbiter = _ArbiterSide()
_worker = _WorkerSide()
_namespace: MutableMapping[str, Any] = {}


# -- ASGI workers: booted means lifespan startup completed ---------------------------------


class _LifespanObserver:
    """Wrap a worker's ASGI app; report once lifespan startup completed or failed.

    http and websocket scopes pass straight through; the app's messages and exceptions
    are untouched, so the server behaves exactly as without it.
    """

    def __init__(self, app: Any, worker: Worker, required: bool) -> None:
        self.app = app
        self._worker = worker
        self._required = required  # lifespan="on": an app without lifespan cannot boot

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        await self._lifespan(scope, receive, send)

    async def _lifespan(self, scope: Any, receive: Any, send: Any) -> None:
        async def observed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "lifespan.startup.complete":
                _worker.report_booted(self._worker)
            elif message["type"] == "lifespan.startup.failed":
                reason = message.get("message") or "lifespan startup failed"
                _worker.report_failed(self._worker, reason)

        try:
            await self.app(scope, receive, observed_send)
        except Exception as exc:
            self._ended(f"{type(exc).__name__}: {exc}")
            raise
        self._ended("the app returned before lifespan startup completed")

    def _ended(self, reason: str) -> None:
        # Lifespan unsupported: with lifespan="auto" the server serves anyway.
        if self._required:
            _worker.report_failed(self._worker, reason)
        else:
            _worker.report_booted(self._worker)


def _asgi_lifespan(worker: Worker) -> tuple[str, str] | None:
    """``(app attribute, lifespan mode)`` for an ASGI worker class, None for WSGI."""
    for cls in type(worker).__mro__:
        if (cls.__module__, cls.__name__) in _ASGI_WORKERS:
            if cls.__name__ == "ASGIWorker":
                return "asgi", str(getattr(worker.cfg, "asgi_lifespan", "auto"))
            return "wsgi", str(getattr(worker.config, "lifespan", "auto"))
    return None


def _worker_initialized(worker: Worker) -> None:
    if _worker.fd < 0:
        return
    asgi = _asgi_lifespan(worker)
    if asgi is None or asgi[1] == "off":
        _worker.report_booted(worker)  # WSGI: the run loop starts right after this hook
        return
    attribute, mode = asgi
    setattr(worker, attribute, _LifespanObserver(getattr(worker, attribute), worker, mode == "on"))


def _forked(server: Arbiter, worker: Worker) -> None:
    if _arbiter.notifier is not None and _arbiter._event_w >= 0:
        _worker.fd = _arbiter._event_w
        _arbiter.in_child()


def _worker_exiting(server: Arbiter, worker: Worker) -> None:
    if os.getpid() != worker.pid:  # the arbiter calls it too, for a worker already gone
        _arbiter.worker_exited(worker)
        return
    if _worker.fd >= 0 and not _worker.reported:
        exc = sys.exc_info()[1]
        cause = exc.__context__ if isinstance(exc, SystemExit) and exc.__context__ else exc
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else "exited while booting"
        _worker.report_failed(worker, reason)


def _worker_aborted(worker: Worker) -> None:
    _worker.report_failed(worker, "aborted (SIGABRT, usually gunicorn's worker timeout)")


# -- hook chaining ---------------------------------------------------------------------------

# name: (arity, our part, run ours after theirs)
_HOOKS: dict[str, tuple[int, Callable[..., None], bool]] = {
    "on_starting": (1, _arbiter.starting, False),
    "nworkers_changed": (3, lambda server, new, old: _workers_changed(server), False),
    "when_ready": (1, _arbiter.when_ready, False),
    "on_reload": (1, _arbiter.reloading, False),
    "pre_fork": (2, lambda server, worker: _arbiter.forking(worker), False),
    "post_fork": (2, _forked, False),
    "post_worker_init": (1, _worker_initialized, True),
    "worker_abort": (1, _worker_aborted, False),
    "worker_exit": (2, _worker_exiting, False),
    "child_exit": (2, lambda server, worker: _arbiter.worker_exited(worker), False),
    "pre_exec": (1, _arbiter.before_exec, False),
    "on_exit": (1, _arbiter.exiting, False),
}


def _workers_changed(server: Arbiter) -> None:
    # gunicorn sets num_workers in Arbiter.setup(), before a --preload app is imported:
    # the earliest moment to hide NOTIFY_SOCKET from the app.
    _arbiter.take_notify_socket(server)
    _arbiter.workers_changed()


def _chain(name: str, theirs: Callable[..., None] | None) -> Callable[..., None]:
    arity, ours, ours_last = _HOOKS[name]

    def call(args: tuple[Any, ...]) -> None:
        if not ours_last:
            _contained(name, ours, args)
        if theirs is not None:
            theirs(*args)  # the user's errors propagate, as without sdready
        if ours_last:
            _contained(name, ours, args)

    # gunicorn checks the exact positional arity of every hook: no *args wrapper.
    hook: Callable[..., None]
    if arity == 1:

        def hook(a: Any) -> None:
            call((a,))
    elif arity == 2:

        def hook(a: Any, b: Any) -> None:
            call((a, b))
    else:

        def hook(a: Any, b: Any, c: Any) -> None:
            call((a, b, c))

    hook.__name__ = hook.__qualname__ = name
    hook.__dict__["__sdready__"] = True  # install() and _ensure_hooks() skip it
    return hook


def _contained(name: str, ours: Callable[..., None], args: tuple[Any, ...]) -> None:
    # Invalid sdready_* options fail loudly, like any bad gunicorn setting; anything else
    # of ours must never stop gunicorn.
    with contained(f"the {name} hook", allow=(_OptionError,)):
        ours(*args)


def _ensure_hooks(server: Arbiter) -> None:
    """Wrap hooks that escaped install(), e.g. defined below it: else READY never comes."""
    for name in _HOOKS:
        current = server.cfg.settings[name].get()
        if not getattr(current, "__sdready__", False):
            logger.warning(
                "%s was set after install(globals()); sdready wrapped it now. "
                "Call install() at the end of the config file.",
                name,
            )
            server.cfg.set(name, _chain(name, current))


def install(namespace: MutableMapping[str, Any]) -> None:
    """Add sdready's hooks to a gunicorn config module's namespace (``globals()``).

    Hooks already defined there keep running, with their arguments and errors intact;
    calling it twice changes nothing. Call it last, after your own hook definitions.
    Options are the ``sdready_*`` variables of the same namespace, read when gunicorn
    starts (and again on ``SIGHUP``); see the module docstring.

    Example (``gunicorn.conf.py``)::

        workers = 4
        sdready_ready_workers = "all"

        def post_worker_init(worker):
            connect_database()

        from sdready.plugins.gunicorn import install
        install(globals())
    """
    global _namespace  # noqa: PLW0603  (gunicorn reads the config module's namespace; the hooks need it)
    from gunicorn.config import validate_callable

    for name, (arity, _ours, _last) in _HOOKS.items():
        theirs = namespace.get(name)
        if getattr(theirs, "__sdready__", False):
            continue
        if theirs is not None:
            theirs = validate_callable(arity)(theirs)  # gunicorn's own check and message
        namespace[name] = _chain(name, theirs)
    _namespace = namespace


install(globals())
