"""The shutdown delay's signal rules, with real signals to this process (issue 22): the
first SIGTERM after READY is held while the phase says stopping, a second one (or SIGINT)
releases it to the server's own handler; before READY nothing is held. The engine is told
from a thread, so a SIGTERM that lands while the main thread is inside a send (its lock
held) cannot deadlock the process: those scenarios run in a child, with a NotifyRecorder
playing systemd."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from types import FrameType

import pytest
from _servers import child_env
from sdready.integration import Phase, Readiness, ReadyOptions, ShutdownDelay
from sdready.testing import NotifyRecorder

LONG = 60.0


class _Server:
    """The server's own SIGTERM/SIGINT handler: records what reached it."""

    def __init__(self) -> None:
        self.got: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.got.append(signum)

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.got) < count and time.monotonic() < deadline:
            time.sleep(0.01)  # the release comes from a thread; Python runs it here


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    handler = _Server()
    saved = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield handler
    finally:
        for signum, previous in saved.items():
            signal.signal(signum, previous)


def _engine(ready: bool) -> Readiness:
    engine = Readiness(ReadyOptions(ready_path="/readyz", shutdown_delay=LONG))
    engine.starting()
    if ready:
        engine.ready("Ready")
    return engine


def test_after_ready_sigterm_is_held_until_a_second_one(server: _Server) -> None:
    engine = _engine(ready=True)
    delay = ShutdownDelay(engine, LONG)
    assert delay.install(server)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 10  # the engine is told from the delay's thread
        while engine.phase is not Phase.STOPPING and time.monotonic() < deadline:
            time.sleep(0.01)
        assert delay.delaying and engine.phase is Phase.STOPPING
        assert server.got == []  # held: the server keeps serving
        os.kill(os.getpid(), signal.SIGTERM)  # the second one ends the delay
        server.wait_for(1)
        assert server.got == [signal.SIGTERM]  # the held one, once
    finally:
        delay.uninstall()


def test_sigint_ends_the_delay(server: _Server) -> None:
    delay = ShutdownDelay(_engine(ready=True), LONG)
    delay.install(server)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        server.wait_for(1)
        assert server.got == [signal.SIGTERM]
    finally:
        delay.uninstall()


def test_before_ready_sigterm_goes_to_the_server_at_once(server: _Server) -> None:
    # Control for the hold above: the same delay, never READY: nothing to move away from.
    engine = _engine(ready=False)
    delay = ShutdownDelay(engine, LONG)
    delay.install(server)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert server.got == [signal.SIGTERM] and not delay.delaying
        assert engine.phase is Phase.STARTING  # the server's own stop reports it
    finally:
        delay.uninstall()


# The main thread holds the notifier's lock (as during uvicorn's watchdog ping) when SIGTERM
# arrives; raise_signal runs the handler right there, before the lock is released.
SCRIPT = """
import signal, sys, time
from sdready.integration import Readiness, ReadyOptions, ShutdownDelay
from sdready import Notifier

readiness = Readiness(ReadyOptions(notifier=Notifier()))
readiness.starting()
readiness.ready("Ready")
if sys.argv[1] == "delay":
    ShutdownDelay(readiness, 60).install(lambda signum, frame: None)
else:  # the naive handler: the engine told inside the signal handler
    signal.signal(signal.SIGTERM, lambda signum, frame: readiness.stopping())
with readiness.notifier._delivery.lock:  # the lock every send takes
    signal.raise_signal(signal.SIGTERM)
print("survived", flush=True)
time.sleep(30)  # while the delay's thread tells the engine; the test ends it sooner
"""


def test_sigterm_during_a_send_starts_the_delay(notify_socket: NotifyRecorder) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, "delay"],
        env=child_env(notify=notify_socket),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stopping = notify_socket.wait_for("STOPPING=1", timeout=15)
        assert int(stopping["EXTEND_TIMEOUT_USEC"]) >= 60_000_000
    finally:
        child.kill()
        out, err = child.communicate(timeout=10)
    assert out.split() == ["survived"], err


def test_control_the_naive_handler_deadlocks(notify_socket: NotifyRecorder) -> None:
    with pytest.raises(subprocess.TimeoutExpired):  # no "survived": it never gets there
        subprocess.run(
            [sys.executable, "-c", SCRIPT, "naive"],
            env=child_env(notify=notify_socket),
            capture_output=True,
            timeout=5,
            check=False,
        )
    assert "STOPPING" not in [key for m in notify_socket.messages for key in m.fields]
