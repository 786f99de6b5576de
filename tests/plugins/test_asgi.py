"""SystemdMiddleware, in-process: the lifespan protocol played as uvicorn plays it.

The test is the server: it answers the lifespan protocol (``_asgi_driver``) and "binds" by
opening a loopback listener, which the middleware sees as this process's own socket.
Real servers in child processes: test_asgi_servers.py.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from _asgi_driver import LifespanServer, address, listening
from sdready import Notifier, texts
from sdready.plugins.asgi import SCOPE_KEY, SystemdMiddleware
from sdready.testing import NotifyRecorder

pytestmark = pytest.mark.timeout(60)


def make_app(
    log: list[str] | None = None,
    *,
    fail: BaseException | None = None,
    startup_delay: float = 0.0,
) -> Any:
    """A minimal lifespan app (like Starlette's router): startup.failed, then re-raise."""
    log = log if log is not None else []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        log.append("startup")
        try:
            if startup_delay:
                await asyncio.sleep(startup_delay)
            if fail is not None:
                raise fail
        except BaseException:
            await send({"type": "lifespan.startup.failed", "message": "Traceback …\nboom"})
            raise
        await send({"type": "lifespan.startup.complete"})
        await receive()
        log.append("shutdown")
        await send({"type": "lifespan.shutdown.complete"})

    return app


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def no_asyncio_leaks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail on "Task was destroyed but it is pending" and friends (logged, not warned)."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    yield
    gc.collect()
    bad = [r for r in caplog.records if r.name == "asyncio"]
    assert not bad, [r.getMessage() for r in bad]


# -- the story told to systemd ------------------------------------------------------------


def test_ready_after_listen_with_status_texts(
    notify_socket: NotifyRecorder, no_asyncio_leaks: None
) -> None:
    async def main() -> str:
        server = LifespanServer(SystemdMiddleware(make_app()))
        assert await server.startup() == {"type": "lifespan.startup.complete"}
        await asyncio.sleep(0.05)  # the server has not listened yet: no READY
        notify_socket.barrier()  # whatever was sent meanwhile is recorded
        assert notify_socket.values("READY") == []
        with listening() as sock:
            await asyncio.to_thread(notify_socket.wait_for, "READY=1", 5)
            assert await server.shutdown() == {"type": "lifespan.shutdown.complete"}
            return texts.READY.format(addresses=address(sock), pid=os.getpid())

    ready_status = run(main())
    notify_socket.wait_for("STOPPING=1", 2)
    assert notify_socket.statuses == [texts.STARTING, texts.WAITING, ready_status, texts.STOPPING]
    assert notify_socket.values("READY") == ["1"]
    assert notify_socket.messages[-1]["STOPPING"] == "1"


def test_listener_opened_by_the_app_during_startup_is_not_the_servers(
    notify_socket: NotifyRecorder,
) -> None:
    aux: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        import socket

        metrics = socket.socket()
        metrics.bind(("127.0.0.1", 0))
        metrics.listen()
        aux.append(metrics)
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    async def main() -> None:
        server = LifespanServer(SystemdMiddleware(app))
        await server.startup()
        await asyncio.sleep(0.05)
        notify_socket.barrier()
        assert notify_socket.values("READY") == []  # the metrics port does not count
        with listening() as sock:
            message = await asyncio.to_thread(notify_socket.wait_for, "READY=1", 5)
            assert address(sock) in message["STATUS"]
            assert address(aux[0]) not in message["STATUS"]
        await server.shutdown()

    try:
        run(main())
    finally:
        for sock in aux:
            sock.close()


def test_already_listening_socket_counts_at_once(notify_socket: NotifyRecorder) -> None:
    # --fd, socket activation, hypercorn's trio worker: listening before startup began.
    async def main() -> None:
        with listening() as sock:
            server = LifespanServer(SystemdMiddleware(make_app()))
            await server.startup()
            message = await asyncio.to_thread(notify_socket.wait_for, "READY=1", 5)
            assert address(sock) in message["STATUS"]
            await server.shutdown()

    run(main())


def test_stopping_is_sent_before_the_apps_shutdown_runs(notify_socket: NotifyRecorder) -> None:
    seen_at_shutdown: list[list[str]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        notify_socket.wait_for("STOPPING=1", 5)  # already there when our shutdown code runs
        seen_at_shutdown.append(notify_socket.statuses)
        await send({"type": "lifespan.shutdown.complete"})

    async def main() -> None:
        server = LifespanServer(SystemdMiddleware(app))
        with listening():
            await server.startup()
            await asyncio.to_thread(notify_socket.wait_for, "READY=1", 5)
            await server.shutdown()

    run(main())
    assert seen_at_shutdown[0][-1] == texts.STOPPING


def test_lifespan_state_and_messages_pass_through_untouched(
    notify_socket: NotifyRecorder,
) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        scope["state"]["db"] = "connected"
        await send({"type": "lifespan.startup.complete", "extra": 1})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    async def main() -> LifespanServer:
        server = LifespanServer(SystemdMiddleware(app))
        with listening():
            await server.startup()
            await asyncio.to_thread(notify_socket.wait_for, "READY=1", 5)
            await server.shutdown()
        return server

    server = run(main())
    assert server.state == {"db": "connected"}
    assert server.replies == [
        {"type": "lifespan.startup.complete", "extra": 1},
        {"type": "lifespan.shutdown.complete"},
    ]


# -- failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "errno_field"),
    [
        (RuntimeError("database unreachable"), "RuntimeError: database unreachable", None),
        (
            ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
            "ConnectionRefusedError: [Errno 111] Connection refused",
            str(errno.ECONNREFUSED),
        ),
        (KeyError("settings"), "KeyError: 'settings'", None),
    ],
)
def test_startup_failed_means_no_ready_and_says_why(
    notify_socket: NotifyRecorder, error: Exception, status: str, errno_field: str | None
) -> None:
    async def main() -> LifespanServer:
        server = LifespanServer(SystemdMiddleware(make_app(fail=error)))
        answer = await server.startup()
        assert answer is not None and answer["type"] == "lifespan.startup.failed"
        await asyncio.wait({server.task})  # type: ignore[arg-type]
        with listening():  # even if a server listened anyway (uvicorn lifespan="auto")
            await asyncio.sleep(0.1)
        return server

    server = run(main())
    assert server.app_exception() is error  # the server fails as it does today
    failed = notify_socket.wait_for("STATUS=" + texts.STARTUP_FAILED.format(message=status), 2)
    assert failed.get("ERRNO") == errno_field
    notify_socket.barrier()
    assert notify_socket.values("READY") == []


def test_failure_message_without_exception_uses_the_last_traceback_line(
    notify_socket: NotifyRecorder,
) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        text = "Traceback (most recent call last):\n  File x\nValueError: bad config\n"
        await send({"type": "lifespan.startup.failed", "message": text})

    async def main() -> None:
        server = LifespanServer(SystemdMiddleware(app))
        await server.startup()
        await asyncio.wait({server.task})  # type: ignore[arg-type]

    run(main())
    notify_socket.wait_for(
        "STATUS=" + texts.STARTUP_FAILED.format(message="ValueError: bad config"), 2
    )
    notify_socket.barrier()
    assert notify_socket.values("READY") == []


def test_app_raising_during_startup_without_failed_message(notify_socket: NotifyRecorder) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        raise OSError(errno.EACCES, "Permission denied")

    async def main() -> LifespanServer:
        server = LifespanServer(SystemdMiddleware(app))
        assert await server.startup() is None
        return server

    server = run(main())
    assert isinstance(server.app_exception(), PermissionError)
    message = notify_socket.wait_for("ERRNO", 2)
    assert message["ERRNO"] == str(errno.EACCES)
    assert message["STATUS"].startswith("Startup failed: PermissionError")


def test_shutdown_before_the_socket_appears(
    notify_socket: NotifyRecorder, no_asyncio_leaks: None
) -> None:
    # uvicorn on a port in use: startup completes, bind fails, lifespan shutdown runs.
    async def main() -> None:
        server = LifespanServer(SystemdMiddleware(make_app()))
        await server.startup()
        await asyncio.sleep(0.05)
        await server.shutdown()
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []

    run(main())
    notify_socket.wait_for("STOPPING=1", 2)
    notify_socket.barrier()
    assert notify_socket.values("READY") == []
    assert notify_socket.statuses == [texts.STARTING, texts.WAITING, texts.STOPPING]


def test_app_without_lifespan_support_still_gets_ready(notify_socket: NotifyRecorder) -> None:
    async def django_like(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")

    async def main() -> LifespanServer:
        server = LifespanServer(SystemdMiddleware(django_like))
        assert await server.startup() == {"type": "lifespan.startup.complete"}
        with listening():
            await asyncio.to_thread(notify_socket.wait_for, "READY=1", 5)
        assert await server.shutdown() == {"type": "lifespan.shutdown.complete"}
        return server

    server = run(main())
    assert server.app_exception() is None  # the server sees a lifespan-capable app
    notify_socket.wait_for("STOPPING=1", 2)
    assert notify_socket.statuses[0] == texts.STARTING


def test_app_returning_at_once_still_gets_ready(notify_socket: NotifyRecorder) -> None:
    async def returns(scope: dict[str, Any], receive: Any, send: Any) -> None:
        return

    async def main() -> None:
        server = LifespanServer(SystemdMiddleware(returns))
        assert await server.startup() == {"type": "lifespan.startup.complete"}
        with listening():
            await asyncio.to_thread(notify_socket.wait_for, "READY=1", 5)
        assert await server.shutdown() == {"type": "lifespan.shutdown.complete"}

    run(main())


@pytest.mark.parametrize("policy", ["warn", "fail", "ready"])
def test_ready_timeout_policies(
    notify_socket: NotifyRecorder, caplog: pytest.LogCaptureFixture, policy: str
) -> None:
    status = {
        "warn": texts.TIMEOUT_WARN.format(timeout=0.2, pid=os.getpid()),
        "fail": texts.TIMEOUT_FAIL.format(timeout=0.2),
        "ready": texts.READY_UNCHECKED.format(pid=os.getpid()),
    }[policy]

    async def main() -> None:
        app = SystemdMiddleware(make_app(), ready_timeout=0.2, on_timeout=policy)  # type: ignore[arg-type]
        server = LifespanServer(app)
        await server.startup()
        await asyncio.to_thread(notify_socket.wait_for, "STATUS=" + status, 5)
        await server.shutdown()

    run(main())
    notify_socket.wait_for("STOPPING=1", 2)
    assert notify_socket.values("READY") == ([] if policy == "fail" else ["1"])
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "sdready"]
    assert bool(errors) is (policy != "ready")


def test_bad_options_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="on_timeout"):
        SystemdMiddleware(make_app(), on_timeout="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ready_timeout"):
        SystemdMiddleware(make_app(), ready_timeout=0)
    with pytest.raises(ValueError, match="probe"):
        SystemdMiddleware(make_app(), probe="tcp")


