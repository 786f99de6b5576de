"""Run a server child and talk to it: the one runner and the one GET behind every test helper.

* :func:`free_port` and :func:`reserved_port`: a loopback port for a server to bind;
* :func:`http_get`: one GET on a fresh connection, to an address written as a READY
  message's STATUS writes it (``127.0.0.1:8000``, ``[::1]:8000``, ``/run/app.sock``) or a
  ``(host, port)`` pair;
* :func:`child_env`: this environment without what systemd would have set in it;
* :class:`ServerProcess`: a child with its output in a log file, the leader of its own
  process group, ended whole within bounded waits: :meth:`ServerProcess.close` returns
  only once no process of the group is left (or its waits ran out).

The per-server helper modules (``_asgi_servers``, ``_cli_support``, ``_flask_support``,
``_gunicorn_support``) add what their servers need: argv, apps, how READY looks.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

from sdready.testing import NotifyRecorder

__all__ = [
    "Address",
    "Response",
    "ServerProcess",
    "child_env",
    "free_port",
    "http_get",
    "parse_address",
    "reserved_port",
]

#: ``(host, port)`` or a unix socket path.
Address = tuple[str, int] | str

#: What systemd sets for a service; a child must see only what its test gives it.
_SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_", "LISTEN_", "SYSTEMD_EXEC_PID")


def rounds(default: int) -> int:
    """How many rounds a statistical test runs: *default*, or fewer with
    ``SDREADY_TEST_ROUNDS=N`` (the oldest-versions job and the sdist check ask what works on
    those releases and in that package; ``make test`` runs the statistics in full)."""
    cap = os.environ.get("SDREADY_TEST_ROUNDS")
    return min(default, int(cap)) if cap else default


_Server = TypeVar("_Server", bound="ServerProcess")
_KILL_WAIT = 10.0  # after SIGKILL: only a process stuck in the kernel takes longer


def free_port() -> int:
    """A loopback port free a moment ago (another process may take it: retry on EADDRINUSE)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def reserved_port(*, reuse_port: bool = False) -> Iterator[int]:
    """A loopback port nobody else gets while the block runs.

    A guard socket bound to ``127.0.0.1:0`` with ``SO_REUSEADDR`` (and ``SO_REUSEPORT`` for
    *reuse_port*) but never listening keeps the kernel from handing the port to anyone
    else, while a server setting the same options may still bind and listen on it.
    """
    guard = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        guard.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            guard.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        guard.bind(("127.0.0.1", 0))
        yield guard.getsockname()[1]
    finally:
        guard.close()


@contextlib.contextmanager
def serving_http(
    handler: type[http.server.BaseHTTPRequestHandler],
) -> Iterator[http.server.ThreadingHTTPServer]:
    """A threaded HTTP server on a free loopback port, serving *handler* in a thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def parse_address(text: str) -> Address:
    """``127.0.0.1:8000`` / ``[::1]:8000`` / ``/path`` → ``(host, port)`` or the path.

    A wildcard host becomes its loopback address: where a client connects.
    """
    if text.startswith("/"):
        return text
    host, _, port = text.rpartition(":")
    if host.startswith("["):
        host = host[1:-1]
        return ("::1" if host == "::" else host, int(port))
    return ("127.0.0.1" if host == "0.0.0.0" else host, int(port))


class Response(NamedTuple):
    status: int
    body: str


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def http_get(address: Address, path: str = "/", timeout: float = 1.0) -> Response:
    """One GET on a fresh connection, *timeout* for the connect and each read.

    Raises ``OSError`` when the connection is refused, reset or times out, and
    ``http.client.HTTPException`` when the answer is not HTTP.
    """
    if isinstance(address, str) and not address.startswith("/"):
        address = parse_address(address)
    if isinstance(address, str):
        connection: http.client.HTTPConnection = _UnixHTTPConnection(address, timeout)
    else:
        connection = http.client.HTTPConnection(address[0], address[1], timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return Response(response.status, response.read().decode(errors="replace"))
    finally:
        connection.close()


def child_env(
    extra: Mapping[str, str] | None = None,
    *,
    notify: NotifyRecorder | None = None,
    drop: tuple[str, ...] = (),
) -> dict[str, str]:
    """This process's environment for a child: systemd's variables and those starting with
    one of *drop* removed; unbuffered, no bytecode written; ``NOTIFY_SOCKET`` pointing at
    *notify*; then *extra*."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_SYSTEMD_VARIABLES + drop)
    }
    env.update(PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    if notify is not None:
        env["NOTIFY_SOCKET"] = notify.address
    env.update(extra or {})
    return env


class ServerProcess:
    """A child process writing stdout and stderr to *log*, ended whole by :meth:`close`.

    With *own_group* (the default) the child leads a new process group, so workers,
    reloader children and re-executed masters go with it; without, only the child itself
    is signalled (its helper ends whatever it started).
    """

    #: Names the process in failure messages.
    name = "server"
    #: How long :meth:`wait` waits unless told.
    exit_timeout = 15.0

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log: Path,
        cwd: Path | None = None,
        pass_fds: Sequence[int] = (),
        own_group: bool = True,
        recorder: NotifyRecorder | None = None,
    ) -> None:
        self.log_path = log
        self.own_group = own_group
        self.recorder = recorder  # where the child's NOTIFY_SOCKET points, if anywhere
        with open(log, "ab") as output:
            self.process: subprocess.Popen[bytes] = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                pass_fds=tuple(pass_fds),
                start_new_session=own_group,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self, tail: int | None = None) -> str:
        """What the child wrote so far (its last *tail* characters)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<no output: {exc}>"
        return text if tail is None else text[-tail:]

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float | None = None) -> int:
        """The exit code; fails (with the output) when the child does not exit in time."""
        timeout = self.exit_timeout if timeout is None else timeout
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} did not exit within {timeout} s\n{self.output(4000)}"
            ) from None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the child alone (a graceful shutdown) and wait; None on timeout."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL the group now, when how it ends does not matter; wait until it is gone."""
        self.close(grace=0.0)

    def close(self, grace: float = 5.0) -> None:
        """SIGTERM the group, after *grace* seconds SIGKILL what is left, wait until none is.

        Safe to call twice. Every wait is bounded: a process that survives SIGKILL for
        10 s is left (the test's own leftover check names it).
        """
        if grace > 0:
            self._signal_all(signal.SIGTERM)
            if self._wait_gone(grace):
                return
        self._signal_all(signal.SIGKILL)
        self._wait_gone(_KILL_WAIT)

    def alive(self) -> bool:
        """Whether the child, or any live process of its group, is still there."""
        if self.process.poll() is None:
            return True
        if not self.own_group:
            return False
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # a member changed its uid: still there
            return True
        # Orphaned zombies count for kill(); they wait for init, which may reap them a
        # second later, and hold nothing: only running members are left behind.
        return bool(_live_members(self.pid))

    def _signal_all(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.own_group:
                os.killpg(self.pid, signum)  # the group outlives its leader: always signal it
            elif self.process.poll() is None:
                self.process.send_signal(signum)

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def __enter__(self: _Server) -> _Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _live_members(pgid: int) -> list[int]:
    """Pids of the group's processes that are not zombies (from /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":
            pids.append(int(entry))
    return pids
