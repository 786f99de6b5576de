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
    assert readiness.waiter.baseline is None  # not even a snapshot is taken
    assert readiness.waiter.announce_blocking() is False
    assert asyncio.run(readiness.waiter.announce()) is False
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
        assert readiness.waiter.announce_blocking() is True
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
        return await readiness.waiter.announce()

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
    assert readiness.waiter.announce_blocking() is True
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
    assert readiness.waiter.announce_blocking()
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
    assert readiness.waiter.announce_blocking() is False
    assert asyncio.run(readiness.waiter.announce()) is False
    failed = notify_socket.wait_for("ERRNO", 2)
    assert failed["ERRNO"] == "111"
    assert failed["STATUS"] == "Startup failed: database unreachable: connection refused"
    notify_socket.barrier()  # a READY the waits sent after the failure is recorded too
    assert notify_socket.values("READY") == []


@pytest.mark.parametrize("stopped", [True, False])
def test_stop_event_abandons_the_wait(
    notify_socket: NotifyRecorder, sockets: list[socket.socket], stopped: bool
) -> None:
    readiness = Readiness(ReadyOptions(ready_timeout=30))
    readiness.starting()
    readiness.waiting()
    stop = threading.Event()
    result: list[bool] = []
    waiter = threading.Thread(
        target=lambda: result.append(readiness.waiter.announce_blocking(stop))
    )
    waiter.start()
    if stopped:  # the stop event alone ends the wait: no stopping() call helps it
        stop.set()
        waiter.join(5)
        assert result == [False] and not waiter.is_alive()
    tcp_listener(sockets)  # the server listens only now
    waiter.join(5)
    notify_socket.barrier()
    # Control: the same wait, not stopped, sends READY for this very listener.
    assert notify_socket.values("READY") == ([] if stopped else ["1"])
    assert result == [not stopped]


@pytest.mark.parametrize("cancelled", [True, False])
def test_cancelled_async_wait_sends_nothing(
    notify_socket: NotifyRecorder, sockets: list[socket.socket], cancelled: bool
) -> None:
    async def main() -> None:
        readiness = Readiness(ReadyOptions(ready_timeout=30))
        readiness.starting()
        readiness.waiting()
        task = asyncio.create_task(readiness.waiter.announce())
        await asyncio.sleep(0)  # the wait has begun
        if cancelled:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        tcp_listener(sockets)  # the server listens only now
        if not cancelled:  # control: the same wait, not cancelled, sends READY for it
            assert await asyncio.wait_for(task, 10) is True

    asyncio.run(main())
    notify_socket.barrier()
    assert notify_socket.values("READY") == ([] if cancelled else ["1"])


@pytest.mark.parametrize("policy", ["warn", "fail", "ready"])
def test_timeout_policies(
    policy: str, notify_socket: NotifyRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    readiness = Readiness(ReadyOptions(ready_timeout=0.2, on_timeout=policy))  # type: ignore[arg-type]
    readiness.starting()
    readiness.waiting()
    sent = readiness.waiter.announce_blocking()
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
    assert readiness.waiter.announce_blocking()
    assert readiness.waiter.announce_blocking() is False
    notify_socket.wait_for("READY=1", 2)
    notify_socket.barrier()
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
    assert readiness.waiter.baseline is not None and readiness.waiter.baseline.pending
    shared.listen()  # "another worker"
    readiness.waiting()
    started = time.monotonic()
    assert readiness.waiter.announce_blocking() is True
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
    assert readiness.waiter.announce_blocking() is True
    status = notify_socket.wait_for("READY=1", 2)["STATUS"]
    assert address_of(server) in status and address_of(metrics) not in status


def test_a_worker_sends_no_stopping(
    notify_socket: NotifyRecorder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(os.getpid() + 1))
    readiness = Readiness()
    readiness.stopping()
    notify_socket.barrier()
    assert notify_socket.values("STOPPING") == []
    assert any("is a worker" in r.getMessage() for r in caplog.records)
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(os.getpid()))
    Readiness().stopping()
    notify_socket.wait_for("STOPPING=1", 2)


