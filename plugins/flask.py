"""Flask: send ``READY=1`` once the WSGI server in this process accepts connections.

Flask has no "server started" event: the extension is created with the app, and the
server (``app.run()``/``flask run``, waitress ``serve()``, cheroot, gunicorn's workers)
binds later, sometimes seconds later. So ``init_app`` snapshots the listening sockets and
starts one daemon thread per process that sends READY once the server's socket listens::

    app = Flask(__name__)
    SystemdNotify(app)                   # or: ext.init_app(app) in an app factory
    waitress.serve(app, port=8000)       # READY=1 once waitress listens

Outside systemd (no ``NOTIFY_SOCKET``) the extension is inert: no thread, no handlers.
Sockets that already listened when ``init_app`` ran (socket activation, an fd passed by a
parent, werkzeug's reloader, gunicorn's arbiter) accept connections into their backlog
before the app serves, so there READY waits for an HTTP probe (any status below 500).
See ``SystemdNotify.init_app`` for the config keys and README for the server matrix.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import weakref
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from sdready.integration import missing_framework

try:
    import click
    from flask import Flask, current_app
    from flask.cli import with_appcontext
except ImportError as exc:  # pragma: no cover
    raise missing_framework("flask", "Flask") from exc

from sdready import texts
from sdready.integration import (
    AUTO_PROBE,
    INHERITED_PROBE,
    OPTIONS,
    Listener,
    Probes,
    Readiness,
    ReadyOptions,
    ShutdownDelay,
    WSGIProbeApp,
    chain_signal,
    contained,
    listen_fds_count,
    listening_sockets,
    main_pid,
    notify_socket,
    prefixed,
    watchdog_interval,
)
from sdready.plugins import _compat_flask as _compat

if TYPE_CHECKING:
    from sdready.integration import ReadyKeywords
    from typing_extensions import Unpack

__all__ = ["SystemdNotify"]

logger = logging.getLogger("sdready")

_PREFIX = "SDREADY_"
#: Flask config keys and their defaults (ReadyOptions' own, but an "auto" probe: Flask's
#: extension exists long before the server, so a socket already listening then is probed).
_GUNICORN_ONLY = ("ready_workers", "keep_sockets")
_CONFIG_DEFAULTS: dict[str, object] = {
    _PREFIX + f.name.upper(): AUTO_PROBE if f.name == "probe" else f.default
    for f in fields(ReadyOptions)
    if f.name not in _GUNICORN_ONLY
}
_OPTION_NAMES = tuple(name for name in OPTIONS if name not in _GUNICORN_ONLY)
# Options that decide the one READY of the process (health/watchdog are combined per app).
_READINESS_FIELDS = ("ready_timeout", "on_timeout", "expect", "probe", "notifier", "shutdown_delay")
# A STOPPING that met a full queue is retried from a thread: give it this long before the
# process dies of the signal (normally it was sent at once and this costs nothing).
_STOPPING_FLUSH = 0.25


class SystemdNotify:
    """Flask extension: ``READY=1`` once this process's WSGI server listens.

    ``SystemdNotify(app)``, or ``ext = SystemdNotify()`` then ``ext.init_app(app)`` in an
    app factory. Options (``ready_timeout``, ``on_timeout``, ``expect``, ``probe``,
    ``watchdog``, ``health``, ``notifier``) may also come from ``SDREADY_*`` config keys;
    arguments win. An unknown option raises :class:`TypeError` at once, a bad value
    :class:`ValueError` in ``init_app``. Failures at run time are logged, never raised
    into the app.
    """

    def __init__(self, app: Flask | None = None, **options: Unpack[ReadyKeywords]) -> None:
        unknown = sorted(set(options) - set(_OPTION_NAMES))
        if unknown:
            raise TypeError(
                f"unknown SystemdNotify option(s): {', '.join(unknown)}; "
                f"known: {', '.join(_OPTION_NAMES)}"
            )
        self._options: dict[str, Any] = dict(options)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register on *app*; under systemd, start the process-wide READY waiter.

        Config keys (defaults set with ``app.config.setdefault``):
        ``SDREADY_READY_TIMEOUT`` (30.0 s to wait for the listening socket),
        ``SDREADY_ON_TIMEOUT`` (``"warn"``, ``"fail"`` or ``"ready"``),
        ``SDREADY_EXPECT`` (None: the server's socket; or a port, ``"host:port"``, a unix
        path, a predicate, or a list), ``SDREADY_PROBE`` (``"auto"``: an HTTP probe only
        for sockets that listened before ``init_app``; None, ``"connect"``,
        ``"http:/path"``), ``SDREADY_WATCHDOG`` (True), ``SDREADY_HEALTH`` (None, or a
        callable run in an app context that gates each watchdog ping),
        ``SDREADY_NOTIFIER`` (None: from ``NOTIFY_SOCKET``), ``SDREADY_READY_PATH`` and
        ``SDREADY_LIVE_PATH`` (None: the endpoints, answered by a WSGI wrapper; set, the
        extension runs without ``NOTIFY_SOCKET`` too), ``SDREADY_SHUTDOWN_DELAY`` (0: seconds
        the server keeps serving after SIGTERM, with ``ready_path`` answering 503).

        Raises :class:`RuntimeError` if already registered on *app*, :class:`ValueError`
        for an invalid option value.
        """
        if "sdready" in app.extensions:
            raise RuntimeError(
                f"SystemdNotify is already registered on app {app.name!r}: call init_app "
                "once per app (one extension object may serve several apps)."
            )
        for key, default in _CONFIG_DEFAULTS.items():
            app.config.setdefault(key, default)
        settings = prefixed(app.config, _PREFIX)
        options = ReadyOptions.from_settings({**settings, **self._options})
        state = _AppState(options)
        app.extensions["sdready"] = state
        if "sdready" not in app.cli.commands:
            app.cli.add_command(_cli)
        _register(app, state)


