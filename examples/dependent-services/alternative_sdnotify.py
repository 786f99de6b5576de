"""For ``examples/demo.py --compare`` only: B sending READY=1 from its own startup code.

This is how the sdnotify and systemd-python libraries are used in web apps: the app says
READY when its startup code is done. The server binds and listens only afterwards, so
READY is early by however long that takes (short for uvicorn, long for a pre-fork server).
Do not copy this; service_b.py is the fixed version.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

STARTUP_SECONDS = float(os.environ.get("B_STARTUP_SECONDS", "0.8"))


def notify_ready() -> str:
    """Send READY=1 the way an app without sdready does; return which library did it."""
    try:
        import sdnotify  # pip install sdnotify (sdready's "bench" extra)
    except ImportError:
        pass
    else:
        sdnotify.SystemdNotifier().notify("READY=1")
        return "sdnotify"
    try:
        from systemd import daemon  # pip install systemd-python
    except ImportError:
        pass
    else:
        daemon.notify("READY=1")
        return "systemd-python"
    import socket  # what both libraries do underneath

    address = os.environ.get("NOTIFY_SOCKET", "")
    if address:
        target = "\0" + address[1:] if address.startswith("@") else address
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"READY=1", target)
    return "a raw datagram"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await asyncio.sleep(STARTUP_SECONDS)
    print(f"startup done, READY=1 sent with {notify_ready()}", flush=True)
    yield


app = FastAPI(lifespan=lifespan)


@app.get("/")
async def hello() -> dict[str, object]:
    return {"service": "B", "pid": os.getpid()}