# -- never hurt the app --------------------------------------------------------------------


def test_outside_systemd_it_is_inert(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    threads_before = set(threading.enumerate())
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen["scope"], seen["receive"], seen["send"] = scope, receive, send
        await make_app()(scope, receive, send)

    async def main() -> LifespanServer:
        server = LifespanServer(SystemdMiddleware(app))
        await server.startup()
        with listening():
            await asyncio.sleep(0.05)
            seen["tasks"] = len(asyncio.all_tasks())
        await server.shutdown()
        return server

    server = run(main())
    # Untouched: the app got the server's own callables; no task besides main + the app's.
    assert seen["receive"] == server._receive and seen["send"] == server._send
    assert SCOPE_KEY not in seen["scope"]
    assert seen["tasks"] == 2
    assert set(threading.enumerate()) <= threads_before
    assert [r for r in caplog.records if r.name == "sdready" and r.levelno > logging.DEBUG] == []


def test_http_and_websocket_go_straight_to_the_app(notify_socket: NotifyRecorder) -> None:
    calls: list[tuple[Any, Any, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append((scope, receive, send))

    async def receive() -> dict[str, Any]:
        return {}

    async def send(message: Any) -> None:
        pass

    middleware = SystemdMiddleware(app)
    for kind in ("http", "websocket"):
        scope = {"type": kind, "path": "/"}
        run(middleware(scope, receive, send))
        assert calls[-1] == (scope, receive, send) and calls[-1][0] is scope
        assert scope == {"type": kind, "path": "/"}
    notify_socket.barrier()
    assert [m.text for m in notify_socket.messages] == ["BARRIER=1"]  # the barrier's own only


def test_notify_failures_never_reach_the_app(caplog: pytest.LogCaptureFixture) -> None:
    # strict=True makes every send raise NotifyError (no such socket): contained, logged.
    notifier = Notifier("/nonexistent/sdready/notify.sock", strict=True)
    log: list[str] = []

    async def main() -> LifespanServer:
        server = LifespanServer(SystemdMiddleware(make_app(log), notifier=notifier))
        assert await server.startup() == {"type": "lifespan.startup.complete"}
        with listening():
            await asyncio.sleep(0.1)
        assert await server.shutdown() == {"type": "lifespan.shutdown.complete"}
        return server

    server = run(main())
    assert log == ["startup", "shutdown"]
    assert server.app_exception() is None
    assert any("the app is unaffected" in r.getMessage() for r in caplog.records)


def test_added_twice_sends_one_story(notify_socket: NotifyRecorder) -> None:
    async def main() -> None:
        server = LifespanServer(SystemdMiddleware(SystemdMiddleware(make_app())))
        with listening():
            await server.startup()
            await asyncio.to_thread(notify_socket.wait_for, "READY=1", 5)
            await asyncio.sleep(0.1)
            await server.shutdown()

    run(main())
    notify_socket.wait_for("STOPPING=1", 2)
    notify_socket.barrier()
    assert notify_socket.values("READY") == ["1"]
    assert notify_socket.statuses.count(texts.STARTING) == 1
    assert notify_socket.values("STOPPING") == ["1"]


# -- Starlette's three ways of adding it ---------------------------------------------------


def _starlette_apps(log: list[str]) -> list[Any]:
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.middleware import Middleware

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        log.append("startup")
        yield
        log.append("shutdown")

    added = Starlette(lifespan=lifespan)
    added.add_middleware(SystemdMiddleware, ready_timeout=5)
    listed = Starlette(lifespan=lifespan, middleware=[Middleware(SystemdMiddleware)])
    wrapped = SystemdMiddleware(Starlette(lifespan=lifespan))
    return [added, listed, wrapped]


@pytest.mark.parametrize("form", ["add_middleware", "middleware_list", "wrapped"])
def test_starlette_forms(notify_socket: NotifyRecorder, form: str) -> None:
    log: list[str] = []
    app = _starlette_apps(log)[["add_middleware", "middleware_list", "wrapped"].index(form)]

    async def main() -> None:
        server = LifespanServer(app)
        assert await server.startup() == {"type": "lifespan.startup.complete"}
        with listening():
            await asyncio.to_thread(notify_socket.wait_for, "READY=1", 5)
        assert await server.shutdown() == {"type": "lifespan.shutdown.complete"}

    run(main())
    assert log == ["startup", "shutdown"]
    assert notify_socket.statuses[:2] == [texts.STARTING, texts.WAITING]


def test_starlette_startup_failure_reports_the_exception(notify_socket: NotifyRecorder) -> None:
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        raise RuntimeError("cannot load model.bin")
        yield

    async def main() -> LifespanServer:
        server = LifespanServer(SystemdMiddleware(Starlette(lifespan=lifespan)))
        answer = await server.startup()
        assert answer is not None and answer["type"] == "lifespan.startup.failed"
        await asyncio.wait({server.task})  # type: ignore[arg-type]
        return server

    server = run(main())
    assert isinstance(server.app_exception(), RuntimeError)
    notify_socket.wait_for("STATUS=Startup failed: RuntimeError: cannot load model.bin", 2)
    notify_socket.barrier()
    assert notify_socket.values("READY") == []


# -- watchdog -------------------------------------------------------------------------------


def test_watchdog_pings_from_the_loop_until_shutdown(
    notify_socket: NotifyRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # pings every 0.1 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))

    async def main() -> None:
        server = LifespanServer(SystemdMiddleware(make_app()))
        with listening():
            await server.startup()
            await asyncio.sleep(0.55)
            time.sleep(0.5)  # a blocked loop: no pings meanwhile
            blocked_until = time.monotonic()
            await asyncio.sleep(0.25)
            await server.shutdown()
        # Counted, not timed: a ping is stamped when the recorder reads it, which under
        # load can be after the shutdown that followed its sending.
        notify_socket.barrier()  # every ping sent until the shutdown is recorded
        pings = [m.time for m in notify_socket.messages if "WATCHDOG" in m]
        await asyncio.sleep(0.3)  # three periods
        notify_socket.barrier()
        assert len(pings) >= 5
        assert len(notify_socket.values("WATCHDOG")) == len(pings)  # none after shutdown
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert max(gaps) >= 0.45  # the blocked half second
        assert any(t > blocked_until for t in pings)  # resumed after the block

    run(main())


def test_watchdog_health_gates_pings(
    notify_socket: NotifyRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    healthy = [True]

    async def health() -> bool:
        return healthy[0]

    async def main() -> None:
        server = LifespanServer(SystemdMiddleware(make_app(), health=health))
        with listening():
            await server.startup()
            await asyncio.sleep(0.3)
            healthy[0] = False
            await asyncio.sleep(0.05)
            notify_socket.barrier()  # a ping sent while healthy is counted before
            count = len(notify_socket.values("WATCHDOG"))
            await asyncio.sleep(0.3)
            notify_socket.barrier()
            assert len(notify_socket.values("WATCHDOG")) == count
            await server.shutdown()

    run(main())
    notify_socket.wait_for("STOPPING=1", 2)
    assert len(notify_socket.values("WATCHDOG")) >= 3


def test_watchdog_off_means_no_task(
    notify_socket: NotifyRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")

    async def main() -> None:
        server = LifespanServer(SystemdMiddleware(make_app(), watchdog=False))
        await server.startup()
        names = {t.get_name() for t in asyncio.all_tasks()}
        assert "sdready: watchdog loop" not in names
        await server.shutdown()

    run(main())
    notify_socket.barrier()
    assert notify_socket.values("WATCHDOG") == []


def test_watchdog_meant_for_another_pid_warns(
    notify_socket: NotifyRecorder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # uvicorn --workers: systemd's WATCHDOG_PID is the supervisor, which runs no app.
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.setenv("WATCHDOG_PID", "1")

    async def main() -> None:
        server = LifespanServer(SystemdMiddleware(make_app()))
        await server.startup()
        await asyncio.sleep(0.15)
        await server.shutdown()

    run(main())
    notify_socket.barrier()
    assert notify_socket.values("WATCHDOG") == []
    assert any(
        "WatchdogSec=" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
    )


# -- trio ----------------------------------------------------------------------------------


def test_under_trio(notify_socket: NotifyRecorder, monkeypatch: pytest.MonkeyPatch) -> None:
    trio = pytest.importorskip("trio")
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    replies: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await trio.sleep(0.05)
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    async def main() -> None:
        to_app, from_server = trio.open_memory_channel(2)

        async def send(message: dict[str, Any]) -> None:
            replies.append(message)

        middleware = SystemdMiddleware(app)
        async with trio.open_nursery() as nursery:
            scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
            nursery.start_soon(middleware, scope, from_server.receive, send)
            await to_app.send({"type": "lifespan.startup"})
            with trio.fail_after(5):
                while not replies:
                    await trio.sleep(0.01)
            with listening():
                with trio.fail_after(5):
                    while not notify_socket.values("READY"):
                        await trio.sleep(0.01)
                await trio.sleep(0.3)
            await to_app.send({"type": "lifespan.shutdown"})

    trio.run(main)
    notify_socket.wait_for("STOPPING=1", 2)
    notify_socket.barrier()
    assert replies == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]
    assert notify_socket.statuses[:2] == [texts.STARTING, texts.WAITING]
    assert len(notify_socket.values("WATCHDOG")) >= 3  # pinged from the trio loop
    assert notify_socket.values("STOPPING") == ["1"]


# -- multi-process servers -------------------------------------------------------------------


@pytest.mark.parametrize("main", [True, False])
def test_stopping_only_from_the_units_main_process(
    notify_socket: NotifyRecorder, monkeypatch: pytest.MonkeyPatch, main: bool
) -> None:
    # uvicorn --workers restarts a worker on its own: with NotifyAccess=all, that worker's
    # STOPPING=1 would make systemd stop (and after TimeoutStopSec kill) the whole unit.
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(os.getpid() if main else 1))

    async def main_() -> None:
        server = LifespanServer(SystemdMiddleware(make_app()))
        with listening():
            await server.startup()
            await asyncio.to_thread(notify_socket.wait_for, "READY=1", 5)
            await server.shutdown()

    run(main_())
    notify_socket.barrier()
    assert notify_socket.values("STOPPING") == (["1"] if main else [])
    assert (texts.STOPPING in notify_socket.statuses) is main
