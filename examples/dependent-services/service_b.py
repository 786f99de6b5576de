"""Service B: a FastAPI app whose startup takes a moment (a database pool, a model, a cache).

Run it with uvicorn::

    uvicorn service_b:app --host 127.0.0.1 --port 8000

Under ``Type=notify`` (see ``b.service``), ``SystemdNotify`` sends ``READY=1`` only once
uvicorn accepts connections, so units ordered ``After=b.service`` start only then. Under
``Type=simple`` systemd sets no ``NOTIFY_SOCKET`` and the same code changes nothing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sdready.plugins.fastapi import SystemdNotify

# The demo and the tests shorten or lengthen the warm-up through the environment.
STARTUP_SECONDS = float(os.environ.get("B_STARTUP_SECONDS", "0.8"))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Stands in for real startup work; uvicorn binds its port only after this finishes.
    await asyncio.sleep(STARTUP_SECONDS)
    yield


app = FastAPI(lifespan=lifespan)
SystemdNotify(app)


@app.get("/")
async def hello() -> dict[str, object]:
    return {"service": "B", "pid": os.getpid()}
