"""Start real ASGI servers on loopback in child processes, each reporting to its own recorder.

Every server binds port 0 (or a private unix socket), so parallel tests never compete for a
port; the READY message's STATUS says where it listens. Each child runs in its own process
group, killed whole when the block ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sdready.testing import NotifyMessage, NotifyRecorder

TESTS_DIR = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

#: Every server configuration the issue lists, by test id.
SERVERS = (
    "uvicorn",
    "uvicorn-workers",
    "uvicorn-uds",
    "uvicorn-fd",
    "hypercorn-asyncio",
    "hypercorn-trio",
    "granian",
    "gunicorn-uvicorn",
)

_READY_ADDRESS = re.compile(r"listening on (\S+?)(?:,| \(pid| and)")


@dataclass
class ServerRun:
    """A running server: its process, recorder, and where a client reaches it."""

    kind: str
    process: subprocess.Popen[bytes]
    recorder: NotifyRecorder
    workdir: Path
    uds: str | None = None
    log_path: Path | None = None
    inherited: socket.socket | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def log(self) -> str:
        """The server's combined output so far (for assertion messages)."""
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError as exc:
            return f"<no log: {exc}>"

    def wait_ready(self, timeout: float = 20.0) -> NotifyMessage:
        """The first READY=1 (gunicorn's own arbiter READY excluded: it is not ours)."""
        return self.recorder.wait_for(_is_our_ready, timeout)

    def address_of(self, message: NotifyMessage) -> tuple[int, object]:
        """(family, connect address) of the first listener a READY's STATUS names."""
        if self.uds is not None:
            return socket.AF_UNIX, self.uds
        match = _READY_ADDRESS.search(message.get("STATUS", "") or "")
        assert match is not None, f"no address in {message}"
        return parse_address(match.group(1))

    def kill(self) -> None:
        """SIGKILL the whole process group at once (when how it ends does not matter)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (a graceful shutdown: lifespan.shutdown runs), then wait; None on timeout."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


def _is_our_ready(message: NotifyMessage) -> bool:
    return message.get("READY") == "1" and not (message.get("STATUS") or "").startswith("Gunicorn")


def parse_address(text: str) -> tuple[int, object]:
    """``127.0.0.1:8000`` / ``[::1]:8000`` / ``/path`` → (family, connect address)."""
    if text.startswith("/"):
        return socket.AF_UNIX, text
    host, _, port = text.rpartition(":")
    if host.startswith("["):
        host = host[1:-1]
        host = "::1" if host == "::" else host
        return socket.AF_INET6, (host, int(port))
    return socket.AF_INET, ("127.0.0.1" if host == "0.0.0.0" else host, int(port))


def http_get(
    family: int, address: object, path: str = "/", timeout: float = 2.0
) -> tuple[int, bytes]:
    """One HTTP/1.1 GET on a fresh connection; return (status, body). Raises on failure."""
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(address)  # type: ignore[arg-type]
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = client.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1."), f"not an HTTP response: {data[:200]!r}"
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return int(status_line.split()[1]), body


def _dechunk(body: bytes) -> bytes:
    out = []
    while body:
        size_text, _, rest = body.partition(b"\r\n")
        size = int(size_text.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.append(rest[:size])
        body = rest[size + 2 :]
    return b"".join(out)


def server_command(
    kind: str, target: str, *, uds: str | None = None, fd: int | None = None, port: int = 0
) -> list[str]:
    """argv for one server configuration; *target* is ``module:attribute``."""
    py = sys.executable
    if kind in ("uvicorn", "uvicorn-workers", "uvicorn-uds", "uvicorn-fd"):
        argv = [py, "-m", "uvicorn", target, "--log-level", "warning", "--lifespan", "on"]
        if kind == "uvicorn-uds":
            assert uds is not None
            return [*argv, "--uds", uds]
        if kind == "uvicorn-fd":
            assert fd is not None
            return [*argv, "--fd", str(fd)]
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        return [*argv, "--workers", "2"] if kind == "uvicorn-workers" else argv
    if kind.startswith("hypercorn"):
        worker = kind.partition("-")[2]
        return [
            py, "-m", "hypercorn", target, "--bind", f"127.0.0.1:{port}", "--worker-class", worker,
            "--log-level", "warning",
        ]  # fmt: skip
    if kind == "granian":
        return [
            str(BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--log-level", "warning", target,
        ]  # fmt: skip
    if kind == "gunicorn-uvicorn":
        return [
            py, "-m", "gunicorn", target, "--bind", f"127.0.0.1:{port}", "--workers", "1",
            "--worker-class", "uvicorn_worker.UvicornWorker", "--log-level", "warning",
        ]  # fmt: skip
    raise ValueError(f"unknown server {kind!r}")


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a server child: tests/ importable, no systemd leftovers."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")
        and not k.startswith("SDREADY_TEST_")
        and not k.startswith("PYTEST_")
    }
    path = [str(TESTS_DIR), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


@contextlib.contextmanager
def run_server(
    kind: str,
    target: str = "_asgi_apps:app",
    *,
    env: Mapping[str, str] | None = None,
    argv: Sequence[str] | None = None,
    notify: bool = True,
    prepare: Callable[[Path], None] | None = None,
    port: int = 0,
) -> Iterator[ServerRun]:
    """Start *kind* serving *target* with its own NotifyRecorder; kill its process group after.

    The recorder is not installed in ``os.environ`` (parallel runs in one test would clash):
    only the child gets ``NOTIFY_SOCKET`` (unless *notify* is False).
    """
    workdir = Path(tempfile.mkdtemp(prefix="sdready-asgi-"))
    recorder = NotifyRecorder(str(workdir / "notify.sock"), set_environment=False).start()
    inherited: socket.socket | None = None
    process: subprocess.Popen[bytes] | None = None
    try:
        uds = str(workdir / "app.sock") if kind == "uvicorn-uds" else None
        fd = None
        if kind == "uvicorn-fd":
            # As systemd's socket activation passes it: bound and already listening.
            inherited = socket.socket()
            inherited.bind(("127.0.0.1", 0))
            inherited.listen(128)
            fd = inherited.fileno()
        if prepare is not None:
            prepare(workdir)
        command = (
            list(argv)
            if argv is not None
            else server_command(kind, target, uds=uds, fd=fd, port=port)
        )
        child = child_env(env)
        if notify:
            child["NOTIFY_SOCKET"] = recorder.address
        log_path = workdir / "server.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                env=child,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed whole below
                pass_fds=(fd,) if fd is not None else (),
            )
        run = ServerRun(kind, process, recorder, workdir, uds, log_path, inherited)
        if inherited is not None:
            host, port = inherited.getsockname()
            run.extra["address"] = (socket.AF_INET, (host, port))
        yield run
    finally:
        if process is not None:
            _kill_group(process)
        if inherited is not None:
            inherited.close()
        recorder.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    # The group outlives its leader (uvicorn/granian/gunicorn workers): always signal it.
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if process.poll() is not None and not _group_alive(process.pid):
                return
            time.sleep(0.02)
    process.wait(5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ready_then_get(run: ServerRun, timeout: float = 20.0) -> tuple[NotifyMessage, int, bytes]:
    """Wait for READY, then at once connect and GET /; return the message and the response."""
    try:
        message = run.wait_ready(timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nserver output:\n{run.log()}") from None
    family, address = run.address_of(message)
    try:
        status, body = http_get(family, address)
    except OSError as exc:
        raise AssertionError(
            f"READY arrived but GET {address} failed: {exc!r}\n{message}\n{run.log()}"
        ) from exc
    return message, status, body
