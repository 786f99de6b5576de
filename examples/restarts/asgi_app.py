"""A plain ASGI app for uvicorn behind ``sdready exec --listen`` (and gunicorn's uvicorn
worker)::

    sdready exec --listen 127.0.0.1:8000 -- uvicorn --fd 3 asgi_app:app

sdready owns the socket and keeps it in the unit's fd store; uvicorn serves it as fd 3.
"""

from __future__ import annotations

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"hello":"world"}'})