# -- the engine's API for front ends that learn readiness themselves (gunicorn) ---------------


def test_pushed_ready_once_per_generation(notify_socket: NotifyRecorder) -> None:
    readiness = Readiness(ReadyOptions(notifier=Notifier()))
    readiness.starting()
    assert readiness.ready("Ready: 1 worker")
    assert not readiness.ready("Ready: 2 workers")  # same generation: a STATUS job at most
    readiness.reloading("Reloading: generation 2")
    assert readiness.generation == 2 and not readiness.ready_sent
    assert readiness.ready("Ready: generation 2")
    notify_socket.barrier()
    assert notify_socket.values("READY") == ["1", "1"]
    reloading = [m for m in notify_socket.messages if "RELOADING" in m.fields]
    assert len(reloading) == 1 and int(reloading[0]["MONOTONIC_USEC"]) > 0
    assert reloading[0].time < notify_socket.messages[-1].time


class _PhaseAtSend(Notifier):
    """A real notifier that also notes the engine's phase when each READY leaves."""

    def __init__(self) -> None:
        super().__init__()
        self.engine: Readiness | None = None
        self.phases: list[str] = []

    def ready(self, status: str | None = None) -> bool:
        assert self.engine is not None
        self.phases.append(self.engine.phase.value)
        return super().ready(status)


def test_the_phase_is_ready_before_ready_leaves(notify_socket: NotifyRecorder) -> None:
    # A probe asked right after systemd got READY=1 must answer 200: CI once saw 503
    # "waiting" there, when the phase moved only after the datagram.
    notifier = _PhaseAtSend()
    readiness = Readiness(ReadyOptions(notifier=notifier))
    notifier.engine = readiness
    readiness.starting()
    assert readiness.ready("Ready: 1 worker")
    assert notifier.phases == ["ready"]
    refused = Readiness(ReadyOptions(notifier=Notifier()))
    refused.starting()
    with pytest.raises(ValueError):
        refused.ready("two\nlines")
    assert refused.phase.value == "starting"  # a text the protocol refuses moves nothing


def test_fail_policy_lets_a_later_push_send_ready(notify_socket: NotifyRecorder) -> None:
    readiness = Readiness(ReadyOptions(notifier=Notifier(), on_timeout="fail"))
    readiness.starting()
    assert not readiness.timed_out("no worker could serve")
    assert not readiness.awaiting_timeout  # applied once per generation
    assert not readiness.timed_out("again")
    assert readiness.ready("Ready: 1 worker")  # the workers serve after all: READY is true
    notify_socket.barrier()
    assert notify_socket.values("READY") == ["1"]


def test_abandon_vetoes_ready(notify_socket: NotifyRecorder, sockets: list[socket.socket]) -> None:
    tcp_listener(sockets)
    readiness = Readiness(ReadyOptions(notifier=Notifier(), on_timeout="ready"))
    readiness.starting()
    readiness.abandon("the process will never serve")
    assert readiness.closed
    assert not readiness.waiter.announce_blocking()
    assert not readiness.ready("Ready")
    assert not readiness.timed_out("late")
    notify_socket.barrier()
    assert notify_socket.values("READY") == []


def test_a_successor_takes_over_and_its_predecessor_stays_quiet(
    notify_socket: NotifyRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_main = os.getpid() + 1
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(old_main))  # gunicorn's USR2 child
    successor = Readiness(ReadyOptions(notifier=Notifier()))
    successor.took_over(old_main)
    assert not successor.is_main
    assert successor.ready("Ready: generation 1")
    assert successor.is_main
    ready = notify_socket.wait_for("READY=1", 2)
    assert ready["MAINPID"] == str(os.getpid())
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(os.getpid()))  # the old master, replaced
    predecessor = Readiness(ReadyOptions(notifier=Notifier()))
    predecessor.handed_over()
    assert not predecessor.stopping()
    assert successor.stopping()
    notify_socket.barrier()
    assert notify_socket.values("STOPPING") == ["1"]


