"""Service B as a Flask app: the same story for WSGI, with waitress or gunicorn.

waitress (the Flask extension sends READY once waitress listens)::

    python service_b_flask.py --port 8000

gunicorn (the gunicorn plugin sends READY from the arbiter once a worker has loaded the
app; the extension inside the worker stays silent by itself)::

    gunicorn -c python:sdready.plugins.gunicorn --bind 127.0.0.1:8000 service_b_flask:app
"""

from __future__ import annotations

import argparse
import os
import time

from flask import Flask
from sdready.plugins.flask import SystemdNotify

STARTUP_SECONDS = float(os.environ.get("B_STARTUP_SECONDS", "0.8"))

app = Flask(__name__)
SystemdNotify(app)

# Slow work between creating the app and serving it (Flask has no startup hook): a
# listening socket, not the end of this module, is what makes B ready.
time.sleep(STARTUP_SECONDS)


@app.get("/")
def hello() -> dict[str, object]:
    return {"service": "B", "pid": os.getpid()}


def main() -> None:
    import waitress

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    waitress.serve(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
