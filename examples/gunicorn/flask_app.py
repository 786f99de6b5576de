"""A sync Flask app for gunicorn. Nothing in here knows about systemd or sdready.

    gunicorn -c gunicorn.conf.py flask_app:app

Importing it takes a moment (EXAMPLE_STARTUP_DELAY, 1 s), standing in for the imports,
configuration and caches of a real app: gunicorn's own READY would come before any worker
could answer; with sdready's plugin it comes once one can.
"""

from __future__ import annotations

import os
import time

from flask import Flask


def _load_settings() -> dict[str, str]:
    time.sleep(float(os.environ.get("EXAMPLE_STARTUP_DELAY", "1")))
    return {"greeting": "hello from Flask"}


SETTINGS = _load_settings()
app = Flask(__name__)


@app.get("/")
def index() -> dict[str, object]:
    return {"greeting": SETTINGS["greeting"], "pid": os.getpid()}


@app.get("/healthz")
def healthz() -> dict[str, bool]:
    return {"ok": True}