def test_a_status_is_sent_once_and_never_after_stopping(notify_socket: NotifyRecorder) -> None:
    readiness = Readiness(ReadyOptions(notifier=Notifier()))
    assert readiness.status("Booting workers (1/2)")
    assert not readiness.status("Booting workers (1/2)")
    readiness.stopping()
    assert not readiness.status("Booting workers (2/2)")


def test_step_drives_a_wait_over_another_source(
    notify_socket: NotifyRecorder, sockets: list[socket.socket]
) -> None:
    # sdready exec's shape: its own loop calls step(); the source is not this process's walk.
    from sdready import listening_sockets

    seen: list[socket.socket] = []

    def source() -> list[object]:
        inodes = {os.fstat(s.fileno()).st_ino for s in seen}
        return [item for item in listening_sockets() if item.inode in inodes]

    tcp_listener(sockets)  # listens in this process, but the source does not show it
    readiness = Readiness(ReadyOptions(notifier=Notifier()), source=source)  # type: ignore[arg-type]
    readiness.waiting()
    delays = [readiness.waiter.step() for _ in range(3)]
    assert all(delay is not None and delay >= 0 for delay in delays)
    shown = tcp_listener(sockets)
    seen.append(shown)
    for _ in range(1000):
        delay = readiness.waiter.step()
        if delay is None:
            break
        time.sleep(delay)
    assert readiness.ready_sent
    assert [str(item) for item in readiness.listeners] == [address_of(shown)]
    assert notify_socket.wait_for("READY=1", 2)["STATUS"].startswith(
        f"Ready: listening on {address_of(shown)}"
    )


def test_accepts_early_switches_auto_to_an_http_probe(
    notify_socket: NotifyRecorder, sockets: list[socket.socket]
) -> None:
    # A socket that accepts before anyone serves (werkzeug's reloader watcher): the hook says
    # so, and READY waits for an HTTP answer that never comes. The control, without the hook,
    # takes the kernel's word.
    def story(hook: object) -> Readiness:
        readiness = Readiness(
            ReadyOptions(notifier=Notifier(), probe="auto", ready_timeout=0.5, on_timeout="fail"),
            accepts_early=hook,  # type: ignore[arg-type]
        )
        readiness.starting()
        readiness.waiting()
        listener = tcp_listener(sockets)  # the server's: opened after startup, nobody serves
        readiness.waiter.announce_blocking()
        listener.close()
        return readiness

    assert not story(lambda listeners: "nobody serves it yet").ready_sent
    assert story(None).ready_sent
    notify_socket.barrier()
    assert len(notify_socket.values("READY")) == 1


def test_failure_status_is_one_short_line_with_the_errno_of_its_cause(
    notify_socket: NotifyRecorder,
) -> None:
    class DriverError(Exception):
        pass

    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as exc:
            raise DriverError("could not connect:\n" + "detail " * 100) from exc
    except DriverError as error:
        failure = error
    readiness = Readiness()
    readiness.starting()
    readiness.startup_failed(failure)
    message = notify_socket.wait_for("ERRNO", 2)
    assert message["ERRNO"] == "111"  # from the OSError the driver's error was raised from
    assert message["STATUS"].startswith("Startup failed: DriverError: could not connect: ")
    assert len(message["STATUS"]) <= texts.STATUS_BUDGET and message["STATUS"].endswith("…")
    # Control: an error with no OSError among its causes sends no ERRNO.
    other = Readiness()
    other.starting()
    other.startup_failed(RuntimeError("boom"))
    notify_socket.barrier()
    failed = [m for m in notify_socket if m.get("STATUS") == "Startup failed: RuntimeError: boom"]
    assert len(failed) == 1 and "ERRNO" not in failed[0]


def test_a_traceback_becomes_its_error_line() -> None:
    traceback_text = (
        "Traceback (most recent call last):\n"
        '  File "app.py", line 3, in startup\n'
        "    raise RuntimeError('no config')\n"
        "    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        "RuntimeError: no config\n"
    )
    assert texts.error_line(traceback_text) == "RuntimeError: no config"
    assert texts.one_line(traceback_text).count("^") > 0  # control: flattening alone keeps it
