"""The watchdog's own unit check (issue 14): a health check slower than half of
``WatchdogSec=`` pushes the next ping past the period; each pinger warns once, naming both."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from sdready import Watchdog, watchdog_loop
from sdready.testing import NotifyRecorder

SLOW = "over half of WatchdogSec="


def _slow_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "sdready" and r.levelno == logging.WARNING and SLOW in r.getMessage()
    ]


def _slow() -> bool:
    time.sleep(0.15)  # more than half of the 0.2 s period, whatever the machine's load
    return True


def test_thread_warns_once_about_a_slow_health_check(
    notify_socket: NotifyRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="sdready"), Watchdog(interval=0.2, health=_slow):
        notify_socket.wait_for_count(3, timeout=10)
    (message,) = _slow_warnings(caplog)
    assert message.startswith("health check took ") and "(0.2 s)" in message


def test_thread_control_a_quick_health_check_is_not_mentioned(
    notify_socket: NotifyRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    # A 4 s period: half of it is far beyond what returning True can take.
    with (
        caplog.at_level(logging.DEBUG, logger="sdready"),
        Watchdog(interval=4, health=lambda: True),
    ):
        notify_socket.wait_for_count(2, timeout=10)
    assert _slow_warnings(caplog) == []


def test_event_loop_pinger_warns_once_too(
    notify_socket: NotifyRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    async def slow() -> bool:
        await asyncio.sleep(0.15)
        return True

    async def main() -> None:
        task = asyncio.create_task(watchdog_loop(interval=0.2, health=slow))
        while len(notify_socket.messages) < 3:
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.DEBUG, logger="sdready"):
        asyncio.run(asyncio.wait_for(main(), timeout=10))
    assert len(_slow_warnings(caplog)) == 1
