"""The process-wide READY waiter the AppConfig starts in processes that serve.

A WSGI server (waitress, runserver, uWSGI…) loads the Django app and binds afterwards,
with no event in between that Django sees; so ``ready()`` snapshots the listening sockets
and one daemon thread per process sends READY once the server's socket listens. Which
processes serve is decided here, once (:func:`inert_reason`): ``ready()`` also runs for
``migrate``, ``check``, ``shell`` and in runserver's autoreloader parent, none of which
may ever send READY.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading

from sdready.integration import Readiness, ReadyOptions, chain_signal, contained

from . import _compat

__all__ = ["lifespan_reports", "start"]

logger = logging.getLogger("sdready")

_NO_SOCKET = "no NOTIFY_SOCKET (not started by systemd)"
# A STOPPING that met a full queue is retried from a thread: give it this long before the
# process dies of the signal (normally it was sent at once and this costs nothing).
_STOPPING_FLUSH = 0.25

_lock = threading.Lock()
_waiter: _Waiter | None = None
_lifespan = False  # sdready's get_asgi_application serves this process: its lifespan reports


def start(options: ReadyOptions) -> str | None:
    """Start this process's waiter unless the process does not serve; return why not."""
    global _waiter  # noqa: PLW0603  (one waiter per process)
    with _lock:
        if _waiter is not None and _waiter.pid == os.getpid():
            return None  # ready() again in the same process (a second django.setup())
        readiness = Readiness(options)
        reason = inert_reason(readiness)
        if reason is not None:
            logger.debug("sdready inert in pid %d: %s", os.getpid(), reason)
            if reason == _NO_SOCKET:
                readiness.check_unit()  # under systemd without NOTIFY_SOCKET: says why
            return reason
        _waiter = _Waiter(readiness)
    _waiter.start()
    return None


def lifespan_reports() -> None:
    """sdready's ASGI lifespan tells this process's story: no waiter (or retire one that
    an earlier ``django.setup()`` started: it has not served yet)."""
    global _lifespan  # noqa: PLW0603
    with _lock:
        _lifespan = True
        if _waiter is not None and _waiter.pid == os.getpid():
            _waiter.retire()


def inert_reason(readiness: Readiness) -> str | None:
    """Why this process must not wait for a listener and send READY, or None: it serves."""
    if not readiness.enabled:
        return _NO_SOCKET
    if _lifespan:
        return "the ASGI lifespan reports (sdready.plugins.django.get_asgi_application)"
    command = _management_command()
    if command is not None and command not in _compat.SERVING_COMMANDS:
        return f"'manage.py {command}' does not serve (only runserver does)"
    if command == "runserver" and _reloader_parent():
        return (
            "runserver's autoreloader: its child serves and sends READY (NotifyAccess=all), "
            f"or run it with {_compat.NORELOAD_OPTION}"
        )
    if _under_gunicorn():
        # With sdready's gunicorn plugin the workers never see NOTIFY_SOCKET; here gunicorn
        # has sent its own READY at boot, before any worker loaded Django.
        logger.info(
            "running under gunicorn without sdready's gunicorn plugin: its READY comes before "
            "Django is loaded; use 'gunicorn -c python:sdready.plugins.gunicorn'"
        )
        return "a gunicorn worker: the arbiter speaks for the service"
    return None


def _management_command() -> str | None:
    """The management command this process runs (``migrate``), or None: not manage.py.

    ``execute_from_command_line`` dispatches on ``argv[1]``; a project's own entry point
    (not named manage.py) is recognised by its command name.
    """
    argv = sys.argv
    command = argv[1] if len(argv) > 1 else "help"
    script = os.path.basename(argv[0]) if argv else ""
    by_django = script in ("manage.py", "django-admin") or argv[0].endswith(
        os.path.join("django", "__main__.py")
    )
    if by_django or command in _compat.command_names():
        return command
    return None


def _reloader_parent() -> bool:
    if os.environ.get(_compat.AUTORELOAD_ENV) == "true":
        return False  # the child: it binds and serves
    return _compat.NORELOAD_OPTION not in sys.argv[2:]


def _under_gunicorn() -> bool:
    # The arbiter exports SERVER_SOFTWARE=gunicorn/<version>; its workers inherit it.
    return os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/") and (
        "gunicorn.arbiter" in sys.modules
    )


class _Waiter:
    """This process's READY wait, watchdog, and STOPPING on SIGTERM/SIGINT or at exit."""

    def __init__(self, readiness: Readiness) -> None:
        self.pid = os.getpid()
        self.readiness = readiness
        self._retired = threading.Event()  # another front end reports: say nothing more
        self._told = threading.Lock()  # the last word (STOPPING or failure) said once

    def start(self) -> None:
        readiness = self.readiness
        # Django's startup is over when ready() runs: whatever listens from now on was
        # opened by the server; whatever listened already was passed to it.
        readiness.starting()
        readiness.waiting()
        baseline = readiness.waiter.baseline
        if baseline is not None and baseline.listeners:
            readiness.waiter.inherited(
                list(baseline.listeners), why="socket activation or a parent's fd"
            )
        threading.Thread(target=self._wait, name="sdready-django-ready", daemon=True).start()
        atexit.register(self._at_exit)
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                chain_signal(signum, self._on_signal, only_default=True)

    def retire(self) -> None:
        self._retired.set()
        self.readiness.abandon("another front end reports for this process")

    def _wait(self) -> None:
        readiness = self.readiness
        with contained("waiting for the server's listening socket"):
            if readiness.waiter.announce_blocking(self._retired) and readiness.options.watchdog:
                readiness.watchdog.start(readiness.options.health)

    def _on_signal(self, signum: int) -> None:
        self._last_word(f"{signal.Signals(signum).name} received", stop=True)

    def _at_exit(self) -> None:
        if os.getpid() == self.pid:
            self.readiness.abandon("the interpreter is exiting")
            self._last_word("the interpreter is exiting", stop=self.readiness.ever_ready)

    def _last_word(self, reason: str, *, stop: bool) -> None:
        """STOPPING, or the failed startup (exiting before it served); said once."""
        if self._retired.is_set() or not self._told.acquire(blocking=False):
            return
        readiness = self.readiness
        # May run inside a signal handler: an exception would surface anywhere in the app.
        with contained("telling systemd the process stops"):
            readiness.watchdog.stop()
            if not stop:
                if readiness.is_main:
                    readiness.startup_failed("the process exited before it served")
            elif readiness.stopping():
                readiness.notifier.flush(_STOPPING_FLUSH)
                logger.debug("STOPPING sent: %s", reason)
