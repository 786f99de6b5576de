"""Real WSGI servers running a Flask app with SystemdNotify, each in its own process group.

:func:`write_app` writes one app module whose behaviour the environment chooses (so every
test runs the same code): ``APP_GAP`` seconds of sleep between creating the extension and
serving, ``APP_EXT_ARGS`` (JSON) for the constructor, ``APPCFG_*`` for ``app.config``
(Flask's ``from_prefixed_env``), ``APP_FAIL=import`` to raise after the extension exists,
``APP_HEALTH=1`` to gate the watchdog on a file named by ``app.config["HEALTH_FILE"]``.
Run as a script, ``argv[1]`` picks the server: ``werkzeug`` (``app.run(threaded=True)``),
``waitress``, ``waitress-fd`` (``serve(sockets=[socket(fileno=argv[2])])``) or ``two-apps``.
Just before serving it prints ``SERVING_AT <time.monotonic()>`` to stderr (the clock is
system-wide, so it compares with the recorder's receive times).
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from _gunicorn_support import NO_CONTROL_SOCKET
from _servers import ServerProcess, child_env, http_get
from sdready.testing import NotifyMessage, NotifyRecorder

__all__ = [
    "KINDS",
    "RoundResult",
    "Server",
    "command",
    "is_our_ready",
    "ready_address",
    "repeat_ready_then_get",
    "run_server",
    "write_app",
]

APP_MODULE = "flask_app"
APP_SOURCE = """\
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

logging.basicConfig(
    level=logging.DEBUG, stream=sys.stderr, format="%(process)d %(levelname)s %(name)s: %(message)s"
)

from flask import Flask, current_app
from sdready.plugins.flask import SystemdNotify


def create_app(name="flask_app"):
    app = Flask(name)
    app.config.from_prefixed_env("APPCFG")

    @app.get("/")
    def index():
        return "ok"

    @app.get("/pid")
    def pid():
        return str(os.getpid())

    return app


def healthy():
    return Path(current_app.config["HEALTH_FILE"]).exists()  # needs the app context


ext_args = json.loads(os.environ.get("APP_EXT_ARGS", "{}"))
if os.environ.get("APP_HEALTH") == "1":
    ext_args["health"] = healthy
ext = SystemdNotify(**ext_args)
app = create_app()
ext.init_app(app)
time.sleep(float(os.environ.get("APP_GAP", "0")))
if os.environ.get("APP_FAIL") == "import":
    raise ImportError("simulated import error after SystemdNotify(app)")


def serve(kind, argv):
    port = int(argv[0]) if argv else 0
    print(f"SERVING_AT {time.monotonic()}", file=sys.stderr, flush=True)
    if kind == "werkzeug":
        app.run(host="127.0.0.1", port=port, threaded=True)
    elif kind == "waitress":
        import waitress

        waitress.serve(app, host="127.0.0.1", port=port, threads=2)
    elif kind == "waitress-fd":
        import waitress

        waitress.serve(app, sockets=[socket.socket(fileno=int(argv[0]))], threads=2)
    elif kind == "two-apps":
        import waitress
        from sdready.plugins import flask as plugin
        from werkzeug.middleware.dispatcher import DispatcherMiddleware

        other = create_app("other")
        ext.init_app(other)
        threads = [t.name for t in __import__("threading").enumerate()]
        print(f"APPS {len(plugin._process.apps)} THREADS {threads}", file=sys.stderr, flush=True)
        waitress.serve(
            DispatcherMiddleware(app, {"/other": other}), host="127.0.0.1", port=port, threads=2
        )
    else:
        raise SystemExit(f"unknown server {kind!r}")
    print("SERVE_RETURNED", file=sys.stderr, flush=True)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2:])
"""

#: Servers of the readiness matrix: how each is started.
KINDS = ("werkzeug", "flask-run", "waitress", "gunicorn")
_READY_STATUS = re.compile(r"^Ready: listening on (\S+?)(?:,| \(pid)")
_CLEAN_ENV = (  # besides systemd's variables (_servers.child_env drops those)
    "WERKZEUG_RUN_MAIN",
    "WERKZEUG_SERVER_FD",
    "SERVER_SOFTWARE",
    "FLASK_APP",
    "FLASK_DEBUG",
    "FLASK_RUN_FROM_CLI",
    "APP_",
    "APPCFG_",
)


def write_app(directory: Path) -> Path:
    """Write the app module into *directory*; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{APP_MODULE}.py"
    path.write_text(APP_SOURCE)
    return path


