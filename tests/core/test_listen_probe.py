"""probe="connect" and probe="http:/path" against real servers on loopback."""

from __future__ import annotations

import asyncio
import http.server
import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _servers import serving_http
from sdready._listen._listeners import (
    ListenTimeoutError,
    async_wait_until_listening,
    wait_until_listening,
)
from sdready._listen._probe import Probe, probe_blocking

WAIT = 10.0


class App:
    """What the test HTTP server answers, and what it was asked."""

    def __init__(self) -> None:
        self.status = 200
        self.requests: list[tuple[str, str | None, str | None]] = []  # path, Host, User-Agent
        self.lock = threading.Lock()


def handler_for(app: App) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with app.lock:
                app.requests.append(
                    (self.path, self.headers.get("Host"), self.headers.get("User-Agent"))
                )
                status = app.status
            body = b"ok\n" if status < 500 else b"starting\n"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output clean

    return Handler


@pytest.fixture
def app() -> App:
    return App()


@pytest.fixture
def http_server(app: App) -> Iterator[http.server.ThreadingHTTPServer]:
    with serving_http(handler_for(app)) as server:
        yield server


def port_of(server: http.server.ThreadingHTTPServer) -> int:
    port: int = server.server_address[1]
    return port


class RawServer:
    """Accepts connections on loopback and answers each with *respond*, in a thread."""

    def __init__(self, respond: Callable[[socket.socket], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.01)
        self.port: int = self.sock.getsockname()[1]
        self._respond = respond
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        for _ in range(10_000):  # bounded
            if self._stop.is_set():
                return
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)  # the request
                    self._respond(conn)
                except OSError:
                    pass

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.sock.close()


# --- http ----------------------------------------------------------------------------


def test_http_probe_passes_on_success_and_sends_host(
    app: App, http_server: http.server.ThreadingHTTPServer
) -> None:
    port = port_of(http_server)
    found = wait_until_listening(WAIT, expect=port, probe="http:/health?full=1")
    assert [item.port for item in found] == [port]
    assert app.requests == [("/health?full=1", f"127.0.0.1:{port}", "sdready-probe")]


def test_http_probe_accepts_any_status_below_500(
    app: App, http_server: http.server.ThreadingHTTPServer
) -> None:
    app.status = 404
    assert wait_until_listening(WAIT, expect=port_of(http_server), probe="http:/missing")


def test_http_probe_retries_until_the_app_stops_failing(
    app: App, http_server: http.server.ThreadingHTTPServer
) -> None:
    app.status = 503
    flip = threading.Timer(0.15, lambda: setattr(app, "status", 200))
    flip.start()
    try:
        wait_until_listening(WAIT, expect=port_of(http_server), probe="http:/health")
    finally:
        flip.join()
    assert len(app.requests) >= 2  # at least one 503, then the 200


def test_http_probe_that_keeps_failing_times_out_with_the_reason(
    app: App, http_server: http.server.ThreadingHTTPServer
) -> None:
    app.status = 500
    port = port_of(http_server)
    with pytest.raises(ListenTimeoutError) as caught:
        wait_until_listening(0.2, expect=port, probe="http:/health")
    error = caught.value
    assert str(error) == (
        "timed out after 0.2 s waiting for listening sockets: "
        f"found 127.0.0.1:{port}, but probe http:/health failed: HTTP 500"
    )
    assert error.probe_failure == "HTTP 500"
    assert error.missing == ()
    assert [item.port for item in error.found] == [port]


def test_http_probe_async_retries_until_the_app_stops_failing(
    app: App, http_server: http.server.ThreadingHTTPServer
) -> None:
    app.status = 500

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        asyncio.get_running_loop().call_later(0.15, setattr, app, "status", 200)
        try:
            await async_wait_until_listening(
                WAIT, expect=port_of(http_server), probe="http:/health"
            )
        finally:
            ticking.cancel()
            await asyncio.gather(ticking, return_exceptions=True)
        return ticks

    assert asyncio.run(main()) >= 30  # ~150 expected: the probes never blocked the loop
    assert len(app.requests) >= 2
    assert app.requests[-1][1] == f"127.0.0.1:{port_of(http_server)}"


