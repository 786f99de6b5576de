"""The shutdown delay under Flask's servers (issue 22): waitress and werkzeug keep serving.

Neither server handles SIGTERM: it kills them at once, listening socket and all. The
extension holds the first one for ``shutdown_delay`` (STOPPING=1 with EXTEND_TIMEOUT_USEC,
``ready_path`` answering 503) while the server goes on serving, then passes it on: the
process dies of it, as it would have at once. A second SIGTERM ends the delay.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from _flask_support import ready_address, run_server, write_app
from _servers import http_get
from sdready.testing import NotifyRecorder

pytestmark = pytest.mark.timeout(120)

#: Long, so that the GETs during it never race its end; a second SIGTERM ends it.
LONG_DELAY = 60.0
DELAY = {"APP_EXT_ARGS": json.dumps({"ready_path": "/readyz", "shutdown_delay": LONG_DELAY})}
#: waitress.serve() and app.run() from a script, the waitress-serve CLI, flask run.
SERVERS = ("waitress", "waitress-serve", "werkzeug", "flask-run")


@pytest.mark.parametrize("kind", SERVERS)
def test_sigterm_is_held_while_the_server_keeps_serving(
    kind: str, tmp_path: Path, notify_socket: NotifyRecorder
) -> None:
    app = write_app(tmp_path)
    with run_server(kind, app, notify_socket, env=DELAY) as server:
        address = ready_address(server.wait_ready())
        assert http_get(address, "/readyz") == (200, "ready")

        server.signal(signal.SIGTERM)
        stopping = notify_socket.wait_for("STOPPING=1", timeout=10)
        assert stopping["EXTEND_TIMEOUT_USEC"] == str(int((LONG_DELAY + 5) * 1_000_000))
        assert http_get(address, "/readyz") == (503, "stopping")
        for _ in range(3):  # each on a new connection: the listening socket still accepts
            assert http_get(address, "/") == (200, "ok")

        server.signal(signal.SIGTERM)  # a second SIGTERM ends the delay: the usual stop
        assert server.wait(timeout=20) == -signal.SIGTERM, server.output(3000)
        assert [m for m in notify_socket.messages if "STOPPING" in m] == [stopping]
        assert "SIGTERM during the shutdown delay: stopping now" in server.output()


@pytest.mark.parametrize("kind", SERVERS)
def test_control_without_the_delay_the_server_stops_at_once(
    kind: str, tmp_path: Path, notify_socket: NotifyRecorder
) -> None:
    app = write_app(tmp_path)
    probes = {"APP_EXT_ARGS": json.dumps({"ready_path": "/readyz"})}
    with run_server(kind, app, notify_socket, env=probes) as server:
        address = ready_address(server.wait_ready())
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=20) == -signal.SIGTERM
        with pytest.raises(OSError):  # nobody listens any more
            http_get(address, "/", timeout=0.5)


def test_sigint_ends_the_delay(tmp_path: Path, notify_socket: NotifyRecorder) -> None:
    app = write_app(tmp_path)
    with run_server("waitress", app, notify_socket, env=DELAY) as server:
        address = ready_address(server.wait_ready())
        server.signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1", timeout=10)
        assert http_get(address, "/") == (200, "ok")
        server.signal(signal.SIGINT)
        assert server.wait(timeout=20) == -signal.SIGTERM  # the held SIGTERM, passed on


def test_the_delay_ends_by_itself_then_the_server_stops(
    tmp_path: Path, notify_socket: NotifyRecorder
) -> None:
    short = {"APP_EXT_ARGS": json.dumps({"ready_path": "/readyz", "shutdown_delay": 1.0})}
    app = write_app(tmp_path)
    with run_server("waitress", app, notify_socket, env=short) as server:
        server.wait_ready()
        server.signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1", timeout=10)
        assert server.wait(timeout=30) == -signal.SIGTERM
        assert "shutdown delay over: the server's own shutdown begins" in server.output()


def test_with_the_reloader_a_warning_says_the_delay_does_not_apply(
    tmp_path: Path, notify_socket: NotifyRecorder
) -> None:
    app = write_app(tmp_path)
    with run_server("flask-run-debug", app, notify_socket, env=DELAY) as server:
        server.wait_ready()
        assert "shutdown_delay=60 is not applied by the Flask extension here: werkzeug's " in (
            server.output()
        )


def test_under_stock_gunicorn_a_warning_names_the_gunicorn_plugin(
    tmp_path: Path, notify_socket: NotifyRecorder
) -> None:
    # Its arbiter stops the workers: a worker cannot hold the unit's SIGTERM.
    app = write_app(tmp_path)
    with run_server("gunicorn", app, notify_socket, env=DELAY) as server:
        server.wait_ready()
        assert "shutdown_delay=60 is not applied by the Flask extension here: gunicorn's " in (
            server.output()
        )
