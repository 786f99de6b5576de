"""Serve the test project (tests/_django_site) under a real server, a recorder as systemd.

:func:`command` gives the argv of each way to serve it: ``uvicorn`` (the plugin's
get_asgi_application), ``waitress`` (``waitress-serve``), ``gunicorn-plugin`` (with
``-c python:sdready.plugins.gunicorn``), ``gunicorn`` (without it), ``runserver``
(``--noreload``) and ``runserver-reload``. :func:`site_env` sets the project's variant
(see the ``_django_site`` docstring). The same argv serve the units of the systemd tests.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from _gunicorn_support import NO_CONTROL_SOCKET  # gunicorn >= 26: no shared control socket
from _servers import ServerProcess, child_env
from sdready.testing import NotifyMessage, NotifyRecorder, RecorderTimeout

__all__ = [
    "KINDS",
    "SITE",
    "Site",
    "command",
    "manage",
    "serve",
    "site_env",
]

TESTS = Path(__file__).resolve().parent
SITE = TESTS / "_django_site"
#: Each way to serve the project: the plugin's get_asgi_application under uvicorn, WSGI
#: under waitress, gunicorn with sdready's plugin and runserver.
KINDS = ("uvicorn", "waitress", "gunicorn-plugin", "runserver")
_CLEAN_ENV = ("SITE_", "DJANGO_", "RUN_MAIN", "SERVER_SOFTWARE")


def site_env(
    *,
    mode: str = "sdready",
    asgi: str = "sdready",
    sdready: Mapping[str, object] | None = None,
    gap: float = 0.0,
    **extra: str,
) -> dict[str, str]:
    """The environment selecting the project's variant (plus *extra* variables)."""
    env = {
        "PYTHONPATH": str(TESTS),
        "DJANGO_SETTINGS_MODULE": "_django_site.settings",
        "SITE_MODE": mode,
        "SITE_ASGI": asgi,
        "SITE_GAP": str(gap),
        **extra,
    }
    if sdready is not None:
        env["SITE_SDREADY"] = json.dumps(sdready)
    return env


def command(kind: str, port: int) -> list[str]:
    """The argv serving the project as *kind* on 127.0.0.1:*port*."""
    python = sys.executable
    if kind == "uvicorn":
        app = "_django_site.asgi:application"
        return [python, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    wsgi = "_django_site.wsgi:application"
    if kind == "waitress":
        return [python, "-m", "waitress", f"--listen=127.0.0.1:{port}", "--threads=2", wsgi]
    if kind in ("gunicorn", "gunicorn-plugin"):
        plugin = ["-c", "python:sdready.plugins.gunicorn"] if kind == "gunicorn-plugin" else []
        bind = ["-b", f"127.0.0.1:{port}", "-w", "1"]
        return [python, "-m", "gunicorn", *plugin, *bind, *NO_CONTROL_SOCKET.split(), wsgi]
    if kind in ("runserver", "runserver-reload"):
        reload = ["--noreload"] if kind == "runserver" else []
        return manage("runserver", f"127.0.0.1:{port}", *reload)
    raise ValueError(f"unknown way to serve {kind!r}")


def manage(*args: str) -> list[str]:
    """``python manage.py ARGS`` of the test project."""
    return [sys.executable, str(SITE / "manage.py"), *args]


class Site(ServerProcess):
    """The project served by one server process (its group: reloader child, workers)."""

    recorder: NotifyRecorder

    def ready(self, timeout: float = 30.0) -> NotifyMessage:
        """The first READY=1; fails early, with the output, if the process exits first."""
        deadline = time.monotonic() + timeout
        while True:
            exited = self.process.poll() is not None
            with contextlib.suppress(RecorderTimeout):
                return self.recorder.wait_for("READY=1", 0.0 if exited else 0.2)
            if exited or time.monotonic() >= deadline:
                state = f"exited with {self.process.returncode}" if exited else "running"
                raise AssertionError(
                    f"no READY ({state}): {[str(m) for m in self.recorder]}\n"
                    f"--- output:\n{self.output(4000)}"
                )

    def app_loaded(self) -> tuple[float, list[str]]:
        """When the app module finished (``time.monotonic()``) and the threads it saw."""
        match = re.search(r"^APP_LOADED (\S+) THREADS (\S*)$", self.output(), re.MULTILINE)
        assert match is not None, f"no APP_LOADED line:\n{self.output(3000)}"
        return float(match.group(1)), match.group(2).split(",")


@contextlib.contextmanager
def serve(
    argv: list[str],
    recorder: NotifyRecorder | None,
    log: Path,
    env: Mapping[str, str],
) -> Iterator[Site]:
    """Run *argv* with NOTIFY_SOCKET at *recorder* (none: outside systemd); kill at the end."""
    environ = child_env(env, notify=recorder, drop=_CLEAN_ENV)
    site = Site(argv, env=environ, log=log, cwd=log.parent, recorder=recorder)
    try:
        yield site
    finally:
        site.kill()
