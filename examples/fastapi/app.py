"""A FastAPI app that tells systemd the truth: READY=1 once uvicorn accepts connections.

    uvicorn app:app --host 127.0.0.1 --port 8000

``SystemdNotify(app)`` hooks FastAPI's lifespan: your ``lifespan=`` and
``@app.on_event`` code runs as before, READY=1 waits for the listening socket after it,
STOPPING=1 goes out before your shutdown code, and with ``WatchdogSec=`` the event loop
pings systemd while ``database_ok()`` passes.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sdready.plugins.fastapi import SystemdNotify

logging.basicConfig(level=logging.INFO)  # sdready explains itself on the "sdready" logger

# Stands in for opening a database pool or loading a model (EXAMPLE_STARTUP_DELAY seconds).
STARTUP_DELAY = float(os.environ.get("EXAMPLE_STARTUP_DELAY", "0.5"))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await asyncio.sleep(STARTUP_DELAY)
    app.state.pool = "connected"
    yield
    app.state.pool = None


async def database_ok() -> bool:
    """Gates each watchdog ping: replace with a real check (``SELECT 1``)."""
    return bool(app.state.pool == "connected")


app = FastAPI(lifespan=lifespan)
# ready_timeout: how long to wait for the socket after startup (TimeoutStartSec= is longer).
SystemdNotify(app, ready_timeout=30, health=database_ok)


@app.get("/")
async def index() -> dict[str, object]:
    return {"hello": "world", "pid": os.getpid()}


@app.get("/healthz")
async def healthz() -> dict[str, bool]:
    return {"ok": await database_ok()}
