"""SystemdMiddleware under real servers in child processes, a NotifyRecorder as systemd.

What the servers do, measured (and why the middleware waits in the background):
uvicorn binds only after lifespan startup; with ``--workers`` the parent binds without
listening and each worker listens after its own lifespan (the first listen makes the shared
socket accept); hypercorn's parent binds and its asyncio worker listens after lifespan,
while its trio worker listens before loading the app; granian's worker binds after
lifespan; gunicorn's arbiter binds and listens before forking uvicorn workers.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator

import pytest
from _asgi_servers import (
    SERVERS,
    UVICORN_SUPERVISES_WORKERS,
    ServerRun,
    ready_then_get,
    run_server,
)
from _servers import http_get, rounds
from _systemd import wait_until
from sdready import texts
from sdready.testing import NotifyMessage

pytestmark = pytest.mark.timeout(300)

TCP_SERVERS = [s for s in SERVERS if s not in ("uvicorn-uds", "uvicorn-fd")]
REPETITIONS = rounds(30)
PARALLEL = 3  # child servers at once: bounded, and each has its own port and recorder
SLOW_STARTUP = {"SDREADY_TEST_STARTUP_DELAY": "0.3"}


def story(messages: list[NotifyMessage], pid: int | None) -> list[str]:
    """What one process told systemd, as ``READY``/``STOPPING`` markers and STATUS texts."""
    told = []
    for message in messages:
        if pid is not None and message.pid != pid:
            continue
        if message.get("READY") == "1":
            told.append("READY")
        if message.get("STOPPING") == "1":
            told.append("STOPPING")
        if "STATUS" in message:
            told.append(message["STATUS"])
    return told


def our_pids(run: ServerRun) -> list[int]:
    """Pids that sent our messages (gunicorn's arbiter sends its own READY: not ours)."""
    pids: list[int] = []
    for message in run.recorder.messages:
        if message.get("STATUS") == texts.STARTING and message.pid not in pids:
            assert message.pid is not None
            pids.append(message.pid)
    return pids


@pytest.mark.slow
@pytest.mark.parametrize("kind", SERVERS)
def test_connect_at_ready_always_succeeds(kind: str) -> None:
    """The moment READY arrives a client connects and GETs, every round (30), 0.3 s startup."""

    def once(_: int) -> tuple[int, str]:
        with run_server(kind, env=SLOW_STARTUP) as run:
            try:
                _, status, body = ready_then_get(run)
            finally:
                run.kill()  # how it ends is another test's business: save the shutdown time
            return status, body

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(once, range(REPETITIONS)))
    assert results == [(200, "ok")] * REPETITIONS
    assert time.monotonic() - started < 240


@pytest.mark.parametrize("kind", SERVERS)
def test_story_from_start_to_stop(kind: str) -> None:
    if kind == "uvicorn-workers" and not UVICORN_SUPERVISES_WORKERS:
        # Under load a worker's story came incomplete in 2 of 10 runs on 0.23, never on 0.55.
        pytest.skip("uvicorn < 0.30's --workers supervisor: a worker's story is not reliable")
    with run_server(kind, env=SLOW_STARTUP) as run:
        ready, status, _ = ready_then_get(run)
        assert status == 200
        address = run.address_of(ready)
        _, pid_text = http_get(address, "/pid", timeout=2.0)
        # Each of uvicorn's two workers says READY on its own: the stop comes after both
        # (stopped before, the slower one's story rightly ends without READY).
        workers = 2 if kind == "uvicorn-workers" else 1
        wait_until(
            lambda: len({m.pid for m in run.recorder.messages if m.get("READY") == "1"}) >= workers,
            timeout=30,
            message=run.log,
        )
        assert run.stop() is not None, run.log()
        run.recorder.barrier()  # everything the server sent is recorded
        messages = run.recorder.messages
    pids = our_pids(run)
    assert pids, messages
    if kind in ("uvicorn", "uvicorn-uds", "uvicorn-fd"):
        assert pids == [run.process.pid]  # the main process itself: NotifyAccess=main will do
    else:
        assert run.process.pid not in pids  # a worker: the unit needs NotifyAccess=all
    assert int(pid_text) in pids
    for pid in pids:
        told = story(messages, pid)
        listening = told[told.index("READY") + 1]
        assert told == [
            texts.STARTING,
            texts.WAITING,
            "READY",
            listening,
            "STOPPING",
            texts.STOPPING,
        ]
        assert listening.startswith("Ready: listening on ") and listening.endswith(f"(pid {pid})")
    if kind == "uvicorn-uds":
        assert f"listening on {run.uds} (pid" in ready["STATUS"]
    if kind == "uvicorn-fd":
        host, port = run.extra["address"][1]  # type: ignore[index]
        assert f"listening on {host}:{port} (pid" in ready["STATUS"]


