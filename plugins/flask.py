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
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from types import FrameType
from typing import Any

try:
    import click
    from flask import Flask, current_app
    from flask.cli import FlaskGroup, run_command, with_appcontext
    from flask.helpers import get_debug_flag
except ImportError as exc:  # pragma: no cover
    raise ImportError("sdready.plugins.flask needs Flask: pip install 'sdready[flask]'") from exc

from sdready import (
    Listener,
    Readiness,
    ReadyOptions,
    Watchdog,
    listen_fds_count,
    listening_sockets,
    texts,
    watchdog_interval,
)
from sdready._env import is_main_process

__all__ = ["SystemdNotify"]

logger = logging.getLogger("sdready")

_PREFIX = "SDREADY_"
#: Flask config keys and their defaults; constructor arguments win over them.
_CONFIG_DEFAULTS: dict[str, object] = {
    "SDREADY_READY_TIMEOUT": 30.0,
    "SDREADY_ON_TIMEOUT": "warn",
    "SDREADY_EXPECT": None,
    "SDREADY_PROBE": "auto",
    "SDREADY_WATCHDOG": True,
    "SDREADY_HEALTH": None,
    "SDREADY_NOTIFIER": None,
}
_OPTION_NAMES = tuple(key[len(_PREFIX) :].lower() for key in _CONFIG_DEFAULTS)
# Options that decide the one READY of the process (health/watchdog are combined per app).
_READINESS_FIELDS = ("ready_timeout", "on_timeout", "expect", "probe", "notifier")
_INHERITED_PROBE = "http:/"
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

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        unknown = sorted(set(options) - set(_OPTION_NAMES))
        if unknown:
            raise TypeError(
                f"unknown SystemdNotify option(s): {', '.join(unknown)}; "
                f"known: {', '.join(_OPTION_NAMES)}"
            )
        self._options = options
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
        ``SDREADY_NOTIFIER`` (None: from ``NOTIFY_SOCKET``).

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
        settings = {name: app.config[_PREFIX + name.upper()] for name in _OPTION_NAMES}
        settings.update(self._options)
        probe = settings.pop("probe")
        auto_probe = isinstance(probe, str) and probe.lower() == "auto"
        options = ReadyOptions.from_settings({**settings, "probe": None if auto_probe else probe})
        state = _AppState(options, auto_probe)
        app.extensions["sdready"] = state
        if "sdready" not in app.cli.commands:
            app.cli.add_command(_cli)
        _register(app, state)


@dataclass
class _AppState:
    """What the extension keeps per app, in ``app.extensions["sdready"]``."""

    options: ReadyOptions
    auto_probe: bool
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
    global _process
    with _lock:
        process = _process if _process is not None and _process.pid == os.getpid() else None
        if process is None:
            reason = _inert_reason(state.options)
            if reason is not None:
                state.inert_reason = reason
                logger.debug("sdready inert for app %r: %s", app.name, reason)
                return
            process = _process = _Process(state)
            process.start()
        process.attach(app, state)


def _listeners_now() -> list[Listener]:
    try:
        return listening_sockets()
    except (NotImplementedError, OSError) as exc:  # no /proc: the waiter's timeout policy decides
        logger.debug("cannot list listening sockets: %s", exc)
        return []


def _inert_reason(options: ReadyOptions) -> str | None:
    notifier = options.notifier
    if not (notifier.enabled if notifier is not None else os.environ.get("NOTIFY_SOCKET")):
        return "no NOTIFY_SOCKET (not started by systemd)"
    command = _flask_cli_command()
    if command is not None:
        return f"'{command}' does not serve (only 'flask run' does)"
    if _under_gunicorn():
        global _gunicorn_hint_logged
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
    ctx = click.get_current_context(silent=True)
    if ctx is None or not isinstance(ctx.find_root().command, FlaskGroup):
        return None  # python app.py, waitress-serve, gunicorn, a custom click CLI
    if ctx.command is run_command:
        return None
    return ctx.command_path


