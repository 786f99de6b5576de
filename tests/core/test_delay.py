"""The shutdown delay's signal handler: the engine is told from a thread, so a SIGTERM that
lands while the main thread is inside a send (its lock held) cannot deadlock the process.

Each scenario runs in a child (a deadlock must not hang the suite); a NotifyRecorder plays
systemd.
"""

from __future__ import annotations

import subprocess
import sys

from _servers import child_env
from sdready.testing import NotifyRecorder

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
with readiness.notifier._lock:
    signal.raise_signal(signal.SIGTERM)
print("survived", flush=True)
deadline = time.monotonic() + 10
while readiness.phase.value == "ready" and time.monotonic() < deadline:
    time.sleep(0.01)
print(readiness.phase.value, flush=True)
"""


def _run(
    kind: str, recorder: NotifyRecorder, timeout: float = 15
) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            [sys.executable, "-c", SCRIPT, kind],
            env=child_env(notify=recorder),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None  # deadlocked (the child is killed by subprocess.run)


def test_sigterm_during_a_send_starts_the_delay(notify_socket: NotifyRecorder) -> None:
    done = _run("delay", notify_socket)
    assert done is not None, "deadlocked"
    assert done.stdout.split() == ["survived", "stopping"], done.stderr
    stopping = notify_socket.wait_for("STOPPING=1", timeout=10)
    assert int(stopping["EXTEND_TIMEOUT_USEC"]) >= 60_000_000


def test_control_the_naive_handler_deadlocks(notify_socket: NotifyRecorder) -> None:
    assert _run("naive", notify_socket, timeout=5) is None
    assert "STOPPING" not in [key for m in notify_socket.messages for key in m.fields]
