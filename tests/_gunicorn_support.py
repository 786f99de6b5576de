"""Run real gunicorn processes against a NotifyRecorder: apps, ports, cleanup.

Every run is a :class:`_servers.ServerProcess`: its own process group (ended in
``close()``, pass or fail) and its own log file. TCP runs take a port from
:func:`_servers.reserved_port`, which holds it without a race.
"""

from __future__ import annotations

import contextlib
import sys
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest
from _servers import ServerProcess, child_env, http_get, reserved_port
from sdready.testing import NotifyMessage, NotifyRecorder

__all__ = [
    "APPS",
    "Gunicorn",
    "asgi_middleware_available",
    "assert_no_builtin_ready",
    "booted_times",
    "has_gunicorn_asgi",
    "http_get",  # from _servers, for the modules that import it from here
    "reserved_port",  # from _servers, likewise
    "write_apps",
]

_VERSION = """
        VERSION = "v1"
        if os.environ.get("APP_VERSION_FILE"):
            with open(os.environ["APP_VERSION_FILE"]) as _file:
                VERSION = _file.read().strip()


        def mark_booted():
            # APP_MARK_DIR/<pid> holds the monotonic time this worker's app became ready.
            if os.environ.get("APP_MARK_DIR"):
                with open(f"{os.environ['APP_MARK_DIR']}/{os.getpid()}", "w") as _file:
                    _file.write(repr(time.monotonic()))
        """

APPS: dict[str, str] = {
    # WSGI: slow to import (APP_IMPORT_DELAY); APP_STAGGER_DIR makes the n-th importing
    # worker take n * APP_STAGGER_STEP seconds longer.
    "wsgi_app.py": """
        import os
        import time
        """
    + _VERSION
    + """
        if os.environ.get("APP_ENV_FILE"):  # what the app sees of NOTIFY_SOCKET
            with open(os.environ["APP_ENV_FILE"], "a") as _file:
                _file.write(f"{os.getpid()} {os.environ.get('NOTIFY_SOCKET', '-')}\\n")
        _delay = float(os.environ.get("APP_IMPORT_DELAY", "0"))
        if os.environ.get("APP_STAGGER_DIR"):
            for _rank in range(64):
                try:
                    os.close(os.open(f"{os.environ['APP_STAGGER_DIR']}/{_rank}",
                                     os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                    break
                except FileExistsError:
                    continue
            _delay += _rank * float(os.environ.get("APP_STAGGER_STEP", "0.4"))
        time.sleep(_delay)
        mark_booted()


        def app(environ, start_response):
            body = f"{VERSION} {os.getpid()}".encode()
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        """,
    # ASGI: imports fast, lifespan startup takes APP_LIFESPAN_DELAY seconds (or fails).
    "asgi_app.py": """
        import asyncio
        import os
        import time
        """
    + _VERSION
    + """

        async def app(scope, receive, send):
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await asyncio.sleep(float(os.environ.get("APP_LIFESPAN_DELAY", "0")))
                        if os.environ.get("APP_LIFESPAN_FAIL"):
                            await send({"type": "lifespan.startup.failed",
                                        "message": "database unreachable"})
                            return
                        mark_booted()
                        await send({"type": "lifespan.startup.complete"})
                    elif message["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            elif scope["type"] == "http":
                body = f"{VERSION} {os.getpid()}".encode()
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"text/plain"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
        """,
    "asgi_mw_app.py": """
        from asgi_app import app as _inner
        from sdready.plugins.asgi import SystemdMiddleware

        app = SystemdMiddleware(_inner)
        """,
    "broken_app.py": """
        import sdready_test_no_such_module  # noqa: F401
        """,
}


def write_apps(directory: Path) -> Path:
    """Write the test apps into *directory* (put it on PYTHONPATH); return it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, source in APPS.items():
        (directory / name).write_text(textwrap.dedent(source))
    return directory


def booted_times(mark_dir: Path) -> dict[int, float]:
    """``{pid: monotonic time its app became ready}`` from the apps' APP_MARK_DIR files."""
    times: dict[int, float] = {}
    for path in mark_dir.iterdir():
        with contextlib.suppress(ValueError):
            times[int(path.name)] = float(path.read_text())
    return times