def command(kind: str, app: Path, args: Sequence[str] = ()) -> list[str]:
    """The argv that starts *kind* serving the app module *app* (run with cwd = its folder)."""
    python = sys.executable
    if kind in ("werkzeug", "waitress", "waitress-fd", "two-apps"):
        return [python, str(app), kind, *args]
    if kind == "waitress-serve":
        listen = f"--listen=127.0.0.1:{args[0] if args else 0}"
        return [python, "-m", "waitress", listen, "--threads=2", f"{APP_MODULE}:app"]
    if kind in ("flask-run", "flask-run-debug"):
        port = args[0] if args else "0"
        debug = ["--debug"] if kind == "flask-run-debug" else []
        return [python, "-m", "flask", "--app", APP_MODULE, "run", *debug, "--port", port]
    if kind in ("gunicorn", "gunicorn-plugin"):
        bind = f"127.0.0.1:{args[0] if args else 0}"
        config = ["-c", "python:sdready.plugins.gunicorn"] if kind == "gunicorn-plugin" else []
        return [
            python,
            "-m",
            "gunicorn",
            *config,
            "-b",
            bind,
            "-w",
            "1",
            *NO_CONTROL_SOCKET.split(),
            f"{APP_MODULE}:app",
        ]
    raise ValueError(f"unknown server kind {kind!r}")


def is_our_ready(message: NotifyMessage) -> bool:
    """READY=1 sent by SystemdNotify (gunicorn's own premature READY has another STATUS)."""
    return (
        message.get("READY") == "1" and _READY_STATUS.match(message.get("STATUS") or "") is not None
    )


def ready_address(message: NotifyMessage) -> str:
    """The first ``host:port`` of a ``Ready: listening on ...`` STATUS."""
    match = _READY_STATUS.match(message.get("STATUS") or "")
    assert match is not None, f"not a READY status: {message}"
    return match.group(1)


class Server(ServerProcess):
    """A server process (the leader of its own process group: werkzeug's reloader child,
    gunicorn's workers) and its recorder."""

    recorder: NotifyRecorder

    def wait_ready(self, timeout: float = 30.0) -> NotifyMessage:
        """Our READY=1; fails early if the process exits, showing messages and output."""
        deadline = time.monotonic() + timeout
        while True:
            exited = self.process.poll() is not None
            try:
                return self.recorder.wait_for(is_our_ready, 0.0 if exited else 0.25)
            except AssertionError as exc:
                if exited or time.monotonic() >= deadline:
                    state = f"exited with {self.process.returncode}" if exited else "running"
                    raise AssertionError(
                        f"no READY ({state}): {exc}\n--- server output:\n{self.output()[-4000:]}"
                    ) from None

    def serving_at(self) -> float:
        match = re.search(r"^SERVING_AT (\S+)$", self.output(), re.MULTILINE)
        assert match is not None, f"no SERVING_AT line:\n{self.output()[-2000:]}"
        return float(match.group(1))


@contextlib.contextmanager
def run_server(
    kind: str,
    app: Path,
    recorder: NotifyRecorder,
    *,
    gap: float = 0.0,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    pass_fds: Sequence[int] = (),
    log_name: str | None = None,
) -> Iterator[Server]:
    """Start *kind* with ``NOTIFY_SOCKET`` pointing at *recorder*; kill its group at the end."""
    environ = child_env({"APP_GAP": str(gap), **(env or {})}, notify=recorder, drop=_CLEAN_ENV)
    log = app.parent / (log_name or f"{kind}-{time.monotonic_ns()}.log")
    argv = command(kind, app, args)
    server = Server(
        argv, env=environ, log=log, cwd=app.parent, pass_fds=pass_fds, recorder=recorder
    )
    try:
        yield server
    finally:
        server.kill()


@dataclass
class RoundResult:
    """One repetition of "start a server, GET at the moment READY arrives"."""

    ok: bool
    detail: str
    ready_after: float = 0.0  # seconds from spawn to READY


def _one_round(kind: str, app: Path, gap: float, index: int) -> RoundResult:
    recorder = NotifyRecorder(set_environment=False).start()
    try:
        began = time.monotonic()
        with run_server(kind, app, recorder, gap=gap, log_name=f"{kind}-{gap}-{index}.log") as srv:
            try:
                message = srv.wait_ready(30.0)
            except AssertionError as exc:
                return RoundResult(False, f"round {index}: no READY: {exc}")
            address = ready_address(message)
            try:
                status, body = http_get(address, timeout=1.0)  # at once, like a dependent unit
            except OSError as exc:
                tail = srv.output()[-1500:]
                return RoundResult(False, f"round {index}: GET {address} failed: {exc!r}\n{tail}")
            if (status, body) != (200, "ok"):
                return RoundResult(False, f"round {index}: GET {address} -> {status} {body!r}")
            return RoundResult(True, "", message.time - began)
    finally:
        recorder.close()


def repeat_ready_then_get(
    kind: str, app: Path, *, rounds: int, gap: float, concurrency: int = 3
) -> list[RoundResult]:
    """Run *rounds* fresh servers (*concurrency* at a time); return every round's result."""
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(lambda i: _one_round(kind, app, gap, i), range(rounds)))
