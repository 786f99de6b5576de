"""Service B as a plain ASGI app that knows nothing about systemd, for ``sdready exec``.

``sdready exec`` runs any server as its child and sends ``READY=1`` once a socket in the
child's process tree listens::

    sdready exec -- hypercorn --bind 127.0.0.1:8000 service_b_asgi:app
    sdready exec -- granian --interface asgi --host 127.0.0.1 --port 8000 service_b_asgi:app
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

STARTUP_SECONDS = float(os.environ.get("B_STARTUP_SECONDS", "0.8"))


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    body = json.dumps({"service": "B", "pid": os.getpid()}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            # Servers listen only after this completes (hypercorn's worker, granian).
            await asyncio.sleep(STARTUP_SECONDS)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