def test_uvicorn_workers_each_tell_their_story_notify_access_all() -> None:
    """--workers 2: both workers send Starting…READY; the main pid sends nothing.

    systemd accepts a worker's messages only with NotifyAccess=all: the default
    (NotifyAccess=main) would drop them all and the unit would time out starting.
    The first READY is the truthful one: the shared socket accepts from the first listen.
    """
    with run_server("uvicorn-workers", env=SLOW_STARTUP) as run:
        first, status, _ = ready_then_get(run)
        assert status == 200
        run.recorder.wait_for(lambda m: m.get("READY") == "1" and m.pid != first.pid, 10)
        assert run.stop() is not None
        time.sleep(0.2)
    pids = our_pids(run)
    assert len(pids) == 2 and run.process.pid not in pids
    assert all(m.pid != run.process.pid for m in run.recorder.messages)
    statuses = [m["STATUS"] for m in run.recorder.messages if m.get("READY") == "1"]
    assert len(statuses) == 2
    assert statuses[0].split(" (pid")[0] == statuses[1].split(" (pid")[0]  # one shared socket


def test_auxiliary_listener_is_not_announced() -> None:
    with run_server("uvicorn", env={**SLOW_STARTUP, "SDREADY_TEST_AUX_LISTENER": "1"}) as run:
        ready, status, _ = ready_then_get(run)
    assert status == 200
    # One address only: the server's; the app's "metrics port" opened during startup is not.
    assert "," not in ready["STATUS"] and " and " not in ready["STATUS"]


@pytest.mark.parametrize("kind", SERVERS)
def test_startup_failure_means_no_ready(kind: str) -> None:
    with run_server(kind, env={"SDREADY_TEST_FAIL": "database unreachable"}) as run:
        failed = run.recorder.wait_for(_failed_status, 20)
        assert failed["STATUS"] == "Startup failed: RuntimeError: database unreachable"
        if kind == "uvicorn-workers" and not UVICORN_SUPERVISES_WORKERS:
            run.process.terminate()  # an old supervisor outlives its failed workers
        run.process.wait(20)  # every server gives up (hypercorn with status 0, but it does)
        time.sleep(0.2)
        messages = run.recorder.messages
    assert not [m for m in messages if m.get("STATUS", "").startswith("Ready")]
    # gunicorn's arbiter sends its own premature READY without the gunicorn plugin: not ours
    assert not [m for m in messages if m.get("READY") == "1" and m.pid != run.process.pid]


def _failed_status(message: NotifyMessage) -> bool:
    return (message.get("STATUS") or "").startswith("Startup failed")


def test_startup_failure_with_errno() -> None:
    with run_server("uvicorn", env={"SDREADY_TEST_FAIL_ERRNO": "13"}) as run:
        failed = run.recorder.wait_for("ERRNO", 20)
        run.process.wait(20)
    assert failed["ERRNO"] == "13"
    assert failed["STATUS"] == "Startup failed: PermissionError: [Errno 13] test failure"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port certainly in use: we listen on it for the whole test."""
    blocker = socket.socket()
    try:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        yield blocker.getsockname()[1]
    finally:
        blocker.close()


@pytest.mark.parametrize("kind", TCP_SERVERS)
def test_port_in_use_means_no_ready(kind: str, busy_port: int) -> None:
    with run_server(kind, port=busy_port) as run:
        # gunicorn retries the bind for ~5 s before giving up; the others fail at once.
        returncode = run.process.wait(20)
        time.sleep(0.2)
        messages = run.recorder.messages
    assert returncode != 0 or kind.startswith("hypercorn")
    assert not [m for m in messages if m.get("READY") == "1" and m.pid != run.process.pid]
    if kind == "uvicorn":
        # lifespan ran, the bind failed, lifespan shutdown ran: the waiter was cancelled.
        assert story(messages, None) == [texts.STARTING, texts.WAITING, "STOPPING", texts.STOPPING]
        assert "Task was destroyed" not in run.log()


@pytest.mark.parametrize(
    ("kind", "target"),
    [(kind, "_asgi_apps:app") for kind in SERVERS]
    + [("uvicorn", "_asgi_starlette:app"), ("uvicorn", "_asgi_fastapi:app")],
)
def test_http_and_websocket_traffic_unaffected(kind: str, target: str) -> None:
    from websockets.sync.client import connect, unix_connect

    with run_server(kind, target) as run:
        ready, status, body = ready_then_get(run)
        assert status == 200 and body in ("ok", '"ok"')
        address = run.address_of(ready)
        for _ in range(20):
            assert http_get(address, timeout=2.0)[0] == 200
        if isinstance(address, str):
            ws = unix_connect(address, "ws://localhost/ws", open_timeout=5)
        else:
            host, port = address
            ws = connect(f"ws://{host}:{port}/ws", open_timeout=5)
        with ws:
            for text in ("hello", "systemd", "é" * 100):
                ws.send(text)
                assert ws.recv(timeout=5) == text


@pytest.mark.parametrize("kind", ["uvicorn", "hypercorn-trio", "granian"])
def test_watchdog_pings_stop_while_the_loop_is_blocked(kind: str) -> None:
    # No WATCHDOG_PID: with it, only the pid systemd started may ping, and these are workers.
    env = {"WATCHDOG_USEC": "400000"}
    with run_server(kind, env=env) as run:
        ready, _, _ = ready_then_get(run)
        address = run.address_of(ready)
        time.sleep(0.6)
        before = len(run.recorder.values("WATCHDOG"))
        assert before >= 2
        started = time.monotonic()
        assert http_get(address, "/block?s=1.2", timeout=5)[0] == 200
        ended = time.monotonic()
        time.sleep(0.5)
        run.recorder.barrier()  # every ping sent so far is recorded
        pings = [m.time for m in run.recorder.messages if "WATCHDOG" in m]
    during = [t for t in pings if started + 0.25 < t < ended - 0.1]
    assert during == []  # the loop was blocked: no pings, so systemd would restart it
    assert any(t > ended for t in pings)  # and they resume


# -- gunicorn: the arbiter speaks for the workers ------------------------------------------

_POP_NOTIFY_SOCKET = """
import os


