"""gunicorn as a unit of a private systemd: the unit file, a client under traffic, logs.

Shared by the real-systemd gunicorn tests (``Type=notify`` with ``ExecReload=``, and
``Type=notify-reload`` on systemd >= 253). The apps are :mod:`_gunicorn_support`'s.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

from _gunicorn_support import NO_CONTROL_SOCKET, http_get, write_apps
from _systemd import UserManager, python_for_units

__all__ = ["KILL_HUP", "Answer", "TrafficClient", "gunicorn_unit", "unit_logs"]

KILL_HUP = "/bin/kill -HUP $MAINPID"  # the reload systemd 252 and older need


def _gunicorn() -> str:
    return str(Path(sys.executable).with_name("gunicorn"))


def gunicorn_unit(
    manager: UserManager,
    directory: Path,
    port: int,
    *,
    plugin: bool,
    workers: int = 1,
    env: str = "",
    access: str = "main",
    extra: str = "",
    reload: bool = True,
    service_type: str = "notify",
    exec_reload: str | None = KILL_HUP,
) -> str:
    """Write a unit running gunicorn with the test apps on ``127.0.0.1:port``; its name.

    :param plugin: ``-c python:sdready.plugins.gunicorn``, else gunicorn's own notify.
    :param env: extra ``Environment=`` assignments (``APP_IMPORT_DELAY=1 …``).
    :param extra: more ``[Service]`` lines (one per line).
    :param reload: ``daemon-reload`` at once (pass False when writing several units).
    :param exec_reload: the ``ExecReload=`` command, None for none (``Type=notify-reload``
        reloads by signal).
    Its output goes to ``directory/server.log`` (see :func:`unit_logs`).
    """
    _python, python_env = python_for_units()
    apps = write_apps(directory / "apps")
    paths = [str(apps), *filter(None, [python_env.get("PYTHONPATH")])]
    python_env = {**python_env, "PYTHONPATH": ":".join(paths)}
    environment = " ".join(f"{k}={v}" for k, v in python_env.items())
    config = "-c python:sdready.plugins.gunicorn " if plugin else ""
    reload_line = f"ExecReload={exec_reload}" if exec_reload is not None else ""
    extra_lines = "\n".join(line.strip() for line in extra.splitlines())
    name = manager.unit_name("gunicorn-a")
    text = f"""\
[Service]
Type={service_type}
NotifyAccess={access}
ExecStart={_gunicorn()} {config}--bind 127.0.0.1:{port} --workers {workers} \\
    {NO_CONTROL_SOCKET} --graceful-timeout 5 wsgi_app:app
{reload_line}
WorkingDirectory={apps}
Environment={environment} {env}
TimeoutStartSec=30
{extra_lines}
StandardOutput=append:{directory}/server.log
StandardError=append:{directory}/server.log
"""
    manager.write_unit(name, text, reload=reload)
    return name


def unit_logs(directory: Path) -> str:
    """The tails of the server's (and a client unit's) output in *directory*."""
    return "\n".join(
        f"--- {name}:\n{(directory / name).read_text(errors='replace')[-3000:]}"
        for name in ("client.log", "server.log")
        if (directory / name).exists()
    )


class Answer(NamedTuple):
    sent: float  # time.monotonic() when the GET went out
    answered: float  # … and when its answer was read
    version: str  # the app's VERSION that answered


class TrafficClient(threading.Thread):
    """GETs on fresh connections, back to back, until stopped; records every outcome.

    Each GET may take up to *timeout* s: while gunicorn swaps workers, requests wait in the
    listening socket's queue.
    """

    def __init__(self, port: int, *, timeout: float = 5.0) -> None:
        super().__init__(name="reload-client", daemon=True)
        self.port = port
        self.timeout = timeout
        self.stop = threading.Event()
        self.answers: list[Answer] = []
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                status, body = http_get(("127.0.0.1", self.port), timeout=self.timeout)
            except OSError as exc:
                self.failures.append(repr(exc))
            else:
                if status == 200:
                    self.answers.append(Answer(sent, time.monotonic(), body.split()[0]))
                else:
                    self.failures.append(f"HTTP {status}")
            time.sleep(0.01)

    def finish(self) -> None:
        self.stop.set()
        self.join(10)
