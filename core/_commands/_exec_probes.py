"""``sdready exec --ready-address``: the readiness endpoints for any server, on their own port.

The supervisor's engine knows the command's phase (waiting, ready, stopping); a small
HTTP server in a daemon thread answers ``GET /readyz`` and ``GET /livez`` from it with
:class:`~sdready._engine._probes.Probes`, the answers every front end gives. Any other path is 404.
The thread inherits the supervisor's blocked signals, so they still reach its
``sigtimedwait`` loop only.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from .._engine._probes import HEADERS, Probes
from .._log import logger
from .._options import ReadyOptions

if TYPE_CHECKING:
    from .._engine._readiness import Readiness

__all__ = ["LIVE_PATH", "READY_PATH", "parse_ready_address", "serve_probes"]

READY_PATH = "/readyz"
LIVE_PATH = "/livez"


def parse_ready_address(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8081"``, ``"[::1]:8081"``, ``":8081"`` (every address) → (host, port);
    :class:`ValueError` for anything else."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--ready-address must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def serve_probes(address: tuple[str, int], readiness: Readiness) -> ThreadingHTTPServer:
    """Start answering the probes on *address* in a daemon thread; the server, to close."""
    probes = Probes(ReadyOptions(ready_path=READY_PATH, live_path=LIVE_PATH))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            kind = probes.match(self.path)
            if kind is None:
                self.send_error(404)
                return
            answer = probes.answer_blocking(kind, readiness)
            self.send_response(answer.status)
            for name, value in HEADERS:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: object) -> None:
            return  # a probe every second must not flood the journal

    family_server = ThreadingHTTPServer
    if ":" in address[0]:
        import socket

        class V6(ThreadingHTTPServer):
            address_family = socket.AF_INET6

        family_server = V6
    server = family_server(address, Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="sdready-probes", daemon=True).start()
    logger.info("answering GET %s and %s on %s:%d", READY_PATH, LIVE_PATH, *address[:2])
    return server