def _flask_run_reloads() -> bool:
    """True in the watcher of ``flask run --debug``/``--reload``: it will only watch files."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.command is not run_command or _reloader_child():
        return False
    reload = ctx.params.get("reload")
    return bool(get_debug_flag() if reload is None else reload)  # as run_command decides


def _under_gunicorn() -> bool:
    # The arbiter exports SERVER_SOFTWARE=gunicorn/<version>; workers inherit it.
    software = os.environ.get("SERVER_SOFTWARE", "")
    return software.startswith("gunicorn/") and "gunicorn.arbiter" in sys.modules


def _reloader_child() -> bool:
    return os.environ.get("WERKZEUG_RUN_MAIN") == "true"


def _werkzeug_reloader_parent() -> bool:
    """True in werkzeug's reloader watcher: it listens, but only its child serves.

    Asked once a listener appeared: werkzeug binds inside ``run_simple()``, so a thread is
    in that call by then, and its ``use_reloader`` argument says whether a child serves.
    """
    serving = sys.modules.get("werkzeug.serving")
    if serving is None or _reloader_child():
        return False
    code = getattr(getattr(serving, "run_simple", None), "__code__", None)
    for frame in sys._current_frames().values():
        current: FrameType | None = frame
        while current is not None:
            if current.f_code is code:
                return bool(current.f_locals.get("use_reloader"))
            current = current.f_back
    return False


def _log_inherited(inherited: list[Listener], probe: str | None) -> None:
    why = (
        "%s already listened when the app was created (socket activation, a parent's fd, "
        "werkzeug's reloader or gunicorn's arbiter): the kernel accepts connections into "
        "its backlog before the app serves, so %s"
    )
    addresses = texts.format_addresses(inherited)
    if probe is not None and probe.startswith("http:"):
        logger.info(why, addresses, f"READY waits until a GET ({probe}) answers below 500")
    else:
        logger.warning(why, addresses, f"READY after probe={probe!r} proves little")


class _Gate(threading.Event):
    """The waiter's stop event, which also reads as set once READY would be a lie.

    ``Readiness.announce_blocking`` asks ``is_set()`` right before it sends READY.
    """

    def __init__(self, check: Callable[[], str | None]) -> None:
        super().__init__()
        self._check = check
        self.reason: str | None = None

    def close(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.set()

    def is_set(self) -> bool:
        if super().is_set():
            return True
        reason = self._check()
        if reason is None:
            return False
        self.close(reason)
        return True


class _Process:
    """One per process: the READY waiter, the watchdog, STOPPING at exit and on signals."""

    def __init__(self, first: _AppState) -> None:
        self.pid = os.getpid()
        self.apps: list[tuple[weakref.ref[Flask], _AppState]] = []
        self.gunicorn = _under_gunicorn()
        self.reloader_child = _reloader_child()
        self.silent = False  # werkzeug's reloader watcher: its child speaks
        # Known early for `flask run --debug`: no STATUS either. The waiter still runs and
        # asks again once the socket listens, so a wrong guess costs a STATUS, not READY.
        self.quiet = _flask_run_reloads()
        self.gate = _Gate(self._lie_reason)
        self.watchdog: Watchdog | None = None
        self._once = threading.Lock()  # STOPPING once; never re-entered from a signal
        self._previous: dict[int, Any] = {}
        inherited = _listeners_now()
        options = first.options
        if first.auto_probe and (inherited or listen_fds_count()):
            options = replace(options, probe=_INHERITED_PROBE)
        self.readiness = Readiness(options)
        if inherited:
            _log_inherited(inherited, options.probe)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if not self.quiet:
            self.readiness.starting()
        threading.Thread(target=self._wait, name="sdready-flask-ready", daemon=True).start()
        atexit.register(self._at_exit)
        if not self.gunicorn:  # gunicorn owns its signals; a worker's exit is no stop
            self._chain_signals()

    def attach(self, app: Flask, state: _AppState) -> None:
        first = self.apps[0][1].options if self.apps else None
        if first is not None:
            differs = [
                f for f in _READINESS_FIELDS if getattr(state.options, f) != getattr(first, f)
            ]
            if differs or state.auto_probe != self.apps[0][1].auto_probe:
                logger.warning(
                    "SystemdNotify on app %r: %s differ from the first app's; a process sends "
                    "one READY, so the first app's options apply",
                    app.name,
                    ", ".join(differs) or "probe",
                )
        state.active = True
        self.apps.append((weakref.ref(app), state))

    def _lie_reason(self) -> str | None:
        if not threading.main_thread().is_alive() or sys.is_finalizing():
            return "the main thread has ended: the process is exiting before it served"
        if _werkzeug_reloader_parent():
            self.silent = True
            return (
                "werkzeug's reloader watcher listens but never serves; the child it starts "
                "sends READY (the unit needs NotifyAccess=all)"
            )
        return None

    def _wait(self) -> None:
        readiness = self.readiness
        try:
            if not self.quiet:
                readiness.waiting()
            # The snapshot came from init_app, just before this thread: whatever listens
            # now was opened by the server, not by the app's startup code.
            readiness.baseline = None
            if readiness.announce_blocking(stop=self.gate):
                self._start_watchdog()
            elif self.gate.reason is not None:
                logger.debug("not sending READY: %s", self.gate.reason)
        except Exception:  # our failure must never reach the app
            logger.exception("sdready: waiting for the server's listening socket failed")

    def _start_watchdog(self) -> None:
        if not any(state.options.watchdog for _, state in self.apps):
            return
        interval = watchdog_interval()
        parent = os.environ.get("WATCHDOG_PID")
        if interval is None and self.reloader_child and parent == str(os.getppid()):
            # systemd addressed the watchdog to the reloader's watcher; its child serves.
            interval = watchdog_interval({**os.environ, "WATCHDOG_PID": str(os.getpid())})
        self.watchdog = Watchdog(self.readiness.notifier, interval, self._healthy)
        self.watchdog.start()

    def _speaks(self) -> bool:
        # werkzeug's reloader watcher says nothing about the service: its child serves.
        return not self.silent and (not self.quiet or self.readiness.ready_sent)

    def _may_stop(self) -> bool:
        # A child process's exit is not the service's (the reloader's child, a supervisor's
        # worker): with NotifyAccess=all its STOPPING=1 would make systemd stop the whole
        # unit and kill it after TimeoutStopSec.
        return self._speaks() and is_main_process()

    def _stop_watchdog(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop(timeout=0)  # from a signal handler: never wait for a health check

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

    def _chain_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            logger.debug("init_app outside the main thread: no STOPPING on signals")
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)
            # Only dispositions whose outcome is known: the default action (terminate) and
            # Python's KeyboardInterrupt. Another handler may not stop the process at all.
            if previous is signal.SIG_DFL or previous is signal.default_int_handler:
                self._previous[signum] = previous
                signal.signal(signum, self._on_signal)
            else:
                logger.debug(
                    "not chaining %s: its handler is %r", signal.Signals(signum).name, previous
                )

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() == self.pid:
            self._stopping(f"{signal.Signals(signum).name} received")
        previous = self._previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)  # KeyboardInterrupt, as before
            return
        # The default action, exactly as without us: restore it and die of the signal.
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    def _at_exit(self) -> None:
        if os.getpid() != self.pid:
            return
        self.gate.close("the interpreter is exiting")
        self._stop_watchdog()
        if self.gunicorn or self.reloader_child:
            return  # a worker's or reloader child's exit is not the service stopping
        if self.readiness.ready_sent:
            self._stopping("the interpreter is exiting")
        elif self._once.acquire(blocking=False) and self._speaks():
            try:
                self.readiness.startup_failed("the process exited before it served")
            except Exception:
                logger.exception("sdready: could not report the failed startup")

    def _stopping(self, reason: str) -> None:
        if not self._once.acquire(blocking=False):
            return
        self.gate.close(reason)
        self._stop_watchdog()
        if not self._may_stop():
            logger.debug(
                "no STOPPING=1 from pid %d (%s): not the service's stop", os.getpid(), reason
            )
            return
        try:  # runs inside a signal handler: an exception would surface anywhere in the app
            self.readiness.stopping()
            self.readiness.notifier.flush(_STOPPING_FLUSH)
        except Exception:
            logger.exception("sdready: could not send STOPPING")
            return
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
    address = os.environ.get("NOTIFY_SOCKET")
    interval = watchdog_interval()
    listeners = _listeners_now()
    pid = os.getpid()
    exec_pid = os.environ.get("SYSTEMD_EXEC_PID")
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
    if exec_pid is not None and exec_pid != str(pid):
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
        if name == "probe" and state.auto_probe:
            value = f"auto (an HTTP probe only for inherited sockets: {_INHERITED_PROBE})"
        lines.append((f"  {name}", repr(value) if not isinstance(value, str) else value))
    lines.append(("this process", "waiting/serving" if state.active else state.inert_reason))
    return lines