@dataclass
class _AppState:
    """What the extension keeps per app, in ``app.extensions["sdready"]``."""

    options: ReadyOptions
    active: bool = False  # attached to the process-wide waiter
    inert_reason: str = ""


# --- the process-wide waiter -----------------------------------------------------------

_lock = threading.Lock()
_process: _Process | None = None
_gunicorn_hint_logged = False


def _register(app: Flask, state: _AppState) -> None:
    try:
        _attach(app, state)
    except Exception:  # our failure must never stop the app from starting
        state.inert_reason = "sdready failed to start (see the logged traceback)"
        logger.exception("sdready: could not set up readiness for app %r", app.name)


def _attach(app: Flask, state: _AppState) -> None:
    process = _attach_process(app, state)
    probes = Probes(state.options, health=_in_app_context(app, state.options.health))
    if not probes:
        return
    if process is None:
        logger.warning(
            "ready_path/live_path are not served in this process (%s)", state.inert_reason
        )
        return
    engine = process.readiness
    app.wsgi_app = WSGIProbeApp(app.wsgi_app, probes, lambda: engine)  # type: ignore[method-assign]


def _in_app_context(app: Flask, health: Any) -> Any:
    """*health* run inside *app*'s context (checks use ``current_app``), or None."""
    if health is None:
        return None
    ref = weakref.ref(app)

    def check() -> object:
        current = ref()
        if current is None:
            return False
        with current.app_context():
            return health()

    return check


def _attach_process(app: Flask, state: _AppState) -> _Process | None:
    global _process  # noqa: PLW0603  (one waiter per process, shared by every app in it)
    with _lock:
        process = _process if _process is not None and _process.pid == os.getpid() else None
        if process is None:
            reason = _inert_reason(state.options)
            if reason is not None:
                state.inert_reason = reason
                logger.debug("sdready inert for app %r: %s", app.name, reason)
                if reason == _NO_SOCKET:
                    Readiness(state.options).check_unit()  # Type=simple: the check says why
                return None
            process = _process = _Process(state)
            process.start()
        process.attach(app, state)
        return process


def _listeners_now() -> list[Listener]:
    try:
        return listening_sockets()
    except (NotImplementedError, OSError) as exc:  # no /proc: the waiter's timeout policy decides
        logger.debug("cannot list listening sockets: %s", exc)
        return []


_NO_SOCKET = "no NOTIFY_SOCKET (not started by systemd)"


def _inert_reason(options: ReadyOptions) -> str | None:
    notifier = options.notifier
    has_socket = notifier.enabled if notifier is not None else notify_socket()
    if not has_socket and not options.serves_probes:
        return _NO_SOCKET  # with ready_path the phase must move anyway (Kubernetes)
    command = _flask_cli_command()
    if command is not None:
        return f"'{command}' does not serve (only 'flask run' does)"
    if _compat.reloader_child():
        return "werkzeug's reloader child: the watcher, the unit's main process, speaks for it"
    if _compat.under_gunicorn():
        global _gunicorn_hint_logged  # noqa: PLW0603  (a hint logged once per process)
        if not _gunicorn_hint_logged:
            _gunicorn_hint_logged = True
            logger.info(
                "running under gunicorn without sdready's gunicorn plugin: gunicorn sends "
                "READY once its arbiter has bound, before any worker loaded the app; use "
                "'gunicorn -c python:sdready.plugins.gunicorn' for correct readiness"
            )
        if not _listeners_now():
            # The arbiter importing a preload_app before it binds: the workers serve later,
            # from sockets bound here; READY from this process would come far too early.
            return "gunicorn's arbiter (preload_app): its workers serve, not this process"
    return None


