"""examples/flask/app.py works as its README says: waitress, werkzeug's reloader, fd 3."""

from __future__ import annotations

import shutil
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _flask_support import Server, ready_address
from _servers import http_get
from sdready.testing import NotifyRecorder

pytest.importorskip("flask")
pytest.importorskip("waitress")

pytestmark = pytest.mark.timeout(60)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flask" / "app.py"


@pytest.fixture
def recorder() -> Iterator[NotifyRecorder]:
    recorder = NotifyRecorder(set_environment=False).start()
    try:
        yield recorder
    finally:
        recorder.close()


def _start(
    argv: list[str], recorder: NotifyRecorder, tmp_path: Path, pass_fds: tuple[int, ...] = ()
) -> Server:
    env = {"PATH": "/usr/bin:/bin", "NOTIFY_SOCKET": recorder.address, "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "example.log"
    return Server(argv, env=env, log=log, cwd=tmp_path, pass_fds=pass_fds, recorder=recorder)


@pytest.mark.parametrize("mode", [[], ["--dev"]], ids=["waitress", "werkzeug-reloader"])
def test_example_serves_when_ready(
    mode: list[str], recorder: NotifyRecorder, tmp_path: Path
) -> None:
    shutil.copy(EXAMPLE, tmp_path / "app.py")
    server = _start([sys.executable, "app.py", *mode, "--port", "0"], recorder, tmp_path)
    try:
        ready = server.wait_ready()
        # Accepted at READY; the answer itself took over a second once on a loaded machine.
        assert http_get(ready_address(ready), timeout=10)[0] == 200
        # The reloader's watcher (the main process) sends READY once its child serves.
        assert ready.pid == server.pid
        assert [m for m in recorder.messages if m.pid != server.pid] == []
        server.signal(signal.SIGTERM)
        server.wait()
    finally:
        server.kill()


def test_example_socket_activation_waits_for_the_probe(
    recorder: NotifyRecorder, tmp_path: Path
) -> None:
    shutil.copy(EXAMPLE, tmp_path / "app.py")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        fd = listener.fileno()
        # As systemd does it: the socket at fd 3, LISTEN_PID naming the process that execs.
        trampoline = (
            f"import os, sys; os.dup2({fd}, 3); os.close({fd}); "
            "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
            "os.execv(sys.executable, [sys.executable, 'app.py'])"
        )
        server = _start([sys.executable, "-c", trampoline], recorder, tmp_path, (fd,))
        try:
            ready = server.wait_ready()
            assert http_get(ready_address(ready), timeout=10)[0] == 200
            assert "READY waits until a GET (http:/) answers below 500" in server.output()
        finally:
            server.kill()
