"""A Starlette app with sdready's middleware in its ``middleware=`` list.

    uvicorn starlette_app:app --host 127.0.0.1 --port 8000
    hypercorn --bind 127.0.0.1:8000 starlette_app:app     # a child process serves: NotifyAccess=all

The middleware must be part of the app before it starts (Starlette builds its middleware
stack once); ``app.add_middleware(SystemdMiddleware)`` before serving works too.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sdready.plugins.asgi import SystemdMiddleware
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

STARTUP_DELAY = float(os.environ.get("EXAMPLE_STARTUP_DELAY", "0.5"))


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # Stands in for opening a database pool; the server listens only after this.
    await asyncio.sleep(STARTUP_DELAY)
    app.state.pool = "connected"
    yield
    app.state.pool = None


async def database_ok() -> bool:
    """Gates each watchdog ping (sync or async): replace with a real check."""
    return bool(app.state.pool == "connected")


async def index(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "world", "pid": os.getpid()})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"ok": await database_ok()})


app = Starlette(
    routes=[Route("/", index), Route("/healthz", healthz)],
    lifespan=lifespan,
    middleware=[Middleware(SystemdMiddleware, ready_timeout=60, health=database_ok)],
)