def post_fork(server, worker):
    os.environ.pop("NOTIFY_SOCKET", None)
"""


def test_gunicorn_workers_without_notify_socket_stay_silent() -> None:
    """What the gunicorn plugin arranges (workers lose NOTIFY_SOCKET): the middleware is inert."""

    def write_config(workdir: object) -> None:
        with open(os.path.join(str(workdir), "conf.py"), "w") as config:
            config.write(_POP_NOTIFY_SOCKET)

    argv = [
        sys.executable, "-m", "gunicorn", "-c", "conf.py", "_asgi_apps:app", "--bind",
        "127.0.0.1:0", "--workers", "2", "--worker-class", "uvicorn_worker.UvicornWorker",
    ]  # fmt: skip
    with run_server("gunicorn-uvicorn", argv=argv, prepare=write_config) as run:
        booted = run.recorder.wait_for("READY=1", 20)  # gunicorn's own, from the arbiter
        assert booted.pid == run.process.pid
        _wait_for_log(run, "Application startup complete", count=2)
        run.stop()
        time.sleep(0.2)
        assert {m.pid for m in run.recorder.messages} == {run.process.pid}


def test_gunicorn_plugin_workers_stay_silent() -> None:
    pytest.importorskip("sdready.plugins.gunicorn", reason="the gunicorn plugin has not landed")
    argv = [
        sys.executable, "-m", "gunicorn", "-c", "python:sdready.plugins.gunicorn",
        "_asgi_apps:app", "--bind", "127.0.0.1:0", "--workers", "2",
        "--worker-class", "uvicorn_worker.UvicornWorker",
    ]  # fmt: skip
    with run_server("gunicorn-uvicorn", argv=argv, env=SLOW_STARTUP) as run:
        ready = run.recorder.wait_for("READY=1", 20)
        assert ready.pid == run.process.pid  # the arbiter, once a worker really serves
        _wait_for_log(run, "Application startup complete", count=2)
        time.sleep(0.3)
        assert {m.pid for m in run.recorder.messages} == {run.process.pid}
        os.kill(run.process.pid, signal.SIGTERM)
        run.process.wait(15)
        assert {m.pid for m in run.recorder.messages} == {run.process.pid}


def _wait_for_log(run: ServerRun, text: str, *, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while run.log().count(text) < count:
        assert time.monotonic() < deadline, run.log()
        time.sleep(0.05)


@pytest.mark.parametrize("kind", ["uvicorn", "hypercorn-asyncio", "granian"])
def test_app_without_lifespan_support_gets_ready(kind: str) -> None:
    # Like Django's ASGI handler: it raises for the lifespan scope. The middleware speaks
    # lifespan for it (uvicorn runs with --lifespan on here, which would otherwise exit).
    with run_server(kind, "_asgi_apps:no_lifespan") as run:
        ready, status, body = ready_then_get(run)
        assert (status, body) == (200, "ok")
        assert run.stop() is not None
        time.sleep(0.2)
    told = story(run.recorder.messages, ready.pid)
    assert told[:3] == [texts.STARTING, texts.WAITING, "READY"] and told[-1] == texts.STOPPING
