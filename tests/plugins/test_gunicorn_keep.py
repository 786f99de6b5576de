"""gunicorn keep-sockets with a NotifyRecorder as the manager: which sockets go into the
fd store, under which names, and when (the restarts themselves: test_gunicorn_keep_sockets)."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest
from _gunicorn_support import Gunicorn, write_apps
from _servers import free_port
from _systemd import wait_until
from sdready._listen._activation import fdname_for
from sdready.testing import NotifyRecorder

pytest.importorskip("gunicorn")
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def apps(tmp_path: Path) -> Path:
    return write_apps(tmp_path / "apps")


def test_every_bind_is_kept_once_ready(
    apps: Path, notify_socket: NotifyRecorder, tmp_path: Path
) -> None:
    port = free_port()
    unix = str(tmp_path / "g.sock")
    args = ["--bind", f"127.0.0.1:{port}", "--bind", f"unix:{unix}", "wsgi_app:app"]
    env = {"SDREADY_KEEP_SOCKETS": "1"}
    with Gunicorn(args, apps=apps, recorder=notify_socket, env=env) as gunicorn:
        ready = gunicorn.wait_for("READY=1", timeout=30)
        wait_until(lambda: len(notify_socket.values("FDSTORE")) >= 2, timeout=30)
        stored = [m for m in notify_socket.messages if "FDSTORE" in m]
        names = sorted(m["FDNAME"] for m in stored)
        assert names == sorted([f"127.0.0.1_{port}", fdname_for(unix)])
        assert all(len(m.fds) == 1 for m in stored)
        assert notify_socket.messages.index(ready) < notify_socket.messages.index(stored[0])
        assert {_family(m.fds[0]) for m in stored} == {socket.AF_INET, socket.AF_UNIX}


@pytest.mark.parametrize(("env", "kept"), [({}, False), ({"FDSTORE": "4"}, True)])
def test_fdstore_decides_by_default(
    apps: Path, notify_socket: NotifyRecorder, env: dict[str, str], kept: bool
) -> None:
    args = ["--bind", f"127.0.0.1:{free_port()}", "wsgi_app:app"]
    with Gunicorn(args, apps=apps, recorder=notify_socket, env=env) as gunicorn:
        gunicorn.wait_for("READY=1", timeout=30)
        # A barrier: sdready keeps the sockets under its lock right after READY, and the
        # STATUS for a second worker comes under the same lock, so after it. A stop sent
        # before that point may rightly find nothing left to keep.
        os.kill(gunicorn.pid, signal.SIGTTIN)
        gunicorn.wait_for(lambda m: m.get("STATUS", "").startswith("Workers: 1/2"), timeout=30)
        gunicorn.stop()
    assert bool(notify_socket.values("FDSTORE")) is kept


def test_a_bad_value_stops_gunicorn(apps: Path, notify_socket: NotifyRecorder) -> None:
    args = ["--bind", f"127.0.0.1:{free_port()}", "wsgi_app:app"]
    env = {"SDREADY_KEEP_SOCKETS": "maybe"}
    with Gunicorn(args, apps=apps, recorder=notify_socket, env=env) as gunicorn:
        assert gunicorn.wait(30) != 0
        assert "SDREADY_KEEP_SOCKETS must be a boolean" in gunicorn.log()


def _family(fd: int) -> int:
    sock = socket.socket(fileno=fd)
    try:
        return sock.family
    finally:
        sock.detach()  # the recorder owns the descriptor
