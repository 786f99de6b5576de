"""A Flask app that tells systemd the truth: READY=1 once the server accepts connections.

Development (werkzeug, with the reloader; the unit then needs ``NotifyAccess=all``)::

    python app.py --dev                # or: flask --app app run --debug

Production (waitress; see ``sdready-flask-example.service``)::

    python app.py --port 8000

With socket activation (a ``.socket`` unit passes the listening socket as fd 3) waitress
serves that socket; sdready then waits for an HTTP probe before READY, because the kernel
accepted connections on it long before the app could answer.
"""

from __future__ import annotations

import argparse
import logging
import socket

import sdready
from flask import Flask
from sdready.plugins.flask import SystemdNotify

logging.basicConfig(level=logging.INFO)  # sdready logs why it waits on the "sdready" logger
ext = SystemdNotify()


def database_ok() -> bool:
    """Gates each watchdog ping (runs in an app context): replace with a real check."""
    return True


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.from_prefixed_env()  # e.g. FLASK_SDREADY_READY_TIMEOUT=60 in the unit
    app.config.setdefault("SDREADY_HEALTH", database_ok)

    @app.get("/")
    def index() -> dict[str, str]:
        return {"hello": "world"}

    ext.init_app(app)
    return app


app = create_app()


def main() -> None:
    parser = argparse.ArgumentParser(description="sdready Flask example")
    parser.add_argument("--dev", action="store_true", help="werkzeug with the reloader")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if args.dev:
        app.run(host=args.host, port=args.port, debug=True)
        return
    import waitress

    if sdready.listen_fds_count():  # socket activation: systemd passed fd 3
        waitress.serve(app, sockets=[socket.socket(fileno=3)])
    else:
        waitress.serve(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
