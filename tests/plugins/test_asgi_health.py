"""The health check waits for READY: a slow FastAPI startup under real uvicorn is pinged
throughout, never called unhealthy, though what its check looks at does not exist yet.

README's FastAPI example opens its pool in the lifespan and checks ``app.state.pool``. The
pinger starts with the lifespan (a slow startup must not be killed by ``WatchdogSec=``);
asking the check then raised AttributeError: a WARNING at every start of a healthy app,
STATUS "Unhealthy since …" until the next check half a period later, and no pings while
the app started. Control: the same app pinging through ``watchdog_loop(health=...)`` from
its lifespan, a check asked from the start, withholds those pings and warns.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _asgi_servers import run_server
from sdready.testing import NotifyMessage

pytestmark = pytest.mark.timeout(60)

STARTUP = 1.0  # seconds the lifespan takes to open its "pool"
PERIOD_USEC = 200_000  # WatchdogSec=0.2: a ping every 0.1 s

APP = f"""
import asyncio
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sdready import watchdog_loop
from sdready.plugins.fastapi import SystemdNotify

NAIVE = os.environ.get("APP_NAIVE") == "1"


@asynccontextmanager
async def lifespan(app):
    task = asyncio.create_task(watchdog_loop(health=database_ok)) if NAIVE else None
    await asyncio.sleep({STARTUP})
    app.state.pool = "connected"
    yield
    if task is not None:
        task.cancel()


async def database_ok():
    return app.state.pool == "connected"


app = FastAPI(lifespan=lifespan)
SystemdNotify(app, health=None if NAIVE else database_ok, watchdog=not NAIVE)
"""


def _write_app(workdir: Path) -> None:
    (workdir / "health_app.py").write_text(APP)


def _start(naive: bool) -> tuple[list[NotifyMessage], int, str]:
    """The messages up to two pings after READY, READY's index among them, the log."""
    env = {"WATCHDOG_USEC": str(PERIOD_USEC), "APP_NAIVE": "1" if naive else "0"}
    with run_server("uvicorn", "health_app:app", env=env, prepare=_write_app) as run:
        ready = run.wait_ready(timeout=30)
        messages = run.recorder.messages
        index = next(i for i, m in enumerate(messages) if m is ready)
        # The check passes once READY came: pings follow it either way.
        for _ in range(2):
            seen = len(run.recorder.messages)
            run.recorder.wait_for("WATCHDOG=1", timeout=5, since=seen)
        return run.recorder.messages, index, run.log()


def _pings_while_starting(messages: list[NotifyMessage]) -> list[NotifyMessage]:
    """The pings sent before the lifespan made its pool (STARTUP after "Starting…"): the
    naive check can pass only after it, and a slow READY may let it ping before READY."""
    started = next(m.time for m in messages if m.get("STATUS", "").startswith("Starting"))
    return [m for m in messages if "WATCHDOG" in m and m.time < started + STARTUP]


def test_health_check_waits_for_ready_and_startup_is_pinged() -> None:
    messages, ready, log = _start(naive=False)
    assert all(m.time < messages[ready].time for m in _pings_while_starting(messages))
    # About STARTUP / 0.1 s of them; a loaded machine may stretch the loop's sleeps.
    assert len(_pings_while_starting(messages)) >= 3, messages
    statuses = [m["STATUS"] for m in messages if "STATUS" in m]
    assert not any(s.startswith("Unhealthy") for s in statuses), statuses
    assert "health check" not in log, log


def test_control_a_check_asked_from_the_start_withholds_the_pings_and_warns() -> None:
    messages, _ready, log = _start(naive=True)
    assert _pings_while_starting(messages) == [], messages
    assert "health check failed" in log and "AttributeError" in log, log
