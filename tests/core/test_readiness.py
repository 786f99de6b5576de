"""Readiness: the Starting → Waiting → READY story every plugin and the CLI tell."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from sdready import Notifier, Readiness, ReadyOptions, texts
from sdready.testing import NotifyRecorder


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def tcp_listener(opened: list[socket.socket], *, listen: bool = True) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    if listen:
        sock.listen()
    opened.append(sock)
    return sock


def address_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()
    return f"{host}:{port}"


# -- inert outside systemd -----------------------------------------------------------------------


def test_inert_without_notify_socket(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    readiness = Readiness()
    assert not readiness.enabled
    readiness.starting()
    readiness.waiting()
    assert readiness.baseline is None  # not even a snapshot is taken
    assert readiness.announce_blocking() is False
    assert asyncio.run(readiness.announce()) is False
    readiness.startup_failed("boom")
    readiness.stopping()
    assert [r for r in caplog.records if r.levelno > logging.DEBUG] == []


# -- the story -----------------------------------------------------------------------------------


def test_blocking_story_ignores_auxiliary_listeners(
    notify_socket: NotifyRecorder, sockets: list[socket.socket]
) -> None:
    readiness = Readiness(ReadyOptions(ready_timeout=10))
    readiness.starting()
    metrics = tcp_listener(sockets)  # opened by the app's startup code: not the server
    readiness.waiting()
    server = tcp_listener(sockets, listen=False)
    timer = threading.Timer(0.2, server.listen)
    timer.start()
    try:
        assert readiness.announce_blocking() is True
    finally:
        timer.join()
    ready = notify_socket.wait_for("READY=1", 2)
    assert ready["STATUS"] == texts.READY.format(addresses=address_of(server), pid=os.getpid())
    assert address_of(metrics) not in ready["STATUS"]
    assert notify_socket.statuses == [texts.STARTING, texts.WAITING, ready["STATUS"]]
    assert [listener.address for listener in readiness.listeners] == [address_of(server)]
    with socket.create_connection(server.getsockname(), timeout=1):
        pass  # READY meant a client could connect


def test_async_story(notify_socket: NotifyRecorder, sockets: list[socket.socket]) -> None:
    async def main() -> bool:
        readiness = Readiness(ReadyOptions(ready_timeout=10))
        readiness.starting()
        readiness.waiting()
        server = tcp_listener(sockets, listen=False)
        asyncio.get_running_loop().call_later(0.1, server.listen)
        return await readiness.announce()

    assert asyncio.run(main()) is True
    notify_socket.wait_for("READY=1", 2)


def test_inherited_listener_counts_at_once(
    notify_socket: NotifyRecorder, sockets: list[socket.socket]
) -> None:
    inherited = tcp_listener(sockets)  # as from systemd socket activation or --fd
    readiness = Readiness(ReadyOptions(ready_timeout=5))
    readiness.starting()
    readiness.waiting()
    started = time.monotonic()
    assert readiness.announce_blocking() is True
    assert time.monotonic() - started < 4  # did not wait for a new socket until the timeout
    assert address_of(inherited) in notify_socket.wait_for("READY=1", 2)["STATUS"]


def test_expect_selects_the_named_listener(
    notify_socket: NotifyRecorder, sockets: list[socket.socket]
) -> None:
    other = tcp_listener(sockets)
    wanted = tcp_listener(sockets)
    readiness = Readiness(ReadyOptions(ready_timeout=5, expect=wanted.getsockname()[1]))
    readiness.starting()
    readiness.waiting()
    assert readiness.announce_blocking()
    status = notify_socket.wait_for("READY=1", 2)["STATUS"]
    assert address_of(wanted) in status and address_of(other) not in status


# -- failures and stops --------------------------------------------------------------------------


def test_startup_failure_reports_and_never_sends_ready(
    notify_socket: NotifyRecorder, sockets: list[socket.socket]
) -> None:
    readiness = Readiness()
    readiness.starting()
    readiness.startup_failed("database unreachable:\n  connection refused", errno=111)
    tcp_listener(sockets)
    assert readiness.announce_blocking() is False
    assert asyncio.run(readiness.announce()) is False
    failed = notify_socket.wait_for("ERRNO", 2)
    assert failed["ERRNO"] == "111"
    assert failed["STATUS"] == "Startup failed: database unreachable: connection refused"
    assert notify_socket.values("READY") == []


def test_stop_event_abandons_the_wait(notify_socket: NotifyRecorder) -> None:
    readiness = Readiness(ReadyOptions(ready_timeout=30))
    readiness.starting()
    readiness.waiting()
    stop = threading.Event()
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(readiness.announce_blocking(stop)))
    waiter.start()
    time.sleep(0.1)
    stop.set()
    readiness.stopping()
    waiter.join(5)
    assert result == [False]
    notify_socket.wait_for("STOPPING=1", 2)
    assert notify_socket.values("READY") == []


def test_cancelled_async_wait_sends_nothing(notify_socket: NotifyRecorder) -> None:
    async def main() -> None:
        readiness = Readiness(ReadyOptions(ready_timeout=30))
        readiness.starting()
        readiness.waiting()
        task = asyncio.create_task(readiness.announce())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        readiness.stopping()

    asyncio.run(main())
    notify_socket.wait_for("STOPPING=1", 2)
    assert notify_socket.values("READY") == []


@pytest.mark.parametrize("policy", ["warn", "fail", "ready"])
def test_timeout_policies(
    policy: str, notify_socket: NotifyRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    readiness = Readiness(ReadyOptions(ready_timeout=0.2, on_timeout=policy))  # type: ignore[arg-type]
    readiness.starting()
    readiness.waiting()
    sent = readiness.announce_blocking()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    pid = os.getpid()
    if policy == "fail":
        assert sent is False
        notify_socket.wait_for(f"STATUS={texts.TIMEOUT_FAIL.format(timeout=0.2)}", 2)
        assert notify_socket.values("READY") == []
        assert errors and "not sending READY" in errors[0].getMessage()
    elif policy == "warn":
        assert sent is True
        message = notify_socket.wait_for("READY=1", 2)
        assert message["STATUS"] == texts.TIMEOUT_WARN.format(timeout=0.2, pid=pid)
        assert errors and "no listening socket was seen" in errors[0].getMessage()
    else:
        assert sent is True
        assert notify_socket.wait_for("READY=1", 2)["STATUS"] == texts.READY_UNCHECKED.format(
            pid=pid
        )
        assert errors == []


def test_ready_is_sent_once(notify_socket: NotifyRecorder, sockets: list[socket.socket]) -> None:
    tcp_listener(sockets)
    readiness = Readiness(ReadyOptions(notifier=Notifier()))
    readiness.starting()
    assert readiness.announce_blocking()
    assert readiness.announce_blocking() is False
    notify_socket.wait_for("READY=1", 2)
    time.sleep(0.05)
    assert notify_socket.values("READY") == ["1"]


def test_format_addresses() -> None:
    assert texts.format_addresses([]) == "(no socket)"
    assert texts.format_addresses(["a", "b", "a"]) == "a, b"
    assert texts.format_addresses([str(i) for i in range(6)]) == "0, 1, 2, 3 and 2 more"


# -- the two moments that decide which socket is the server's --------------------------------


def test_a_bound_socket_that_listens_later_is_the_servers(
    notify_socket: NotifyRecorder, sockets: list[socket.socket]
) -> None:
    # uvicorn --workers: the parent binds without listening; another worker's listen() makes
    # the shared socket accept before this worker's own wait begins.
    shared = tcp_listener(sockets, listen=False)
    readiness = Readiness(ReadyOptions(ready_timeout=5))
    readiness.starting()
    assert readiness.baseline is not None and readiness.baseline.pending
    shared.listen()  # "another worker"
    readiness.waiting()
    started = time.monotonic()
    assert readiness.announce_blocking() is True
    assert time.monotonic() - started < 4  # selected at once, not taken for an auxiliary
    assert address_of(shared) in notify_socket.wait_for("READY=1", 2)["STATUS"]


def test_the_wait_begins_at_waiting_not_when_the_waiter_runs(
    notify_socket: NotifyRecorder, sockets: list[socket.socket]
) -> None:
    readiness = Readiness(ReadyOptions(ready_timeout=5))
    readiness.starting()
    metrics = tcp_listener(sockets)  # the app's own, during startup
    readiness.waiting()
    server = tcp_listener(sockets)  # listens before the waiter thread gets to run
    assert readiness.announce_blocking() is True
    status = notify_socket.wait_for("READY=1", 2)["STATUS"]
    assert address_of(server) in status and address_of(metrics) not in status


def test_a_worker_sends_no_stopping(
    notify_socket: NotifyRecorder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(os.getpid() + 1))
    readiness = Readiness()
    readiness.stopping()
    Notifier().barrier(2)
    assert notify_socket.values("STOPPING") == []
    assert any("is a worker" in r.getMessage() for r in caplog.records)
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(os.getpid()))
    Readiness().stopping()
    notify_socket.wait_for("STOPPING=1", 2)
