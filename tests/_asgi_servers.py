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
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from _servers import Address, ServerProcess, child_env, http_get, parse_address
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


def _release(package: str) -> tuple[int, ...]:
    from importlib.metadata import version

    return tuple(int(part) for part in re.findall(r"\d+", version(package))[:3])


#: uvicorn >= 0.30's ``--workers`` supervisor restarts a worker that dies and exits when none
#: can start; before, it only waits for a signal (``make test-oldest`` runs uvicorn 0.23).
UVICORN_SUPERVISES_WORKERS = _release("uvicorn") >= (0, 30)
#: uvicorn >= 0.29 handles SIGTERM with a Python handler (which a shutdown delay can hold);
#: before, with ``loop.add_signal_handler``, where sdready says the delay does not apply.
UVICORN_PYTHON_SIGNALS = _release("uvicorn") >= (0, 29)

_READY_ADDRESS = re.compile(r"listening on (\S+?)(?:,| \(pid| and)")


class ServerRun(ServerProcess):
    """A running server: its process, recorder, and where a client reaches it."""

    recorder: NotifyRecorder

    def __init__(
        self,
        kind: str,
        argv: Sequence[str],
        *,
        recorder: NotifyRecorder,
        workdir: Path,
        env: Mapping[str, str],
        uds: str | None = None,
        inherited: socket.socket | None = None,
    ) -> None:
        fds = (inherited.fileno(),) if inherited is not None else ()
        log = workdir / "server.log"
        super().__init__(argv, env=env, log=log, cwd=workdir, pass_fds=fds, recorder=recorder)
        self.kind = kind
        self.workdir = workdir
        self.uds = uds
        self.inherited = inherited
        self.extra: dict[str, object] = {}

    def log(self) -> str:
        """The server's combined output so far (for assertion messages)."""
        return self.output(6000)

    def wait_ready(self, timeout: float = 20.0) -> NotifyMessage:
        """The first READY=1 (gunicorn's own arbiter READY excluded: it is not ours)."""
        return self.recorder.wait_for(_is_our_ready, timeout)

    def address_of(self, message: NotifyMessage) -> Address:
        """Where a client reaches the first listener a READY's STATUS names."""
        if self.uds is not None:
            return self.uds
        match = _READY_ADDRESS.search(message.get("STATUS", "") or "")
        assert match is not None, f"no address in {message}"
        return parse_address(match.group(1))


def _is_our_ready(message: NotifyMessage) -> bool:
    return message.get("READY") == "1" and not (message.get("STATUS") or "").startswith("Gunicorn")


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
    run: ServerRun | None = None
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
        path = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH")) if p)
        child = child_env(
            {"PYTHONPATH": path, **(env or {})},  # tests/ importable
            notify=recorder if notify else None,
            drop=("SDREADY_TEST_", "PYTEST_"),
        )
        run = ServerRun(
            kind,
            command,
            recorder=recorder,
            workdir=workdir,
            env=child,
            uds=uds,
            inherited=inherited,
        )
        if inherited is not None:
            host, bound_port = inherited.getsockname()
            run.extra["address"] = (socket.AF_INET, (host, bound_port))
        yield run
    finally:
        if run is not None:
            run.close()
        if inherited is not None:
            inherited.close()
        recorder.close()
        shutil.rmtree(workdir, ignore_errors=True)


def ready_then_get(run: ServerRun, timeout: float = 20.0) -> tuple[NotifyMessage, int, str]:
    """Wait for READY, then at once connect and GET /; return the message and the response."""
    try:
        message = run.wait_ready(timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nserver output:\n{run.log()}") from None
    address = run.address_of(message)
    try:
        status, body = http_get(address, timeout=2.0)
    except OSError as exc:
        raise AssertionError(
            f"READY arrived but GET {address} failed: {exc!r}\n{message}\n{run.log()}"
        ) from exc
    return message, status, body
