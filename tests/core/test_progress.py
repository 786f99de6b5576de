"""progress(): STATUS plus EXTEND_TIMEOUT_USEC, and the engine's rules for when time is asked.

On a real recorder: the datagram, the argument checks, inert outside systemd, the engine's
phases (start and reload extend, running does not, a drain extends within its budget and
ends with it), milestones, and workers that never extend. The real systemd side (a start
kept alive, a stop that drains) is tests/plugins/test_progress_systemd.py.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest
import sdready
from sdready import Notifier, Readiness, ReadyOptions, texts
from sdready._engine._drain import Drain
from sdready._engine._extend import GenerationClock
from sdready.integration import relay_progress
from sdready.testing import NotifyRecorder

USEC = 1_000_000


@pytest.fixture
def fast_drain(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(Drain, "TICK", 0.05)
    monkeypatch.setattr(Drain, "MARGIN", 0.2)
    yield


def _drain_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sdready-drain"]


def _wait_no_drain_thread() -> None:
    deadline = time.monotonic() + 10
    while _drain_threads():
        assert time.monotonic() < deadline, "the drain thread did not end"
        time.sleep(0.01)


def _extensions(recorder: NotifyRecorder) -> list[int]:
    return [int(v) for v in recorder.values("EXTEND_TIMEOUT_USEC")]


# -- the notifier and the module helper ------------------------------------------------------


def test_notifier_progress_is_one_datagram(notify_socket: NotifyRecorder) -> None:
    with Notifier() as notifier:
        assert notifier.progress("Loading shard 1/8", extend=3) is True
    message = notify_socket.wait_for("EXTEND_TIMEOUT_USEC")
    assert message.fields == {"STATUS": "Loading shard 1/8", "EXTEND_TIMEOUT_USEC": "3000000"}


def test_module_helper_default_extend_without_a_front_end(notify_socket: NotifyRecorder) -> None:
    assert sdready.progress("Warming caches") is True
    message = notify_socket.wait_for("EXTEND_TIMEOUT_USEC")
    assert message["STATUS"] == "Warming caches"
    assert int(message["EXTEND_TIMEOUT_USEC"]) == 30 * USEC


@pytest.mark.parametrize("extend", [0, -1, math.inf, math.nan, True, "3", None])
def test_extend_must_be_positive_and_finite(
    notify_socket: NotifyRecorder, monkeypatch: pytest.MonkeyPatch, extend: object
) -> None:
    with pytest.raises(ValueError, match="extend"):
        Notifier().progress("x", extend=extend)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="extend"):
        sdready.progress("x", extend=extend)  # type: ignore[arg-type]
    monkeypatch.delenv("NOTIFY_SOCKET")
    with pytest.raises(ValueError, match="extend"):  # a bug shows in development too
        sdready.progress("x", extend=extend)  # type: ignore[arg-type]
    assert notify_socket.messages == []


def test_inert_outside_systemd(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    threads = threading.active_count()
    readiness = Readiness()
    readiness.starting()
    assert sdready.progress("Loading", extend=3) is False
    assert readiness.progress("Loading", extend=3) is False
    readiness.stopping()
    assert readiness.drain(lambda: 1, 5.0) is False
    assert threading.active_count() == threads
    assert [r for r in caplog.records if r.levelno > logging.DEBUG] == []


def test_usable_from_async_code(notify_socket: NotifyRecorder) -> None:
    async def startup() -> list[bool]:
        sent = []
        for i in range(1, 4):
            sent.append(sdready.progress(f"Loading shard {i}/3", extend=3))
            await asyncio.sleep(0)
        return sent

    assert asyncio.run(startup()) == [True, True, True]
    notify_socket.wait_for_count(3)
    assert notify_socket.statuses == [f"Loading shard {i}/3" for i in range(1, 4)]


# -- the engine: when time may be asked for --------------------------------------------------


def test_engine_extends_the_start_but_not_the_running_service(
    notify_socket: NotifyRecorder,
) -> None:
    readiness = Readiness(ReadyOptions(ready_timeout=10))
    readiness.starting()
    assert sdready.progress("Loading shard 1/2", extend=3)  # through the engine
    assert readiness.ready("Ready (test)")
    assert sdready.progress("Rebuilding the index", extend=3)  # running: STATUS only
    running = notify_socket.wait_for(lambda m: m.get("STATUS") == "Rebuilding the index")
    loading = notify_socket.wait_for(lambda m: m.get("STATUS") == "Loading shard 1/2")
    assert loading["EXTEND_TIMEOUT_USEC"] == str(3 * USEC)
    assert "EXTEND_TIMEOUT_USEC" not in running
    assert readiness.last_status == "Rebuilding the index"


def test_milestone_extends_by_twice_the_time_taken(notify_socket: NotifyRecorder) -> None:
    readiness = Readiness(ReadyOptions(ready_timeout=10))
    started = time.monotonic()  # before the engine's clock starts: taken bounds its time
    readiness.starting()
    time.sleep(0.6)
    readiness.waiting()  # the app's startup is done: a milestone
    taken = time.monotonic() - started
    waiting = notify_socket.wait_for(lambda m: m.get("STATUS") == texts.WAITING)
    extension = int(waiting["EXTEND_TIMEOUT_USEC"]) / USEC
    assert max(GenerationClock.MILESTONE_MIN, 2 * 0.6) <= extension <= max(1.0, 2 * taken) + 0.01


def test_milestone_never_beyond_ready_timeout(notify_socket: NotifyRecorder) -> None:
    readiness = Readiness(ReadyOptions(ready_timeout=0.5))
    readiness.starting()
    readiness.progress("Booting workers (1/2)")
    message = notify_socket.wait_for("EXTEND_TIMEOUT_USEC")
    assert int(message["EXTEND_TIMEOUT_USEC"]) == USEC // 2


def test_reload_generation_extends_until_its_ready(notify_socket: NotifyRecorder) -> None:
    readiness = Readiness(ReadyOptions(ready_timeout=10))
    readiness.starting()
    readiness.ready("Ready (generation 1)")
    readiness.progress("Booting workers (1/2)")  # running: not a start, nothing to extend
    readiness.reloading("Reloading")
    readiness.progress("Reloading: booting workers (1/2, generation 2)")
    readiness.ready("Ready (generation 2)")
    readiness.progress("Booting workers (2/2)")
    notify_socket.wait_for(lambda m: m.get("STATUS") == "Booting workers (2/2)")
    extended = [m["STATUS"] for m in notify_socket if "EXTEND_TIMEOUT_USEC" in m]
    assert extended == ["Reloading: booting workers (1/2, generation 2)"]


def test_no_extension_after_a_failed_start(notify_socket: NotifyRecorder) -> None:
    readiness = Readiness()
    readiness.starting()
    readiness.startup_failed("boom")
    readiness.progress("Still loading", extend=3)
    notify_socket.wait_for(lambda m: m.get("STATUS") == "Still loading")
    assert _extensions(notify_socket) == []


def test_a_worker_never_extends(
    notify_socket: NotifyRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A uvicorn --workers child restarted while the unit runs is no start: with
    NotifyAccess=all its extension would stretch the running unit's timers."""
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(os.getppid()))
    readiness = Readiness(ReadyOptions(ready_timeout=10))
    readiness.starting()
    sdready.progress("Loading shard 1/2", extend=3)
    readiness.waiting()
    notify_socket.wait_for(lambda m: m.get("STATUS") == texts.WAITING)
    assert _extensions(notify_socket) == []


