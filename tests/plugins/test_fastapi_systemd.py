"""uvicorn + FastAPI + SystemdNotify under a real (private) systemd user manager.

The A-depends-on-B story: unit B serves; unit A (``After=``/``Requires=`` B) does one HTTP
GET with a 1 s timeout. With ``Type=notify`` and SystemdNotify, systemd starts A only once
B really accepts, so A succeeds every time; the same pair with ``Type=simple`` fails,
which proves the test can fail. And ``WatchdogSec=1``: an endpoint that blocks the event
loop for 3 s stops the pings, so systemd restarts B.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import time
from pathlib import Path

import pytest
from _asgi_servers import UVICORN_SUPERVISES_WORKERS
from _fastapi_units import run_pair, write_client_unit, write_server_unit
from _servers import http_get, reserved_port
from _systemd import UnitTimeout, UserManager

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(240)]


@pytest.mark.slow
def test_dependent_unit_always_reaches_a_notify_fastapi_unit(systemd: UserManager) -> None:
    with reserved_port() as port:
        server = write_server_unit(
            systemd, service_type="notify", bind=["--host", "127.0.0.1", "--port", str(port)]
        )
        client = write_client_unit(systemd, server, port)
        results = [run_pair(systemd, client, server) for _ in range(20)]
    assert results == ["success"] * 20, systemd.describe(client) + systemd.describe(server)


def test_same_pair_with_type_simple_fails(systemd: UserManager) -> None:
    # Proves the test above can fail: without READY, A starts as soon as B is forked.
    with reserved_port() as port:
        server = write_server_unit(
            systemd, service_type="simple", bind=["--host", "127.0.0.1", "--port", str(port)]
        )
        client = write_client_unit(systemd, server, port)
        results = [run_pair(systemd, client, server) for _ in range(3)]
    assert results == ["exit-code"] * 3, systemd.describe(client)


def test_notify_unit_shows_the_ready_status(systemd: UserManager) -> None:
    with reserved_port() as port:
        server = write_server_unit(
            systemd, service_type="notify", bind=["--host", "127.0.0.1", "--port", str(port)]
        )
        systemd.start_unit(server, wait_started=True, timeout=30)
        state = systemd.wait_for(server, ActiveState="active", SubState="running")
        assert (
            state["StatusText"] == f"Ready: listening on 127.0.0.1:{port} (pid {state['MainPID']})"
        )
        systemd.stop_units(server)
        state = systemd.show(server, "ActiveState", "Result", "StatusText")
        assert state["Result"] == "success"


def test_watchdog_restarts_a_blocked_event_loop(systemd: UserManager) -> None:
    uds = systemd.work_dir / f"wd-{os.getpid()}-{id(systemd)}.sock"
    server = write_server_unit(
        systemd,
        service_type="notify",
        bind=["--uds", str(uds)],
        extra="WatchdogSec=1\nRestart=on-watchdog\nRestartSec=0.2",
        env={"SDREADY_TEST_STARTUP_DELAY": "0"},
    )
    try:
        systemd.start_unit(server, wait_started=True, timeout=30)
        first = systemd.wait_for(server, ActiveState="active", NRestarts="0")
        # Healthy: pings from the loop keep it alive well past WatchdogSec.
        systemd.hold(server, 2.5, ActiveState="active", NRestarts="0")
        with contextlib.suppress(OSError, http.client.HTTPException):
            http_get(str(uds), "/block?s=3", timeout=5)  # killed mid-request: fine
        restarted = systemd.wait_for(
            server, lambda p: int(p["NRestarts"]) >= 1 and p["ActiveState"] == "active", timeout=20
        )
        assert restarted["MainPID"] != first["MainPID"]
    except UnitTimeout as exc:
        raise AssertionError(f"{exc}\n{systemd.describe(server)}") from None


@pytest.mark.skipif(not UVICORN_SUPERVISES_WORKERS, reason="uvicorn < 0.30 restarts no worker")
def test_uvicorn_worker_restart_does_not_stop_the_unit(systemd: UserManager) -> None:
    """--workers 2 with NotifyAccess=all: every worker may send READY (the first counts),
    and a worker that uvicorn's supervisor restarts must not send STOPPING=1, which would
    make systemd stop the whole unit and kill it after TimeoutStopSec."""
    with reserved_port() as port:
        server = write_server_unit(
            systemd,
            service_type="notify",
            bind=["--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            extra="NotifyAccess=all\nTimeoutStopSec=3",
        )
        try:
            systemd.start_unit(server, wait_started=True, timeout=40)
            state = systemd.wait_for(server, ActiveState="active", SubState="running")
            workers = _worker_pids(int(state["MainPID"]))
            assert len(workers) == 2, workers
            os.kill(workers[0], signal.SIGTERM)  # the supervisor starts a new one
            deadline = time.monotonic() + 60
            while True:  # active all along, until the new worker's READY status shows
                now = systemd.show(server, "ActiveState", "SubState", "StatusText")
                assert (now["ActiveState"], now["SubState"]) == ("active", "running"), now
                pid = now["StatusText"].rpartition("(pid ")[2].rstrip(")")
                if now["StatusText"].startswith("Ready: listening on 127.0.0.1:") and (
                    pid.isdigit() and int(pid) not in workers
                ):
                    break
                assert time.monotonic() < deadline, now
                time.sleep(0.1)
            systemd.hold(server, 1.5, ActiveState="active", SubState="running")
        except UnitTimeout as exc:
            raise AssertionError(f"{exc}\n{systemd.describe(server)}") from None


def _worker_pids(main_pid: int) -> list[int]:
    """uvicorn's worker processes (multiprocessing spawn children of the supervisor)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == main_pid and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)
