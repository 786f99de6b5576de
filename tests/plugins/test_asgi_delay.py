"""The shutdown delay under hypercorn (issue 22): its stop waits at sdready's gate.

hypercorn's stop comes from no Python signal handler that sdready could hold: its worker
polls an event that the parent sets on SIGTERM (``hypercorn app:app``), or the event loop
hears SIGTERM itself (``hypercorn.asyncio.serve``). Its stop trigger awaits the delay
instead; a SIGTERM reaching the worker as well (systemd signals every process of the unit)
is held there, and a second one ends the delay. uvicorn's case is in test_probes.py.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import pytest
from _asgi_servers import ServerRun, run_server, server_command
from _servers import http_get, reserved_port

pytestmark = pytest.mark.timeout(120)

FASTAPI = "_asgi_fastapi:app"
MIDDLEWARE = "_asgi_apps:app"
#: Long, so that the GETs during it never race its end; a second SIGTERM ends it.
LONG_DELAY = 60.0
#: hypercorn's asyncio worker with FastAPI's plugin, its trio worker with the middleware.
WORKERS = [("hypercorn-asyncio", FASTAPI), ("hypercorn-trio", MIDDLEWARE)]


def _options(**options: object) -> dict[str, str]:
    return {"SDREADY_TEST_OPTIONS": json.dumps(options)}


def _to_the_unit(run: ServerRun, signum: int) -> None:
    # As systemd's default KillMode=control-group does: every process of the unit.
    os.killpg(run.pid, signum)


def _serves_while_stopping(run: ServerRun, port: int) -> None:
    stopping = run.recorder.wait_for("STOPPING=1", timeout=10)
    assert stopping["EXTEND_TIMEOUT_USEC"] == str(int((LONG_DELAY + 5) * 1_000_000))
    address = ("127.0.0.1", port)
    assert http_get(address, "/readyz") == (503, "stopping")
    for _ in range(3):  # each on a new connection: the listening socket still accepts
        assert http_get(address, "/").status == 200


@pytest.mark.parametrize(("kind", "target"), WORKERS)
def test_the_unit_stopping_is_delayed_while_the_worker_serves(kind: str, target: str) -> None:
    env = _options(ready_path="/readyz", shutdown_delay=LONG_DELAY)
    with reserved_port() as port, run_server(kind, target, env=env, port=port) as run:
        run.wait_ready()
        assert http_get(("127.0.0.1", port), "/readyz") == (200, "ready")

        _to_the_unit(run, signal.SIGTERM)
        _serves_while_stopping(run, port)

        _to_the_unit(run, signal.SIGTERM)  # a second SIGTERM: hypercorn's graceful stop, now
        assert run.wait(timeout=20) == 0, run.log()
        assert len([m for m in run.recorder.messages if "STOPPING" in m]) == 1


@pytest.mark.parametrize(("kind", "target"), WORKERS)
def test_sigterm_to_the_parent_alone_starts_the_delay_in_its_worker(kind: str, target: str) -> None:
    # KillMode=mixed: only the parent gets SIGTERM and sets the event its worker polls;
    # the worker's gate begins the delay. A SIGINT (Ctrl-C: the whole group) ends it.
    env = _options(ready_path="/readyz", shutdown_delay=LONG_DELAY)
    with reserved_port() as port, run_server(kind, target, env=env, port=port) as run:
        run.wait_ready()
        run.signal(signal.SIGTERM)
        _serves_while_stopping(run, port)
        _to_the_unit(run, signal.SIGINT)
        assert run.wait(timeout=20) == 0, run.log()


@pytest.mark.parametrize(("kind", "target"), WORKERS)
def test_the_delay_ends_by_itself_then_hypercorn_stops(kind: str, target: str) -> None:
    env = _options(ready_path="/readyz", shutdown_delay=1.0)
    with reserved_port() as port, run_server(kind, target, env=env, port=port) as run:
        run.wait_ready()
        run.signal(signal.SIGTERM)
        stopping = run.recorder.wait_for("STOPPING=1", timeout=10)
        assert stopping["EXTEND_TIMEOUT_USEC"] == str(int((1.0 + 5) * 1_000_000))
        assert run.wait(timeout=30) == 0, run.log()


@pytest.mark.parametrize(("kind", "target"), WORKERS)
def test_control_without_the_delay_hypercorn_stops_at_once(kind: str, target: str) -> None:
    with reserved_port() as port, run_server(kind, target, port=port) as run:
        run.wait_ready()
        _to_the_unit(run, signal.SIGTERM)
        run.wait(timeout=20)  # not LONG_DELAY: the server's own stop, at once
        with pytest.raises(OSError):  # nobody listens any more
            http_get(("127.0.0.1", port), "/", timeout=0.5)


SERVE = """\
import asyncio, sys
from hypercorn.asyncio import serve
from hypercorn.config import Config
from _asgi_fastapi import app
config = Config()
config.bind = [f"127.0.0.1:{sys.argv[1]}"]
asyncio.run(serve(app, config))
"""


def test_hypercorn_serve_in_one_process_is_delayed() -> None:
    # hypercorn.asyncio.serve(): its loop's own signal handler sets the stop event.
    env = _options(ready_path="/readyz", shutdown_delay=LONG_DELAY)
    with reserved_port() as port:
        argv = [sys.executable, "-c", SERVE, str(port)]
        with run_server("hypercorn-asyncio", env=env, argv=argv) as run:
            run.wait_ready()
            run.signal(signal.SIGTERM)
            _serves_while_stopping(run, port)
            run.signal(signal.SIGTERM)
            assert run.wait(timeout=20) == 0, run.log()


def test_a_worker_recycled_by_max_requests_is_not_delayed() -> None:
    # --max-requests ends a worker through another trigger (context.terminate): a restart
    # of one worker, not the service stopping, so it passes the gate with no delay.
    env = _options(ready_path="/readyz", shutdown_delay=LONG_DELAY)
    with reserved_port() as port:
        argv = [*server_command("hypercorn-asyncio", FASTAPI, port=port), "--max-requests", "1"]
        with run_server("hypercorn-asyncio", env=env, argv=argv) as run:
            first = run.wait_ready()
            for _ in range(2):  # hypercorn ends the worker once requests > max_requests
                assert http_get(("127.0.0.1", port), "/").status == 200
            second = run.recorder.wait_for(lambda m: m.get("READY") == "1" and m != first, 20)
            assert second != first  # within 20 s: not held for LONG_DELAY
            # The old worker's lifespan shutdown said STOPPING (here no SYSTEMD_EXEC_PID
            # names the parent, which would keep a worker quiet), but no delay began.
            assert not [
                m for m in run.recorder.messages if "EXTEND_TIMEOUT_USEC" in m and "STOPPING" in m
            ]
