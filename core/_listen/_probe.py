"""Optional proof that a listener answers: one connection, or one HTTP GET below status 500.

A listening socket accepts connections into its backlog even while the app is busy, so
the kernel's word is enough for most services; these probes are for users who want the
app itself to have answered. Both use plain sockets: no HTTP client library.
"""

import time

from .._cstd import TYPE_CHECKING
from .._record import Record

# Light on purpose: sdready exec checks --probe with parse_probe before it spawns its
# command, so the socket module (and through it enum) is imported only to probe.
if TYPE_CHECKING:
    from ._sockets import Listener

__all__ = ["DEFAULT_PROBE_TIMEOUT", "Probe", "parse_probe", "probe_async", "probe_blocking"]

#: One probe attempt's own bound; the wait's deadline bounds all of them (the options read it
#: through :mod:`sdready._values`, with the other defaults).
DEFAULT_PROBE_TIMEOUT = 1.0
_MAX_RESPONSE = 64 * 1024  # enough for any status line and headers; the body is not needed
_PATH_CHARS = frozenset(map(chr, range(0x21, 0x7F)))  # printable ASCII, no space


class Probe(Record):
    """A parsed ``probe=`` option: ``connect``, or ``http`` with the path to GET."""

    __slots__ = ("kind", "path")
    __match_args__ = ("kind", "path")

    kind: str
    path: str

    def __init__(self, kind: str, path: str = "") -> None:
        self._set(kind=kind, path=path)

    def __str__(self) -> str:
        return "connect" if self.kind == "connect" else f"http:{self.path}"


def parse_probe(probe: str | None) -> Probe | None:
    """Parse ``None``, ``"connect"`` or ``"http:/path"``; raise :class:`ValueError` otherwise."""
    if probe is None:
        return None
    if probe == "connect":
        return Probe("connect")
    if isinstance(probe, str) and probe.startswith("http:"):
        path = probe[len("http:") :]
        if path.startswith("/") and set(path) <= _PATH_CHARS:
            return Probe("http", path)
    raise ValueError(
        f"probe must be None, 'connect' or 'http:/path' (printable ASCII, no spaces), not {probe!r}"
    )


def probe_blocking(listener: "Listener", probe: Probe, timeout: float) -> str | None:
    """Run *probe* against *listener* within *timeout*; return None if it passed, else why not."""
    import socket

    deadline = time.monotonic() + timeout
    response = _HttpResponse()
    connected = False
    try:
        with socket.socket(listener.family, socket.SOCK_STREAM) as sock:
            sock.settimeout(max(timeout, 1e-3))
            sock.connect(listener.connect_address)
            connected = True
            if probe.kind == "connect":
                return None
            sock.sendall(_request(listener, probe.path))
            while not response.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                sock.settimeout(remaining)
                response.feed(sock.recv(16384))
    except TimeoutError:
        if not connected:
            return f"connect timed out after {timeout:.2g} s"
        # Judged below: a status line may have arrived before the body stalled.
    except OSError as exc:
        return _os_error_text(exc)
    return response.verdict(timeout)


async def probe_async(listener: "Listener", probe: Probe, timeout: float) -> str | None:
    """Like :func:`probe_blocking`, without blocking the running event loop."""
    import asyncio  # only here: importing sdready must not import asyncio
    import socket

    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout
    response = _HttpResponse()
    connected = False
    # The loop's sock_* calls work for every family alike, unix abstract names included,
    # and leave no transport behind to close.
    with socket.socket(listener.family, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, listener.connect_address), timeout)
            connected = True
            if probe.kind == "connect":
                return None
            request = _request(listener, probe.path)
            remaining = max(0.0, deadline - time.monotonic())
            await asyncio.wait_for(loop.sock_sendall(sock, request), remaining)
            while not response.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                response.feed(await asyncio.wait_for(loop.sock_recv(sock, 16384), remaining))
        except (TimeoutError, asyncio.TimeoutError):  # distinct classes before Python 3.11
            if not connected:
                return f"connect timed out after {timeout:.2g} s"
        except OSError as exc:
            return _os_error_text(exc)
    return response.verdict(timeout)


def _request(listener: "Listener", path: str) -> bytes:
    import socket  # the probe that asks has loaded it

    target = listener.connect_address
    if isinstance(target, tuple):
        host = f"[{target[0]}]" if listener.family == socket.AF_INET6 else target[0]
        authority = f"{host}:{target[1]}"
    else:
        authority = "localhost"  # unix sockets have no authority; servers want a Host anyway
    return (
        f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: sdready-probe\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("ascii", "backslashreplace")


def _os_error_text(exc: OSError) -> str:
    return f"{exc.strerror} (errno {exc.errno})" if exc.strerror else str(exc) or repr(exc)


class _HttpResponse:
    """Incremental reader of one HTTP/1.x response: its final status, then enough of the body."""

    __slots__ = ("_body_left", "_buffer", "_garbage", "_received", "done", "status")

    def __init__(self) -> None:
        self.status: int | None = None
        self.done = False
        self._buffer = bytearray()
        self._body_left: int | None = None  # bytes still expected after the headers, if announced
        self._received = 0
        self._garbage = b""

    def feed(self, data: bytes) -> None:
        if not data:  # EOF
            self.done = True
            return
        self._received += len(data)
        if self._received > _MAX_RESPONSE:
            self.done = True  # the status is known or never will be: stop reading
        if self.status is not None:
            self._consume_body(len(data))
            return
        self._buffer += data
        while self.status is None and not self._garbage:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if not self._buffer.startswith(b"HTTP/"[: len(self._buffer)]):
                    self._garbage = bytes(self._buffer[:40])
                    self.done = True
                return
            head = bytes(self._buffer[:end])
            del self._buffer[: end + 4]
            self._parse_head(head)
        if self.status is not None:
            self._consume_body(len(self._buffer))
            self._buffer.clear()

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            self._garbage = lines[0][:40]
            self.done = True
            return
        status = int(parts[1])
        if 100 <= status < 200:
            return  # interim (103 Early Hints): the final status follows
        self.status = status
        if status in (204, 304):
            self._body_left = 0  # never a body, whatever the headers say
            return
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and value.strip().isdigit():
                self._body_left = int(value.strip())

    def _consume_body(self, size: int) -> None:
        # Reading the announced body before closing spares the server a reset connection.
        if self._body_left is not None:
            self._body_left -= size
            if self._body_left <= 0:
                self.done = True

    def verdict(self, timeout: float) -> str | None:
        if self.status is not None:
            return None if self.status < 500 else f"HTTP {self.status}"
        if self._garbage:
            return f"not an HTTP response: {self._garbage!r}"
        if self.done:
            return "connection closed before an HTTP status line"
        return f"no HTTP status line within {timeout:.2g} s"
