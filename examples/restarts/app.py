"""Flask on waitress, with a listening socket that survives restarts.

``sdready.listen_socket`` returns the socket systemd passed back (from the unit's fd store
or a ``.socket`` unit), or binds a new one and hands it to the fd store, so connections
made while the service restarts wait in the socket's backlog instead of being refused::

    python app.py --listen 127.0.0.1:8000

See ``waitress-fdstore.service``: ``FileDescriptorStoreMax=1`` (and, on systemd >= 254,
``FileDescriptorStorePreserve=yes``).
"""

from __future__ import annotations

import argparse
import logging

import sdready
from flask import Flask
from sdready.plugins.flask import SystemdNotify

logging.basicConfig(level=logging.INFO)  # sdready says where the socket came from

app = Flask(__name__)
SystemdNotify(app)


@app.get("/")
def index() -> dict[str, str]:
    return {"hello": "world"}


def main() -> None:
    parser = argparse.ArgumentParser(description="Flask on waitress, socket kept by systemd")
    parser.add_argument("--listen", default="127.0.0.1:8000", help="IP:PORT, /path or @name")
    args = parser.parse_args()
    import waitress

    # keep=True: systemd < 254 cannot tell the app that the unit has a store.
    sock = sdready.listen_socket(args.listen, keep=True)
    waitress.serve(app, sockets=[sock])


if __name__ == "__main__":
    main()