def test_a_forked_child_does_not_use_its_parents_engine(notify_socket: NotifyRecorder) -> None:
    code = textwrap.dedent(
        """
        import os, sdready
        readiness = sdready.Readiness()
        readiness.starting()
        readiness.ready("Ready (parent)")
        pid = os.fork()
        if pid == 0:  # the parent's engine says "running"; the child has none of its own
            os._exit(0 if sdready.progress("child", extend=3) else 1)
        print(pid, os.waitpid(pid, 0)[1])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    pid, status = map(int, result.stdout.split())
    assert status == 0
    child = notify_socket.wait_for(lambda m: m.get("STATUS") == "child")
    assert child["EXTEND_TIMEOUT_USEC"] == str(3 * USEC)
    assert child.pid == pid


# -- the stop: the app's own shutdown, and a server's drain ----------------------------------


def test_app_shutdown_progress_extends_until_drained(notify_socket: NotifyRecorder) -> None:
    readiness = Readiness()
    readiness.starting()
    readiness.ready("Ready (test)")
    readiness.stopping()
    assert sdready.progress("Flushing 1/2", extend=2)
    readiness.drained()  # the app's shutdown returned (ASGI: lifespan.shutdown.complete)
    assert sdready.progress("Flushing 2/2", extend=2)
    notify_socket.wait_for(lambda m: m.get("STATUS") == "Flushing 2/2")
    extended = [m["STATUS"] for m in notify_socket if "EXTEND_TIMEOUT_USEC" in m]
    assert extended == ["Flushing 1/2"]


def test_drain_extends_while_the_server_drains_then_stops(
    notify_socket: NotifyRecorder, fast_drain: None
) -> None:
    left = [3]

    def remaining() -> int:
        left[0] = max(0, left[0] - 1)
        return left[0]

    readiness = Readiness()
    readiness.starting()
    readiness.ready("Ready (test)")
    assert readiness.drain(remaining, 5.0) is False  # not stopping yet: nothing drains
    readiness.stopping()
    assert readiness.drain(remaining, 5.0) is True
    assert readiness.drain(remaining, 5.0) is False  # once
    _wait_no_drain_thread()
    draining = [m for m in notify_socket if "EXTEND_TIMEOUT_USEC" in m]
    assert [m["STATUS"] for m in draining] == [
        texts.DRAINING.format(count=count, budget=5.0) for count in (2, 1)
    ]
    assert all(int(m["EXTEND_TIMEOUT_USEC"]) == Drain.STEP * USEC for m in draining)
    before = len(notify_socket)
    sdready.progress("late", extend=3)  # the drain is over: STATUS only
    late = notify_socket.wait_for(lambda m: m.get("STATUS") == "late", since=before)
    assert "EXTEND_TIMEOUT_USEC" not in late


def test_drain_never_beyond_its_budget(notify_socket: NotifyRecorder, fast_drain: None) -> None:
    """A drain that hangs (a worker that never finishes) gets no time past its budget."""
    readiness = Readiness()
    readiness.starting()
    readiness.ready("Ready (test)")
    readiness.stopping()
    stopped = time.monotonic()
    budget = 0.3
    assert readiness.drain(lambda: 1, budget)
    _wait_no_drain_thread()  # ended by the budget, although something still "drains"
    limit = stopped + budget + Drain.MARGIN
    extensions = [m for m in notify_socket if "EXTEND_TIMEOUT_USEC" in m]
    assert extensions
    for message in extensions:  # each asks for no more than what is left of the budget
        assert message.time + int(message["EXTEND_TIMEOUT_USEC"]) / USEC <= limit + 0.05
    before = len(notify_socket)
    sdready.progress("the app asks for more", extend=30)  # past the budget: STATUS only
    notify_socket.wait_for(lambda m: m.get("STATUS") == "the app asks for more")
    assert all("EXTEND_TIMEOUT_USEC" not in m for m in notify_socket.messages[before:])


def test_drain_ends_when_the_server_cannot_tell(
    notify_socket: NotifyRecorder, fast_drain: None, caplog: pytest.LogCaptureFixture
) -> None:
    def remaining() -> int:
        raise RuntimeError("gone")

    readiness = Readiness()
    readiness.starting()
    readiness.ready("Ready (test)")
    readiness.stopping()
    assert readiness.drain(remaining, 5.0)
    _wait_no_drain_thread()
    assert _extensions(notify_socket) == []
    assert "cannot tell whether the server still drains" in caplog.text


def test_no_drain_after_a_start_that_never_served(notify_socket: NotifyRecorder) -> None:
    """systemd stops a start that timed out: nothing was served, so nothing drains."""
    readiness = Readiness()
    readiness.starting()
    readiness.stopping()
    assert readiness.drain(lambda: 1, 5.0) is False
    assert _drain_threads() == []


def test_relayed_progress(notify_socket: NotifyRecorder) -> None:
    """A gunicorn worker's progress goes to its relay (the arbiter's pipe), checked first."""
    relayed: list[tuple[str, float]] = []
    relay_progress(lambda text, extend: relayed.append((text, extend)) or True)
    try:
        assert sdready.progress("Loading shard 1/2", extend=3) is True
        with pytest.raises(ValueError, match="extend"):
            sdready.progress("x", extend=0)
    finally:
        relay_progress(None)
    assert sdready.progress("direct", extend=3) is True
    assert relayed == [("Loading shard 1/2", 3)]
    assert notify_socket.wait_for("EXTEND_TIMEOUT_USEC")["STATUS"] == "direct"


def test_no_drain_from_a_worker(
    notify_socket: NotifyRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(os.getppid()))
    readiness = Readiness()
    readiness.starting()
    readiness.stopping()
    assert readiness.drain(lambda: 1, 5.0) is False
    assert _drain_threads() == []
