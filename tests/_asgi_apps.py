"""ASGI apps that the server tests run in child processes (``python -m uvicorn _asgi_apps:app``).

Configured through the environment, read at import, so each server process gets its own:

``SDREADY_TEST_STARTUP_DELAY``  seconds the startup takes (``asyncio.sleep``; trio under trio)
``SDREADY_TEST_FAIL``           startup raises ``RuntimeError`` with this message
``SDREADY_TEST_FAIL_ERRNO``     startup raises ``OSError(errno, "test failure")`` instead
``SDREADY_TEST_AUX_LISTENER``   startup opens a listener on 127.0.0.1:0 (a "metrics port")
``SDREADY_TEST_OPTIONS``        JSON keyword arguments for SystemdMiddleware/SystemdNotify
``SDREADY_TEST_HEALTH``         ``false`` or ``raise``: a ``health=`` check that fails

The Starlette and FastAPI variants live in ``_asgi_starlette`` and ``_asgi_fastapi`` (own
modules: hypercorn looks the app up with ``eval`` in the module's namespace).

Routes: ``/`` answers ``ok``; ``/pid`` answers the worker's pid; ``/block?s=3`` blocks the
event loop (watchdog tests); websocket ``/ws`` echoes text frames.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from typing import Any

from sdready.plugins.asgi import SystemdMiddleware

STARTUP_DELAY = float(os.environ.get("SDREADY_TEST_STARTUP_DELAY", "0") or 0)
FAIL = os.environ.get("SDREADY_TEST_FAIL", "")
FAIL_ERRNO = int(os.environ.get("SDREADY_TEST_FAIL_ERRNO", "0") or 0)
AUX_LISTENER = os.environ.get("SDREADY_TEST_AUX_LISTENER") == "1"
OPTIONS: dict[str, Any] = json.loads(os.environ.get("SDREADY_TEST_OPTIONS", "{}") or "{}")
HEALTH = os.environ.get("SDREADY_TEST_HEALTH", "")  # "false" or "raise": a failing check


def _failing_health() -> bool:
    if HEALTH == "raise":
        raise ConnectionError("database unreachable")
    return False


if HEALTH:
    OPTIONS["health"] = _failing_health

_aux: list[socket.socket] = []


async def _sleep(seconds: float) -> None:
    # hypercorn's trio worker runs the app under trio: sleep with whatever runs us.
    if "trio" in sys.modules:
        import trio

        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            pass
        else:
            await trio.sleep(seconds)
            return
    import asyncio

    await asyncio.sleep(seconds)


async def startup() -> None:
    """The app's own startup: slow, failing, or opening an auxiliary listener, as configured."""
    if STARTUP_DELAY:
        await _sleep(STARTUP_DELAY)
    if FAIL_ERRNO:
        raise OSError(FAIL_ERRNO, "test failure")
    if FAIL:
        raise RuntimeError(FAIL)
    if AUX_LISTENER:
        aux = socket.socket()
        aux.bind(("127.0.0.1", 0))
        aux.listen()
        _aux.append(aux)


def shutdown() -> None:
    while _aux:
        _aux.pop().close()


async def _respond(send: Any, body: bytes, status: int = 200) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A framework-free ASGI app with lifespan, http and websocket."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text") or ""})
    path = scope["path"]
    if path == "/block":
        seconds = float(dict(_query(scope)).get("s", "3"))
        time.sleep(seconds)  # deliberately blocks the event loop
    if path == "/pid":
        await _respond(send, str(os.getpid()).encode())
        return
    await _respond(send, b"ok")


def _query(scope: dict[str, Any]) -> list[tuple[str, str]]:
    text = scope.get("query_string", b"").decode()
    return [tuple(part.partition("=")[::2]) for part in text.split("&") if part]  # type: ignore[misc]


async def no_lifespan_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app that does not speak lifespan (like Django's ASGI handler): it raises."""
    if scope["type"] != "http":
        raise ValueError(f"unsupported scope type {scope['type']!r}")
    await _respond(send, b"ok")


app = SystemdMiddleware(raw_app, **OPTIONS)
no_lifespan = SystemdMiddleware(no_lifespan_app, **OPTIONS)
plain = raw_app  # without sdready: the baseline for "traffic unaffected" comparisons
