"""Flask's readiness endpoint (issue 22): answered by a WSGI wrapper from the phase."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from _flask_support import command, ready_address, run_server, write_app
from _servers import ServerProcess, child_env, http_get, reserved_port
from _systemd import wait_until
from sdready.testing import NotifyRecorder

PROBES = {"APP_EXT_ARGS": json.dumps({"ready_path": "/readyz", "live_path": "/livez"})}


def test_waitress_answers_ready_after_ready_and_stopping_after_sigterm(
    tmp_path: Path, notify_socket: NotifyRecorder
) -> None:
    app = write_app(tmp_path)
    with run_server("waitress", app, notify_socket, env=PROBES) as server:
        address = ready_address(server.wait_ready())
        assert http_get(address, "/readyz") == (200, "ready")
        assert http_get(address, "/livez") == (200, "live")
        assert http_get(address, "/") == (200, "ok")
        server.signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1")
        server.wait(timeout=20)


def test_control_without_ready_path_the_app_answers_404(
    tmp_path: Path, notify_socket: NotifyRecorder
) -> None:
    app = write_app(tmp_path)
    with run_server("waitress", app, notify_socket) as server:
        address = ready_address(server.wait_ready())
        assert http_get(address, "/readyz").status == 404


def test_without_systemd_the_endpoint_still_answers(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    with reserved_port() as port:
        env = child_env({"APP_GAP": "0", **PROBES}, drop=("APP_", "WERKZEUG_"))
        log = tmp_path / f"k8s-{time.monotonic_ns()}.log"
        argv = command("waitress", app, [str(port)])
        with ServerProcess(argv, env=env, log=log, cwd=app.parent) as server:

            def ready() -> bool:
                try:
                    return http_get(("127.0.0.1", port), "/readyz") == (200, "ready")
                except OSError:
                    return False

            wait_until(ready, timeout=20, message=lambda: server.output(3000))
            assert http_get(("127.0.0.1", port), "/livez") == (200, "live")