def _flask_cli_command() -> str | None:
    """The Flask CLI command loading the app, unless it is ``flask run`` (or no Flask CLI)."""
    ctx = _compat.cli_context()
    if ctx is None or not _compat.is_flask_cli(ctx):
        return None  # python app.py, waitress-serve, gunicorn, a custom click CLI
    if _compat.is_run_command(ctx):
        return None
    return ctx.command_path


def _flask_run_reloads() -> bool:
    """True in the watcher of ``flask run --debug``/``--reload``: its child will serve."""
    ctx = _compat.cli_context()
    if ctx is None or not _compat.is_run_command(ctx) or _compat.reloader_child():
        return False
    return _compat.run_command_reloads(ctx)


def _werkzeug_socket(listeners: list[Listener]) -> str | None:
    """Why *listeners* accept before this process serves, or None.

    werkzeug binds in ``run_simple()`` and names the socket in the environment, with or
    without its reloader; with it, this process only watches files and a child serves.
    Either way an HTTP answer proves that someone serves, so READY waits for one.
    """
    if _compat.reloader_child():
        return None
    if _flask_run_reloads():
        return "flask run with the reloader: its child serves"
    fd = _compat.werkzeug_server_fd()
    if not fd.isdigit():
        return None
    try:
        inode = os.fstat(int(fd)).st_ino
    except OSError:
        return None
    if any(item.inode == inode for item in listeners):
        return "werkzeug's socket: with its reloader a child serves it"
    return None


class _Process:
    """One per process: drives the engine's READY wait, the watchdog, STOPPING at exit and
    on signals, for every app registered in it."""

    def __init__(self, first: _AppState) -> None:
        self.pid = os.getpid()
        self.apps: list[tuple[weakref.ref[Flask], _AppState]] = []
        self.gunicorn = _compat.under_gunicorn()
        self._once = threading.Lock()  # STOPPING once; never re-entered from a signal
        #: The uncaught exception that is ending this process, if any (see _at_exit).
        self.uncaught: BaseException | None = None
        self.readiness = Readiness(first.options, accepts_early=_werkzeug_socket)
        self.delay: ShutdownDelay | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        # Flask has no startup phase of its own: the app exists, and whatever listens from
        # now on was opened by the server.
        readiness = self.readiness
        readiness.starting()
        readiness.waiting()
        if readiness.waiter.baseline is not None and readiness.waiter.baseline.listeners:
            readiness.waiter.inherited(
                list(readiness.waiter.baseline.listeners),
                why="socket activation, a parent's fd or gunicorn's arbiter",
            )
        if _flask_run_reloads():
            # Known now: the socket will accept before the child serves.
            self.readiness.waiter.inherited([], why="flask run with the reloader: its child serves")
        threading.Thread(target=self._wait, name="sdready-flask-ready", daemon=True).start()
        atexit.register(self._at_exit)
        self._watch_uncaught()
        if self.gunicorn:  # gunicorn owns its signals; a worker's exit is no stop
            if "sdready.plugins.gunicorn" not in sys.modules:  # its arbiter holds SIGTERM
                self._no_delay(
                    "gunicorn's arbiter stops the workers; sdready's gunicorn plugin "
                    "(gunicorn -c python:sdready.plugins.gunicorn) holds its SIGTERM"
                )
            return
        if threading.current_thread() is not threading.main_thread():
            logger.debug("init_app outside the main thread: no STOPPING on signals")
            self._no_delay("init_app ran outside the main thread, where signals are handled")
            return
        server_handler = signal.getsignal(signal.SIGTERM)
        for signum in (signal.SIGTERM, signal.SIGINT):
            chain_signal(signum, self._on_signal, only_default=True)
        self._hold_sigterm(server_handler)

    def _hold_sigterm(self, server_handler: object) -> None:
        # waitress and werkzeug install no SIGTERM handler: dying of it is their stop, so
        # the held signal, passed on after the delay, stops them as it would have at once.
        seconds = self.readiness.options.shutdown_delay
        if seconds <= 0:
            return
        if _flask_run_reloads():
            self._no_delay(
                "werkzeug's reloader (flask run --debug/--reload) replaces SIGTERM's handler"
            )
            return
        self.delay = ShutdownDelay(self.readiness, seconds)
        self.delay.install(server_handler, default_stops=True)

    def _no_delay(self, why: str) -> None:
        seconds = self.readiness.options.shutdown_delay
        if seconds > 0:
            logger.warning(
                "shutdown_delay=%g is not applied by the Flask extension here: %s", seconds, why
            )

    def attach(self, app: Flask, state: _AppState) -> None:
        first = self.apps[0][1].options if self.apps else None
        if first is not None:
            differs = [
                f for f in _READINESS_FIELDS if getattr(state.options, f) != getattr(first, f)
            ]
            if differs:
                logger.warning(
                    "SystemdNotify on app %r: %s differ from the first app's; a process sends "
                    "one READY, so the first app's options apply",
                    app.name,
                    ", ".join(differs),
                )
        state.active = True
        self.apps.append((weakref.ref(app), state))

    def _wait(self) -> None:
        readiness = self.readiness
        with contained("waiting for the server's listening socket"):
            if readiness.waiter.announce_blocking() and any(
                s.options.watchdog for _, s in self.apps
            ):
                readiness.watchdog.start(self._healthy)

    def _healthy(self) -> bool:
        for ref, state in list(self.apps):
            app = ref()
            health = state.options.health
            if app is None or health is None or not state.options.watchdog:
                continue
            with app.app_context():  # health checks use current_app, extensions, the db
                if not health():
                    logger.debug("health check of app %r failed", app.name)
                    return False
        return True

    # -- stopping -------------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        self._stopping(f"{signal.Signals(signum).name} received")

    def _watch_uncaught(self) -> None:
        # The exception that ends the process before it served (waitress' bind failing
        # with EADDRINUSE) is what STATUS and ERRNO= should say at exit; Python's own
        # hook still prints it, as without sdready.
        previous = sys.excepthook

        def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
            if os.getpid() == self.pid:
                self.uncaught = value
            previous(kind, value, tb)

        sys.excepthook = hook

    def _at_exit(self) -> None:
        if os.getpid() != self.pid:
            return
        readiness = self.readiness
        readiness.abandon("the interpreter is exiting")
        readiness.watchdog.stop()
        if self.gunicorn:
            return  # a worker's exit is not the service stopping
        if readiness.ever_ready:
            self._stopping("the interpreter is exiting")
        elif self._once.acquire(blocking=False) and readiness.is_main:
            with contained("reporting the failed startup"):
                readiness.startup_failed(self.uncaught or "the process exited before it served")

    def _stopping(self, reason: str) -> None:
        if not self._once.acquire(blocking=False):
            return
        # Runs inside a signal handler: an exception would surface anywhere in the app.
        with contained("sending STOPPING"):
            if self.readiness.stopping():
                self.readiness.notifier.flush(_STOPPING_FLUSH)
                logger.debug("STOPPING sent: %s", reason)


