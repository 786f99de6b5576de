"""A FastAPI app for gunicorn with the uvicorn worker. Nothing in here knows about sdready.

    gunicorn -c python:sdready.plugins.gunicorn -k uvicorn_worker.UvicornWorker fastapi_app:app

Its lifespan startup takes a moment (EXAMPLE_STARTUP_DELAY, 1 s), standing in for opening
a database pool or loading a model. gunicorn runs ``post_worker_init`` *before* that, so
sdready counts an ASGI worker as ready only once its lifespan startup has completed.
Adding ``sdready.plugins.asgi.SystemdMiddleware`` too is harmless: under the gunicorn
plugin the workers have no ``NOTIFY_SOCKET`` and the middleware stays silent.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await asyncio.sleep(float(os.environ.get("EXAMPLE_STARTUP_DELAY", "1")))
    app.state.greeting = "hello from FastAPI"
    yield


app = FastAPI(lifespan=lifespan)


@app.get("/")
async def index() -> dict[str, object]:
    return {"greeting": app.state.greeting, "pid": os.getpid()}


@app.get("/healthz")
async def healthz() -> dict[str, bool]:
    return {"ok": True}
