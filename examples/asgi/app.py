"""A plain ASGI app (no framework) wrapped in sdready's middleware.

    uvicorn app:app --host 127.0.0.1 --port 8000       # or: hypercorn, granian --interface asgi

``SystemdMiddleware`` sends ``STATUS=Starting…`` when the lifespan starts, runs the app's
startup, then ``READY=1`` once the server's listening socket accepts connections; with
``WatchdogSec=`` it pings from the event loop while ``healthy()`` says so.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sdready.plugins.asgi import SystemdMiddleware

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Stands in for real startup work (EXAMPLE_STARTUP_DELAY seconds, default 0.5).
STARTUP_DELAY = float(os.environ.get("EXAMPLE_STARTUP_DELAY", "0.5"))
state: dict[str, bool] = {"started": False}


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await asyncio.sleep(STARTUP_DELAY)
                state["started"] = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        body = json.dumps({"hello": "world", "pid": os.getpid()}).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def healthy() -> bool:
    """Gates each watchdog ping: replace with a real check (a database ping, a queue depth)."""
    return state["started"]


app = SystemdMiddleware(_app, health=healthy)
