"""``sdready exec --ready-address --shutdown-delay`` (issue 22): the endpoint for any
server, and SIGTERM forwarded only after the delay. A NotifyRecorder plays systemd."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from _servers import ServerProcess, child_env, http_get, reserved_port
from _systemd import wait_until
from sdready.testing import NotifyRecorder

TESTS_DIR = Path(__file__).resolve().parents[1]
LONG_DELAY = "60"  # never reached: a second SIGTERM ends it


def _exec(
    tmp_path: Path, recorder: NotifyRecorder, probe: int, app: int, *options: str
) -> ServerProcess:
    argv = [
        sys.executable, "-m", "sdready", "exec", "--ready-address", f"127.0.0.1:{probe}",
        *options, "--", sys.executable, "-m", "uvicorn", "_asgi_apps:app",
        "--port", str(app), "--log-level", "warning",
    ]  # fmt: skip
    env = child_env({"PYTHONPATH": str(TESTS_DIR)}, notify=recorder, drop=("SDREADY_TEST_",))
    log = tmp_path / f"exec-{time.monotonic_ns()}.log"
    return ServerProcess(argv, env=env, log=log, cwd=tmp_path)


def test_exec_answers_readyz_and_holds_sigterm(
    tmp_path: Path, notify_socket: NotifyRecorder
) -> None:
    delay = ("--shutdown-delay", LONG_DELAY)
    with (
        reserved_port() as probe,
        reserved_port() as app,
        _exec(tmp_path, notify_socket, probe, app, *delay) as server,
    ):
        notify_socket.wait_for("READY=1", timeout=30)
        assert http_get(("127.0.0.1", probe), "/readyz") == (200, "ready")
        assert http_get(("127.0.0.1", probe), "/livez") == (200, "live")
        server.signal(signal.SIGTERM)
        stopping = notify_socket.wait_for("STOPPING=1", timeout=10)
        assert "EXTEND_TIMEOUT_USEC" in stopping
        assert http_get(("127.0.0.1", probe), "/readyz") == (503, "stopping")
        assert http_get(("127.0.0.1", app), "/").status == 200  # still served
        server.signal(signal.SIGTERM)  # the second one: forwarded now
        assert server.wait(timeout=20) == -signal.SIGTERM


def test_control_without_the_delay_the_command_stops_at_once(
    tmp_path: Path, notify_socket: NotifyRecorder
) -> None:
    with (
        reserved_port() as probe,
        reserved_port() as app,
        _exec(tmp_path, notify_socket, probe, app) as server,
    ):
        notify_socket.wait_for("READY=1", timeout=30)
        server.signal(signal.SIGTERM)
        server.wait(timeout=20)

        def refused() -> bool:
            try:
                http_get(("127.0.0.1", app), "/", timeout=0.5)
            except OSError:
                return True
            return False

        wait_until(refused, timeout=5)