def test_http_probe_async_times_out_with_the_reason(
    app: App, http_server: http.server.ThreadingHTTPServer
) -> None:
    app.status = 502
    with pytest.raises(ListenTimeoutError) as caught:
        asyncio.run(
            async_wait_until_listening(0.2, expect=port_of(http_server), probe="http:/health")
        )
    assert caught.value.probe_failure == "HTTP 502"


def test_http_probe_over_a_unix_socket(tmp_path: Path, app: App) -> None:
    class UnixHTTPServer(socketserver.ThreadingUnixStreamServer):
        daemon_threads = True

    path = str(tmp_path / "http.sock")
    server = UnixHTTPServer(path, handler_for(app))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        wait_until_listening(WAIT, expect=path, probe="http:/health")
        asyncio.run(async_wait_until_listening(WAIT, expect=path, probe="http:/health"))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
    assert [host for _, host, _ in app.requests] == ["localhost", "localhost"]


def test_http_probe_of_a_listener_that_never_answers() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never accepts
        port = silent.getsockname()[1]
        with pytest.raises(ListenTimeoutError) as caught:
            wait_until_listening(0.3, expect=port, probe="http:/", probe_timeout=0.05)
        assert caught.value.probe_failure == "no HTTP status line within 0.05 s"
        with pytest.raises(ListenTimeoutError) as caught:
            asyncio.run(
                async_wait_until_listening(0.3, expect=port, probe="http:/", probe_timeout=0.05)
            )
        assert caught.value.probe_failure == "no HTTP status line within 0.05 s"


def test_http_probe_rejects_a_server_that_does_not_speak_http() -> None:
    with RawServer(lambda conn: conn.sendall(b"SSH-2.0-OpenSSH\r\n")) as server:
        with pytest.raises(ListenTimeoutError) as caught:
            wait_until_listening(0.2, expect=server.port, probe="http:/")
        assert caught.value.probe_failure == "not an HTTP response: b'SSH-2.0-OpenSSH\\r\\n'"


def test_http_probe_skips_interim_responses_and_does_not_wait_for_eof() -> None:
    def respond(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
        conn.recv(1)  # keep the connection open until the client closes it

    with RawServer(respond) as server:
        began = time.monotonic()
        wait_until_listening(WAIT, expect=server.port, probe="http:/", probe_timeout=5)
        assert time.monotonic() - began < 2.5  # sanity: did not sit out the probe timeout


def test_http_probe_reads_a_body_by_its_length_then_stops() -> None:
    def respond(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")
        time.sleep(0.01)
        conn.sendall(b"lo")
        conn.recv(1)

    with RawServer(respond) as server:
        began = time.monotonic()
        wait_until_listening(WAIT, expect=server.port, probe="http:/", probe_timeout=5)
        assert time.monotonic() - began < 2.5


def test_http_probe_judges_a_status_whose_body_never_ends() -> None:
    def respond(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nstreaming...")
        conn.recv(1)

    with RawServer(respond) as server:
        wait_until_listening(WAIT, expect=server.port, probe="http:/", probe_timeout=0.1)


# --- connect ----------------------------------------------------------------------------


def test_connect_probe_on_tcp_and_abstract_unix() -> None:
    name = f"\0sdready-probe-{os.getpid()}"
    with socket.create_server(("127.0.0.1", 0)) as tcp, socket.socket(socket.AF_UNIX) as unix:
        unix.bind(name)
        unix.listen()
        expect = [tcp.getsockname()[1], "@" + name[1:]]
        assert len(wait_until_listening(WAIT, expect=expect, probe="connect")) == 2
        assert (
            len(asyncio.run(async_wait_until_listening(WAIT, expect=expect, probe="connect"))) == 2
        )
        accepted = [tcp.accept()[0], tcp.accept()[0], unix.accept()[0], unix.accept()[0]]
        for conn in accepted:
            assert conn.recv(1) == b""  # the probe connected, sent nothing, closed
            conn.close()


def test_connect_probe_reports_a_refused_connection() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        listener = wait_until_listening(WAIT, expect=server.getsockname()[1])[0]
    failure = probe_blocking(listener, Probe("connect"), 1.0)
    assert failure is not None
    assert failure.startswith("Connection refused")