def assert_no_builtin_ready(recorder: NotifyRecorder) -> None:
    """gunicorn's own ``READY=1`` (``STATUS=Gunicorn arbiter booted``) never got through."""
    own = [str(m) for m in recorder.messages if "Gunicorn" in m.get("STATUS", "")]
    assert not own, f"gunicorn's own notification leaked: {own}"


def asgi_middleware_available() -> bool:
    try:
        from sdready.plugins.asgi import SystemdMiddleware  # noqa: F401
    except ImportError:
        return False
    return True


def has_gunicorn_asgi() -> bool:
    """gunicorn's own ``-k asgi`` worker (gunicorn >= 24)."""
    from gunicorn.workers import SUPPORTED_WORKERS

    return "asgi" in SUPPORTED_WORKERS


def worker_cases() -> list[object]:
    """``(worker_class, app)`` for each worker that serves from a fork: sync and gthread
    (WSGI), gunicorn's own asgi (>= 24) and UvicornWorker (ASGI). Call it after
    ``pytest.importorskip("gunicorn")``."""
    return [
        pytest.param("sync", "wsgi_app:app", id="sync"),
        pytest.param("gthread", "wsgi_app:app", id="gthread"),
        pytest.param(
            "asgi",
            "asgi_app:app",
            id="gunicorn-asgi",
            marks=pytest.mark.skipif(
                not has_gunicorn_asgi(), reason="gunicorn < 24: no asgi worker"
            ),
        ),
        pytest.param("uvicorn_worker.UvicornWorker", "asgi_app:app", id="uvicorn"),
    ]


def _supports(setting: str) -> bool:
    from gunicorn.config import make_settings

    return setting in make_settings()


# gunicorn >= 26 opens a control socket at a fixed path (~/.gunicorn/gunicorn.ctl) that every
# concurrent run would share; older releases have neither the socket nor the option.
NO_CONTROL_SOCKET = "--no-control-socket" if _supports("control_socket_disable") else ""


class Gunicorn(ServerProcess):
    """One gunicorn master (and workers) in its own process group, reporting to *recorder*.

    :param args: gunicorn arguments after the common ones (``--bind``, app, ...).
    :param config: ``-c`` value; default the plugin itself (``None``: no config at all).
    :param env: extra environment; ``NOTIFY_SOCKET`` is the recorder's unless
        ``notify=False``.
    """

    name = "gunicorn"

    def __init__(
        self,
        args: Sequence[str],
        *,
        apps: Path,
        recorder: NotifyRecorder | None,
        config: str | None = "python:sdready.plugins.gunicorn",
        env: Mapping[str, str] | None = None,
        workers: int = 1,
        worker_class: str = "sync",
        wrapper: Sequence[str] = (),
        pass_fds: Sequence[int] = (),
    ) -> None:
        environ = child_env(
            {"PYTHONPATH": str(apps), **(env or {})}, notify=recorder, drop=("SDREADY_", "APP_")
        )
        # The venv's console script, not ``python -m gunicorn``: a USR2 re-exec runs
        # sys.argv[0] as a script, and gunicorn/__main__.py as a script would put the
        # package directory first on sys.path (its ``http`` shadowing the stdlib's).
        argv = [*wrapper, str(Path(sys.executable).with_name("gunicorn"))]
        if config is not None:
            argv += ["-c", config]
        argv += ["--workers", str(workers), "-k", worker_class, "--graceful-timeout", "5"]
        argv += NO_CONTROL_SOCKET.split()
        argv += list(args)
        log = apps / f"gunicorn-{time.monotonic_ns()}.log"
        super().__init__(argv, env=environ, log=log, cwd=apps, pass_fds=pass_fds, recorder=recorder)
        self.started = time.monotonic()

    def log(self) -> str:
        return self.output(6000)

    def wait_for(
        self,
        match: str | Callable[[NotifyMessage], bool],
        timeout: float = 15.0,
        since: int = 0,
    ) -> NotifyMessage:
        """The recorder's ``wait_for`` with gunicorn's log in the failure message."""
        assert self.recorder is not None
        try:
            return self.recorder.wait_for(match, timeout, since=since)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- gunicorn log:\n{self.log()}") from None
