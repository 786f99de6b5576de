"""Watchdog runners against a real notify socket."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time

import pytest
from sdready import Notifier, Watchdog, watchdog_loop
from sdready.testing import NotifyRecorder


def ping_times(recorder: NotifyRecorder) -> list[float]:
    return [m.time for m in recorder.messages if m.text == "WATCHDOG=1"]


def test_thread_pings_at_half_the_period(notify_socket: NotifyRecorder) -> None:
    with Watchdog(interval=0.2) as dog:
        assert dog.running
        notify_socket.wait_for_count(5, timeout=5)
    assert not dog.running
    times = ping_times(notify_socket)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.05 < gap < 0.5 for gap in gaps), gaps  # nominal 0.1 s; sanity, not a benchmark
    notify_socket.barrier()
    assert not [m for m in notify_socket.messages if m.text == "WATCHDOG=trigger"]


def test_thread_reads_watchdog_usec(
    notify_socket: NotifyRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    dog = Watchdog()
    assert dog.interval == pytest.approx(0.2)
    with dog:
        notify_socket.wait_for("WATCHDOG=1", 2)


def test_no_thread_when_the_watchdog_is_off(
    notify_socket: NotifyRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    before = threading.active_count()
    with Watchdog() as dog:
        assert not dog.enabled and not dog.running
        assert threading.active_count() == before


def test_no_thread_without_a_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    with Watchdog() as dog:
        assert not dog.running


def test_health_gates_each_ping(
    notify_socket: NotifyRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    healthy = threading.Event()

    def health() -> bool:
        if healthy.is_set():
            return True
        raise ConnectionError("database down")

    with Watchdog(interval=0.1, health=health):
        time.sleep(0.3)
        notify_socket.barrier()  # every ping sent so far is recorded
        assert ping_times(notify_socket) == []
        healthy.set()
        notify_socket.wait_for("WATCHDOG=1", 2)
    assert any("database down" in r.getMessage() and r.levelname == "DEBUG" for r in caplog.records)


@pytest.mark.parametrize("healthy", [False, True])
def test_falsy_health_skips(notify_socket: NotifyRecorder, healthy: bool) -> None:
    with Watchdog(interval=0.1, health=lambda: healthy):
        time.sleep(0.3)  # six ping periods
    notify_socket.barrier()  # every ping sent is recorded
    # Control: the same pinger with a passing check pings in that time.
    assert (len(ping_times(notify_socket)) >= 2) is healthy


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Watchdog(Notifier("/x"), interval=0)


def test_async_loop_pings_from_the_event_loop(notify_socket: NotifyRecorder) -> None:
    async def main() -> None:
        task = asyncio.create_task(watchdog_loop(interval=0.1))
        await asyncio.sleep(0.45)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    notify_socket.barrier()
    assert 3 <= len(ping_times(notify_socket)) <= 12


def test_async_loop_blocked_means_no_pings(notify_socket: NotifyRecorder) -> None:
    async def main() -> None:
        task = asyncio.create_task(watchdog_loop(interval=0.1))
        await asyncio.sleep(0.12)
        # Every ping sent so far is recorded once the manager answered a later BARRIER: a
        # ping still in the recorder's queue must not count as one sent while blocked.
        assert Notifier(notify_socket.address).barrier(2)
        pings_before = len(ping_times(notify_socket))
        assert pings_before >= 1
        time.sleep(0.5)  # a synchronous call blocks the loop: the pings must stop with it
        assert Notifier(notify_socket.address).barrier(2)
        blocked = len(ping_times(notify_socket)) - pings_before
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert blocked == 0

    asyncio.run(main())


def test_async_health_may_be_sync_or_async(notify_socket: NotifyRecorder) -> None:
    state = {"ok": False}

    async def health() -> bool:
        await asyncio.sleep(0)
        return state["ok"]

    async def main() -> None:
        task = asyncio.create_task(watchdog_loop(interval=0.1, health=health))
        await asyncio.sleep(0.25)
        notify_socket.barrier()  # every ping sent so far is recorded
        assert ping_times(notify_socket) == []
        state["ok"] = True
        await asyncio.sleep(0.25)
        task.cancel()
        sync_task = asyncio.create_task(watchdog_loop(interval=0.1, health=lambda: True))
        await asyncio.sleep(0.1)
        sync_task.cancel()

    asyncio.run(main())
    assert len(ping_times(notify_socket)) >= 2


def test_async_loop_returns_at_once_when_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "100000")

    async def main() -> None:
        await asyncio.wait_for(watchdog_loop(), 1)

    asyncio.run(main())


def test_failing_streak_is_one_warning_then_a_recovery_line(
    notify_socket: NotifyRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    healthy = threading.Event()
    told: list[str | None] = []

    def health() -> bool:
        if healthy.is_set():
            return True
        raise ConnectionError("database down")

    with Watchdog(interval=0.1, health=health, on_health=told.append):
        notify_socket.barrier()
        deadline = time.monotonic() + 5
        while len([r for r in caplog.records if "watchdog ping skipped" in r.getMessage()]) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        healthy.set()
        notify_socket.wait_for("WATCHDOG=1", 2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # One warning for the whole streak (control: three failed checks were made), one line
    # when it ends, and the hook told twice.
    assert len([w for w in warnings if w.startswith("health check failed:")]) == 1
    assert "database down" in warnings[0]
    assert len([w for w in warnings if w.startswith("health check passes again")]) == 1
    assert told == ["health check raised ConnectionError('database down')", None]
