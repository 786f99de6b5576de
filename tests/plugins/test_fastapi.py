"""SystemdNotify on FastAPI: composes with ``lifespan=`` and ``on_event``, order preserved.

Each app records its own steps and every sd_notify message in one list (a Notifier that
logs what it sends), so the order between the two is exact, not timing-dependent. The
test plays the server (``_asgi_driver``) and "binds" with a loopback listener.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from _asgi_driver import LifespanServer, listening

pytest.importorskip("fastapi")

import fastapi
from fastapi import FastAPI
from sdready import Notifier, texts
from sdready.plugins.asgi import SystemdMiddleware
from sdready.plugins.fastapi import SystemdNotify
from sdready.testing import NotifyRecorder

pytestmark = pytest.mark.timeout(60)
# The app's own choice of the deprecated on_event API must not fail these tests.
on_event_ok = pytest.mark.filterwarnings("ignore:\\s*on_event is deprecated:DeprecationWarning")


class LoggingNotifier(Notifier):
    """A real Notifier that also appends what it sends to *steps*, in call order."""

    def __init__(self, address: str, steps: list[str]) -> None:
        super().__init__(address)
        self.steps = steps

    def status(self, text: str) -> bool:
        self.steps.append(text)
        return super().status(text)

    def progress(self, text: str, *, extend: float = 30.0) -> bool:
        self.steps.append(text)  # the engine's milestones (Waiting…) come this way
        return super().progress(text, extend=extend)

    def ready(self, status: str | None = None) -> bool:
        self.steps.append("READY")
        return super().ready(status)

    def stopping(self, status: str | None = None) -> bool:
        self.steps.append("STOPPING")
        return super().stopping(status)


def serve(app: Any, recorder: NotifyRecorder) -> LifespanServer:
    """Run *app*'s lifespan with a listener appearing after startup; stop after READY."""

    async def main() -> LifespanServer:
        server = LifespanServer(app)
        answer = await server.startup()
        if answer is not None and answer["type"] == "lifespan.startup.complete":
            with listening():
                await asyncio.to_thread(recorder.wait_for, "READY=1", 5)
            await server.shutdown()
        elif server.task is not None:
            await asyncio.wait({server.task})
        return server

    return asyncio.run(main())


def lifespan_recording(steps: list[str], name: str = "lifespan") -> Callable[[Any], Any]:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, str]]:
        steps.append(f"{name} startup")
        yield {"db": "connected"}
        steps.append(f"{name} shutdown")

    return lifespan


STORY_START = [texts.STARTING]
STORY_READY = [texts.WAITING, "READY"]


def test_lifespan_context(notify_socket: NotifyRecorder) -> None:
    steps: list[str] = []
    app = FastAPI(lifespan=lifespan_recording(steps))
    SystemdNotify(app, notifier=LoggingNotifier(notify_socket.address, steps))
    server = serve(app, notify_socket)
    assert steps == [
        texts.STARTING,
        "lifespan startup",
        texts.WAITING,
        "READY",
        "STOPPING",
        "lifespan shutdown",
    ]
    assert server.state == {"db": "connected"}  # the lifespan state still reaches requests


@on_event_ok
def test_on_event_handlers(notify_socket: NotifyRecorder) -> None:
    steps: list[str] = []
    app = FastAPI()

    @app.on_event("startup")
    async def first() -> None:
        steps.append("startup 1")

    @app.on_event("startup")
    def second() -> None:
        steps.append("startup 2")

    @app.on_event("shutdown")
    def closing() -> None:
        steps.append("shutdown 1")

    SystemdNotify(app, notifier=LoggingNotifier(notify_socket.address, steps))

    @app.on_event("startup")  # registered after SystemdNotify: still inside the story
    def third() -> None:
        steps.append("startup 3")

    serve(app, notify_socket)
    assert steps == [
        texts.STARTING,
        "startup 1",
        "startup 2",
        "startup 3",
        texts.WAITING,
        "READY",
        "STOPPING",
        "shutdown 1",
    ]


def _both(steps: list[str], *, with_sdready: bool, notifier: Notifier | None) -> FastAPI:
    app = FastAPI(lifespan=lifespan_recording(steps))

    @app.on_event("startup")
    def on_startup() -> None:
        steps.append("on_event startup")

    @app.on_event("shutdown")
    def on_shutdown() -> None:
        steps.append("on_event shutdown")

    if with_sdready:
        SystemdNotify(app, notifier=notifier)
    return app


@on_event_ok
def test_lifespan_and_on_event_together_run_as_fastapi_runs_them(
    notify_socket: NotifyRecorder,
) -> None:
    # Which handlers run when both are given is FastAPI's decision (on every version so
    # far: the lifespan only). Whatever it is, SystemdNotify must not change it.
    plain: list[str] = []
    serve_plain = _both(plain, with_sdready=False, notifier=None)
    asyncio.run(_run_without_ready(serve_plain))

    steps: list[str] = []
    app = _both(steps, with_sdready=True, notifier=LoggingNotifier(notify_socket.address, steps))
    serve(app, notify_socket)
    ours = [texts.STARTING, texts.WAITING, "READY", "STOPPING"]
    assert [s for s in steps if s not in ours] == plain
    assert steps[0] == texts.STARTING
    assert steps.index(texts.WAITING) > max(i for i, s in enumerate(steps) if "startup" in s)
    assert steps.index("STOPPING") < min(i for i, s in enumerate(steps) if "shutdown" in s)


async def _run_without_ready(app: Any) -> None:
    server = LifespanServer(app)
    await server.startup()
    await server.shutdown()


