"""A FastAPI app with ``SystemdNotify`` and a ``lifespan=`` context (see ``_asgi_apps``).

``/block?s=3`` blocks the event loop (the watchdog test); ``/`` answers ``"ok"``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from _asgi_apps import OPTIONS, shutdown, startup
from fastapi import FastAPI, WebSocket
from sdready.plugins.fastapi import SystemdNotify


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    await startup()
    yield
    shutdown()


app = FastAPI(lifespan=lifespan)


@app.get("/")
async def home() -> str:
    return "ok"


@app.get("/block")
async def block(s: float = 3.0) -> str:
    time.sleep(s)  # deliberately blocks the event loop
    return "blocked"


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text)


SystemdNotify(app, **OPTIONS)
