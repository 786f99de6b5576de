"""Apps for the unit-check tests (tests/core/test_unitcheck_systemd.py).

Importing this module sends the ``sdready`` logger's DEBUG lines to stderr, so the unit's
log shows when the startup self-check is done even when it finds nothing.

``asgi``: a minimal ASGI app in ``SystemdMiddleware`` (``python -m uvicorn
_unitcheck_apps:asgi``), with a health check taking ``UNITCHECK_HEALTH_SECONDS`` when set;
``wsgi``: a minimal WSGI app (gunicorn).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from sdready.plugins.asgi import SystemdMiddleware

_handler = logging.StreamHandler(sys.stderr)
_handler.setFormatter(logging.Formatter("%(levelname)s sdready: %(message)s"))
logging.getLogger("sdready").addHandler(_handler)
logging.getLogger("sdready").setLevel(logging.DEBUG)
logging.getLogger("sdready").propagate = False  # waitress gives the root logger a handler too


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here: SystemdMiddleware speaks it for us")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


HEALTH_SECONDS = float(os.environ.get("UNITCHECK_HEALTH_SECONDS", "0") or 0)


async def _health() -> bool:
    await asyncio.sleep(HEALTH_SECONDS)
    return True


asgi = SystemdMiddleware(_app, health=_health if HEALTH_SECONDS else None)


def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