def test_router_lifespan_included_after_registration(notify_socket: NotifyRecorder) -> None:
    steps: list[str] = []
    app = FastAPI(lifespan=lifespan_recording(steps, "app"))
    SystemdNotify(app, notifier=LoggingNotifier(notify_socket.address, steps))
    try:
        router = fastapi.APIRouter(lifespan=lifespan_recording(steps, "router"))
    except TypeError:
        pytest.skip(f"FastAPI {fastapi.__version__} has no router lifespan")
    app.include_router(router)
    serve(app, notify_socket)
    if "router startup" not in steps:
        pytest.skip(f"FastAPI {fastapi.__version__} does not run included routers' lifespans")
    assert steps[0] == texts.STARTING
    assert steps[steps.index(texts.WAITING) - 2 : steps.index(texts.WAITING)] in (
        ["app startup", "router startup"],
        ["router startup", "app startup"],
    )
    assert steps[steps.index("STOPPING") + 1 :] in (
        ["router shutdown", "app shutdown"],
        ["app shutdown", "router shutdown"],
    )


def test_startup_failure_in_lifespan(notify_socket: NotifyRecorder) -> None:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        raise ConnectionRefusedError(111, "Connection refused")
        yield

    app = FastAPI(lifespan=lifespan)
    SystemdNotify(app)
    server = serve(app, notify_socket)
    assert server.replies[0]["type"] == "lifespan.startup.failed"
    assert isinstance(server.app_exception(), ConnectionRefusedError)
    failed = notify_socket.wait_for("ERRNO", 2)
    assert (
        failed["STATUS"] == "Startup failed: ConnectionRefusedError: [Errno 111] Connection refused"
    )
    assert failed["ERRNO"] == "111"
    assert notify_socket.values("READY") == []


@on_event_ok
def test_startup_failure_in_on_event_handler(notify_socket: NotifyRecorder) -> None:
    app = FastAPI()

    @app.on_event("startup")
    async def connect() -> None:
        raise RuntimeError("redis is down")

    SystemdNotify(app)
    server = serve(app, notify_socket)
    assert isinstance(server.app_exception(), RuntimeError)
    notify_socket.wait_for("STATUS=Startup failed: RuntimeError: redis is down", 2)
    assert notify_socket.values("READY") == []


def test_registering_twice_fails_loudly() -> None:
    app = FastAPI()
    SystemdNotify(app)
    with pytest.raises(RuntimeError, match="already registered"):
        SystemdNotify(app)


def test_with_the_middleware_too_one_ready(notify_socket: NotifyRecorder) -> None:
    app = FastAPI()
    app.add_middleware(SystemdMiddleware)
    notify = SystemdNotify(app)
    serve(app, notify_socket)
    notify_socket.wait_for("STOPPING=1", 2)
    assert notify_socket.values("READY") == ["1"]
    assert notify_socket.statuses.count(texts.STARTING) == 1
    assert not notify.ready_sent  # the outer middleware told the story


def test_add_middleware_alone_works(notify_socket: NotifyRecorder) -> None:
    steps: list[str] = []
    app = FastAPI(lifespan=lifespan_recording(steps))
    app.add_middleware(SystemdMiddleware, notifier=LoggingNotifier(notify_socket.address, steps))
    serve(app, notify_socket)
    assert steps == [
        texts.STARTING,
        "lifespan startup",
        texts.WAITING,
        "READY",
        "STOPPING",
        "lifespan shutdown",
    ]


def test_ready_sent_and_bad_options() -> None:
    app = FastAPI()
    with pytest.raises(ValueError, match="ready_timeout"):
        SystemdNotify(app, ready_timeout=-1)
    notify = SystemdNotify(app)  # the failed attempt registered nothing
    assert notify.ready_sent is False and notify.readiness is None


def test_old_fastapi_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastapi, "__version__", "0.99.1")
    with pytest.raises(RuntimeError, match=r"FastAPI >= 0\.100"):
        SystemdNotify(FastAPI())


def test_outside_systemd_it_is_inert(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    steps: list[str] = []
    app = FastAPI(lifespan=lifespan_recording(steps))
    notify = SystemdNotify(app)
    threads = set(threading.enumerate())

    async def main() -> int:
        server = LifespanServer(app)
        await server.startup()
        with listening():
            await asyncio.sleep(0.05)
            tasks = len(asyncio.all_tasks())
        await server.shutdown()
        return tasks

    assert asyncio.run(main()) == 2  # main and the app's lifespan: nothing of ours
    assert steps == ["lifespan startup", "lifespan shutdown"]
    assert set(threading.enumerate()) <= threads
    assert notify.readiness is not None and not notify.readiness.enabled
    assert [r for r in caplog.records if r.name == "sdready" and r.levelno > 10] == []


@pytest.mark.parametrize("address", ["relative/notify.sock", None])
def test_a_relative_notify_socket_is_said_although_inert(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, address: str | None
) -> None:
    if address is None:  # control: outside systemd there is nothing to say
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", address)
    app = FastAPI()
    SystemdNotify(app)

    async def main() -> None:
        server = LifespanServer(app)
        await server.startup()
        await server.shutdown()

    asyncio.run(main())
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if address is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and "'relative/notify.sock' is not a notify socket" in warnings[0]


def test_requests_do_not_pass_through_it(notify_socket: NotifyRecorder) -> None:
    httpx = pytest.importorskip("httpx")
    app = FastAPI()

    @app.get("/")
    async def home() -> dict[str, int]:
        return {"pid": os.getpid()}

    SystemdNotify(app)

    async def main() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return (await client.get("/")).json()

    assert asyncio.run(main()) == {"pid": os.getpid()}
    assert notify_socket.messages == []  # no lifespan ran: nothing to tell
