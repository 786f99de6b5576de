"""A Starlette app with ``SystemdMiddleware`` in its ``middleware=`` list (see ``_asgi_apps``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from _asgi_apps import OPTIONS, shutdown, startup
from sdready.plugins.asgi import SystemdMiddleware
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    await startup()
    yield
    shutdown()


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text)


app = Starlette(
    routes=[Route("/", home), WebSocketRoute("/ws", echo)],
    lifespan=lifespan,
    middleware=[Middleware(SystemdMiddleware, **OPTIONS)],
)
