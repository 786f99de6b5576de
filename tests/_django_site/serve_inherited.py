"""Serve the project under waitress on a socket that listened before Django started.

As socket activation or a parent's fd would: the kernel accepts connections on it from
the start, long before waitress serves (``SITE_GAP`` seconds after Django's setup).
``python -m _django_site.serve_inherited PORT``.
"""

import socket
import sys

sock = socket.create_server(("127.0.0.1", int(sys.argv[1])))  # before Django starts

import waitress  # noqa: E402

from _django_site.wsgi import application  # noqa: E402

waitress.serve(application, sockets=[sock], threads=2)
