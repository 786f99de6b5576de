"""The readiness endpoint and the shutdown delay under a real uvicorn (issue 22).

A NotifyRecorder plays systemd where messages matter; without one, the process runs as on
Kubernetes (no ``NOTIFY_SOCKET``), where the endpoint must still answer from the phase.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading

import pytest
from _asgi_servers import UVICORN_PYTHON_SIGNALS, run_server
from _servers import http_get, reserved_port
from _systemd import wait_until
from sdready.integration import Phase, ReadyOptions
from sdready.plugins.asgi import LifespanCycle, SystemdMiddleware

pytestmark = pytest.mark.timeout(120)

FASTAPI = "_asgi_fastapi:app"
#: Long, so that the GETs during it never race its end; a second SIGTERM ends it.
LONG_DELAY = 60.0


def _options(**options: object) -> dict[str, str]:
    return {"SDREADY_TEST_OPTIONS": json.dumps(options)}


_HOLDS_SIGTERM = pytest.mark.skipif(
    not UVICORN_PYTHON_SIGNALS,
    reason="uvicorn < 0.29 handles SIGTERM in its event loop: the delay does not apply (said)",
)


@_HOLDS_SIGTERM
def test_endpoint_answers_across_a_life() -> None:
    env = {
        **_options(ready_path="/readyz", shutdown_delay=LONG_DELAY, probe="auto"),
        "SDREADY_TEST_STARTUP_DELAY": "1.0",
    }
    with run_server("uvicorn-fd", FASTAPI, env=env) as run:
        address = run.extra["address"][1]  # type: ignore[index]
        run.recorder.wait_for("STATUS=Starting…", timeout=20)
        # The inherited socket accepts at once; uvicorn answers once the app has started.
        # READY waits for sdready's own GET (probe="auto"), which connects only after the
        # startup, behind this request in the backlog: this answer comes before READY.
        early = http_get(address, "/readyz", timeout=20)
        assert (early.status, early.body) in ((503, "starting"), (503, "waiting")), early
        run.wait_ready()
        assert http_get(address, "/readyz") == (200, "ready")
        assert http_get(address, "/").status == 200

        run.signal(signal.SIGTERM)
        stopping = run.recorder.wait_for("STOPPING=1", timeout=10)
        assert stopping["EXTEND_TIMEOUT_USEC"] == str(int((LONG_DELAY + 5) * 1_000_000))
        assert http_get(address, "/readyz") == (503, "stopping")
        assert http_get(address, "/") == (200, '"ok"')  # still served during the delay

        run.signal(signal.SIGTERM)  # a second SIGTERM: the server's own stop, now
        assert run.wait(timeout=20) == -signal.SIGTERM
        assert [m for m in run.recorder.messages if "STOPPING" in m] == [stopping]


def test_control_without_the_delay_uvicorn_refuses_at_once() -> None:
    with run_server("uvicorn-fd", FASTAPI) as run:
        address = run.extra["address"][1]  # type: ignore[index]
        run.wait_ready()
        assert http_get(address, "/readyz").status == 404  # the app's: no endpoint
        run.signal(signal.SIGTERM)
        run.wait(timeout=20)
        with pytest.raises(OSError):  # the inherited socket is ours; nobody serves it
            http_get(address, "/", timeout=0.5)


@_HOLDS_SIGTERM
def test_sigint_ends_the_delay() -> None:
    with (
        reserved_port() as port,
        run_server("uvicorn", FASTAPI, env=_options(shutdown_delay=LONG_DELAY), port=port) as run,
    ):
        run.wait_ready()
        run.signal(signal.SIGTERM)
        run.recorder.wait_for("STOPPING=1", timeout=10)
        assert http_get(("127.0.0.1", port), "/").status == 200
        run.signal(signal.SIGINT)
        assert run.wait(timeout=20) in (0, -signal.SIGTERM, -signal.SIGINT)


def test_without_systemd_the_endpoint_follows_the_phase() -> None:
    # Kubernetes: no NOTIFY_SOCKET, yet the engine waits for the listener and moves on.
    env = _options(ready_path="/readyz", live_path="/livez")
    with (
        reserved_port() as port,
        run_server("uvicorn", FASTAPI, env=env, port=port, notify=False) as run,
    ):
        address = ("127.0.0.1", port)

        def ready() -> bool:
            try:
                return http_get(address, "/readyz") == (200, "ready")
            except OSError:
                return False

        wait_until(ready, timeout=20, message=run.log)
        assert http_get(address, "/livez") == (200, "live")
        assert len(run.recorder.messages) == 0  # nothing was sent anywhere


def test_failing_health_makes_readiness_and_liveness_503() -> None:
    env = {**_options(ready_path="/readyz", live_path="/livez"), "SDREADY_TEST_HEALTH": "raise"}
    with run_server("uvicorn-fd", FASTAPI, env=env) as run:
        address = run.extra["address"][1]  # type: ignore[index]
        run.wait_ready()
        assert http_get(address, "/readyz") == (503, "unhealthy")
        assert http_get(address, "/livez") == (503, "unhealthy")


def test_outside_systemd_without_the_options_everything_stays_inert(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)

    async def app(scope: object, receive: object, send: object) -> None:
        return None

    assert not LifespanCycle(app, ReadyOptions()).readiness.active
    assert LifespanCycle(app, ReadyOptions(ready_path="/readyz")).readiness.active
    assert LifespanCycle(app, ReadyOptions(shutdown_delay=1)).readiness.active
    assert not LifespanCycle(app, ReadyOptions(live_path="/livez")).readiness.active

    async def lifespan() -> None:
        middleware = SystemdMiddleware(app)
        threads = threading.active_count()
        tasks = len(asyncio.all_tasks())
        queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        for kind in ("lifespan.startup", "lifespan.shutdown"):
            queue.put_nowait({"type": kind})
        sent: list[object] = []

        async def send(message: object) -> None:
            sent.append(message)

        await middleware({"type": "lifespan"}, queue.get, send)
        assert (threading.active_count(), len(asyncio.all_tasks())) == (threads, tasks)
        assert middleware._cycle is not None
        assert middleware._cycle.readiness.phase is Phase.NEW

    asyncio.run(lifespan())
