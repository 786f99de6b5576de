"""A unit restarted under traffic: what its client saw (issue 12's measurement).

A client sends one GET every 20 ms (5 s timeout, a fresh connection each) while the unit
goes through crash-restarts (``systemctl kill -s SIGKILL`` with ``Restart=always``) and
``systemctl restart``s. Every outcome is counted: answered, refused (nobody held the
listening socket), or cut (accepted, then reset or unanswered: a request in flight when
the process died). Shared by the real-systemd tests and ``benchmarks/restart_refusals.py``.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _servers import Address, http_get
from _systemd import UserManager, python_for_units, wait_until

__all__ = [
    "EXEC_LISTEN_UVICORN",
    "Outcome",
    "TrafficClient",
    "restart_under_traffic",
    "restart_unit",
    "write_apps",
]

#: ``sdready exec --listen`` in front of ``uvicorn --fd 3``, as :func:`restart_unit`'s
#: ``exec_start`` (``{port}`` is the caller's to fill).
EXEC_LISTEN_UVICORN = (
    "{python} -m sdready exec --listen 127.0.0.1:{port} -- {bin}/uvicorn --fd 3 restart_apps:asgi"
)
INTERVAL = 0.02
TIMEOUT = 5.0


@dataclass
class Outcome:
    """What the client saw."""

    answered: int = 0
    refused: int = 0
    cut: int = 0
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"answered {self.answered}, refused {self.refused}, cut {self.cut}"


class TrafficClient(threading.Thread):
    """One GET every INTERVAL (start to start) on a fresh connection until stopped."""

    def __init__(self, address: Address) -> None:
        super().__init__(name="restart-client", daemon=True)
        self.address = address
        self.outcome = Outcome()
        self.halt = threading.Event()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.halt.is_set():
            self._one()
            next_at = max(next_at + INTERVAL, time.monotonic())
            self.halt.wait(max(0.0, next_at - time.monotonic()))

    def _one(self) -> None:
        outcome = self.outcome
        try:
            status, _body = http_get(self.address, timeout=TIMEOUT)
        except ConnectionRefusedError as exc:
            outcome.refused += 1
            outcome.errors.append(repr(exc))
        except (OSError, http.client.HTTPException) as exc:  # reset, timeout, no answer
            outcome.cut += 1
            outcome.errors.append(repr(exc))
        else:
            if status < 500:
                outcome.answered += 1
            else:
                outcome.cut += 1
                outcome.errors.append(f"HTTP {status}")

    def answer_after(self, count: int, timeout: float = 30.0) -> None:
        wait_until(lambda: self.outcome.answered > count, timeout=timeout)

    def finish(self) -> Outcome:
        self.halt.set()
        self.join(TIMEOUT + 5)
        return self.outcome


def restart_under_traffic(
    manager: UserManager,
    unit: str,
    address: Address,
    *,
    kills: int = 3,
    restarts: int = 2,
    reloads: int = 0,
) -> Outcome:
    """Start *unit*, then under traffic ``systemctl reload`` it *reloads* times, SIGKILL
    it *kills* times (systemd restarts it) and ``systemctl restart`` it *restarts* times;
    return the client's outcome.

    Each step waits until the unit is active again and has answered once more.
    """
    manager.start_unit(unit, wait_started=True, timeout=60)
    manager.wait_for(unit, ActiveState="active", timeout=30)
    client = TrafficClient(address)
    client.start()
    try:
        client.answer_after(0)
        for _ in range(reloads):  # ExecReload= (gunicorn: HUP, new workers, same sockets)
            answered = client.outcome.answered
            manager.run("reload", unit, timeout=60)
            client.answer_after(answered)
        for _ in range(kills):
            before = int(manager.show(unit, "NRestarts")["NRestarts"])
            answered = client.outcome.answered
            manager.run("kill", "--signal=SIGKILL", unit, timeout=10)
            manager.wait_for(
                unit,
                lambda p, n=before: int(p["NRestarts"]) > n,
                ActiveState="active",
                SubState="running",
                timeout=60,
            )
            client.answer_after(answered)
        for _ in range(restarts):
            answered = client.outcome.answered
            manager.run("restart", unit, timeout=60)
            manager.wait_for(unit, ActiveState="active", timeout=60)
            client.answer_after(answered)
    finally:
        outcome = client.finish()
    return outcome


# -- the units -----------------------------------------------------------------------------

_APPS = '''\
"""The apps a restarted unit serves: "ok <pid>" at /."""
import os

from flask import Flask

flask_app = Flask(__name__)


@flask_app.get("/")
def index():
    return f"ok {os.getpid()}\\n"


def wsgi(environ, start_response):
    if environ["PATH_INFO"] == "/slow":  # in flight while the unit restarts
        import time

        print("SLOW START", os.getpid(), flush=True)
        time.sleep(2)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"ok {os.getpid()}\\n".encode()]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                import asyncio

                await asyncio.sleep(float(os.environ.get("APP_STARTUP_DELAY", "0")))
                print("APP STARTUP COMPLETE", os.getpid(), flush=True)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/error":  # an HTTP probe of it never succeeds
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"error"})
        return
    if scope["path"] == "/slow":  # in flight while the unit restarts
        import asyncio

        print("SLOW START", os.getpid(), flush=True)
        await asyncio.sleep(2)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": f"ok {os.getpid()}\\n".encode()})


def _with_sdready(app):
    from sdready.plugins.asgi import SystemdMiddleware

    return SystemdMiddleware(app)


asgi_sd = _with_sdready(asgi)  # READY once the lifespan startup completed and it listens
'''

_WAITRESS = '''\
"""Flask on waitress with the socket from sdready.listen_socket (keep: yes, no, auto)."""
import logging
import sys

import waitress

import sdready
from restart_apps import flask_app
from sdready.plugins.flask import SystemdNotify

logging.basicConfig(level=logging.INFO)
SystemdNotify(flask_app)
keep = {"yes": True, "no": False, "auto": None}[sys.argv[2]]
sock = sdready.listen_socket(sys.argv[1], keep=keep)
waitress.serve(flask_app, sockets=[sock], threads=4)
'''


def write_apps(directory: Path) -> Path:
    """The apps and server scripts in *directory*/apps; that directory."""
    apps = directory / "apps"
    apps.mkdir(parents=True, exist_ok=True)
    (apps / "restart_apps.py").write_text(_APPS)
    (apps / "serve_waitress.py").write_text(_WAITRESS)
    return apps


def restart_unit(
    manager: UserManager,
    directory: Path,
    exec_start: str,
    *,
    base: str,
    store: bool,
    extra: str = "",
    sockets: Sequence[str] = (),
    access: str = "main",
) -> str:
    """Write a ``Type=notify``, ``Restart=always`` (``RestartSec=100ms``) unit running
    *exec_start* in the apps directory; with *store*, ``FileDescriptorStoreMax=`` (and
    ``FileDescriptorStorePreserve=yes`` on systemd >= 254); with *sockets*
    (``ListenStream=`` values), a ``.socket`` unit of the same name holds them.
    *access* is ``NotifyAccess=`` (hypercorn's READY comes from its worker: ``all``).
    Its name."""
    python, python_env = python_for_units()
    apps = write_apps(directory)
    paths = [str(apps), *filter(None, [python_env.get("PYTHONPATH")])]
    environment = " ".join(
        f"{k}={v}" for k, v in {**python_env, "PYTHONPATH": ":".join(paths)}.items()
    )
    store_lines = ""
    if store:
        store_lines = "FileDescriptorStoreMax=8"
        if manager.systemd.version >= 254:
            store_lines += "\nFileDescriptorStorePreserve=yes"
    name = manager.unit_name(base)
    if sockets:
        listen = "\n".join(f"ListenStream={address}" for address in sockets)
        socket_text = f"[Socket]\n{listen}\nBacklog=1024\n"
        manager.write_unit(name.removesuffix(".service") + ".socket", socket_text, reload=False)
    text = f"""\
[Unit]
StartLimitIntervalSec=0

[Service]
Type=notify
NotifyAccess={access}
ExecStart={exec_start.format(python=python, bin=Path(python).parent)}
WorkingDirectory={apps}
Environment={environment}
Restart=always
RestartSec=100ms
TimeoutStartSec=60
TimeoutStopSec=10
{store_lines}
{extra}
StandardOutput=append:{directory}/server.log
StandardError=append:{directory}/server.log
"""
    manager.write_unit(name, text)
    return name