# --- flask sdready status ------------------------------------------------------------


@click.group("sdready")
def _cli() -> None:
    """systemd readiness (sdready)."""


@_cli.command("status")
@with_appcontext
def _status_command() -> None:
    """Show what sdready sees: notify socket, watchdog, listeners, NotifyAccess hints."""
    for label, value in _status_lines(current_app):
        click.echo(f"{label + ':':<18} {value}")


def _status_lines(app: Flask) -> list[tuple[str, str]]:
    state: _AppState | None = app.extensions.get("sdready")
    address = notify_socket()
    interval = watchdog_interval()
    listeners = _listeners_now()
    pid = os.getpid()
    exec_pid = main_pid()
    lines = [
        ("notify socket", address or "not set: sdready stays inert (not under systemd)"),
        (
            "watchdog",
            f"WatchdogSec={interval:g}s, pinging every {interval / 2:g} s"
            if interval is not None
            else "off (no WATCHDOG_USEC for this pid)",
        ),
        (f"listeners (pid {pid})", texts.format_addresses(listeners) if listeners else "none"),
        ("passed sockets", f"LISTEN_FDS={listen_fds_count()}"),
    ]
    if exec_pid is not None and exec_pid != pid:
        access = f"pid {pid} is not the main process ({exec_pid}): needs NotifyAccess=all"
    else:
        access = (
            "with werkzeug's reloader (flask run --debug) or gunicorn without sdready's plugin "
            "the serving process is not the main one: set NotifyAccess=all"
        )
    lines.append(("NotifyAccess", access))
    if state is None:
        lines.append(("extension", "SystemdNotify is not registered on this app"))
        return lines
    options = state.options
    for name in (f.name for f in fields(options)):
        value = getattr(options, name)
        if name == "probe" and value == AUTO_PROBE:
            value = f"auto (an HTTP probe only for inherited sockets: {INHERITED_PROBE})"
        lines.append((f"  {name}", repr(value) if not isinstance(value, str) else value))
    lines.append(("this process", "waiting/serving" if state.active else state.inert_reason))
    return lines
