"""Every third-party internal a plugin touches still exists in the installed versions.

Each plugin names what it uses beyond a framework's documented API in its compat module's
``INTERNALS``: ``(name, distribution, first release that has it)``. Here each name is looked
up on real objects (a gunicorn ``Arbiter`` built from a real application but never run, real
workers that loaded their app, a real ``FastAPI()``, ``flask.cli`` itself): a dotted name is
an attribute path from a root object or an importable module, a few others (an environment
variable, an arity) have a check of their own. A name is skipped only when the installed
release predates the one the table names, never because it cannot be found. The same file
runs in the oldest-versions CI job, against the extras' floors.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import inspect
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from sdready.plugins import _compat_asgi, _compat_fastapi

Entry = tuple[str, str, str]


def _version(dist: str) -> tuple[int, ...] | None:
    try:
        text = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _skip_unless_installed(entry: Entry) -> None:
    name, dist, since = entry
    installed = _version(dist)
    if installed is None:
        pytest.skip(f"{dist} is not installed")
    if installed < tuple(int(part) for part in since.split(".")):
        pytest.skip(f"{name}: {dist} {'.'.join(map(str, installed))} predates {since}")


def _missing(name: str, roots: dict[str, Callable[[], object]]) -> str | None:
    """The part of dotted *name* that cannot be found (None: all of it exists).

    The first part is a root object's name, or else the name starts with a module path.
    """
    head, *rest = name.split(".")
    found = [head]
    if head in roots:
        target: object = roots[head]()
    else:
        for taken in range(len(rest), -1, -1):  # the longest importable module prefix
            found = [head, *rest[:taken]]
            try:
                target = importlib.import_module(".".join(found))
            except ImportError:
                continue
            rest = rest[taken:]
            break
        else:
            return head
    for part in rest:
        found.append(part)
        if not hasattr(target, part):
            return ".".join(found)
        target = getattr(target, part)
    return None


def _ids(entries: tuple[Entry, ...]) -> list[Any]:
    return [pytest.param(entry, id=entry[0]) for entry in entries]


# -- gunicorn: real objects, never run ----------------------------------------------------------


class _Objects:
    """gunicorn's arbiter and workers built from a real application; closed at teardown."""

    def __init__(self, stack: ExitStack, monkeypatch: pytest.MonkeyPatch) -> None:
        self._stack = stack
        self._monkeypatch = monkeypatch
        self._made: dict[str, object] = {}

    def roots(self) -> dict[str, Callable[[], object]]:
        makers = {
            "Arbiter": self._arbiter,
            "Listener": self._listener,
            "HaltServer": self._halt,
            "Worker": lambda: self._worker("gunicorn.workers.sync", "SyncWorker"),
            "ASGIWorker": lambda: self._worker("gunicorn.workers.gasgi", "ASGIWorker"),
            "UvicornWorker": lambda: self._worker("uvicorn_worker._workers", "UvicornWorker"),
        }
        return {
            name: (lambda name=name, make=make: self._once(name, make))
            for name, make in makers.items()
        }

    def _once(self, name: str, make: Callable[[], object]) -> object:
        if name not in self._made:
            self._made[name] = make()
        return self._made[name]

    def application(self, kind: str = "wsgi") -> Any:
        from gunicorn.app.base import BaseApplication

        async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
            pass

        def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
            return []

        class Application(BaseApplication):  # type: ignore[misc]
            def load_config(self) -> None:
                self.cfg.set("bind", "127.0.0.1:0")
                self.cfg.set("workers", 2)

            def load(self) -> Any:
                return asgi_app if kind == "asgi" else wsgi_app

        return Application()

    def _arbiter(self) -> Any:
        from gunicorn.arbiter import Arbiter

        self._monkeypatch.delenv("SERVER_SOFTWARE", raising=False)  # Arbiter() sets it
        return Arbiter(self.application())

    def _listener(self) -> Any:
        from gunicorn.sock import TCPSocket

        app = self.application()
        listener = TCPSocket(("127.0.0.1", 0), app.cfg, self._log(app))
        self._stack.callback(listener.close)
        return listener

    def _halt(self) -> Any:
        from gunicorn.errors import HaltServer

        return HaltServer("Worker failed to boot.", 3)

    def _log(self, app: Any) -> Any:
        return app.cfg.logger_class(app.cfg)

    def _worker(self, module: str, name: str) -> Any:
        cls = getattr(importlib.import_module(module), name)
        app = self.application("wsgi" if name == "SyncWorker" else "asgi")
        listener = self._listener()
        worker = cls(1, os.getpid(), [listener], app, 30, app.cfg, self._log(app))
        self._stack.callback(worker.tmp.close)
        worker.load_wsgi()  # what init_process does before post_worker_init
        return worker


@pytest.fixture
def gunicorn_objects(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Objects]:
    pytest.importorskip("gunicorn")
    with ExitStack() as stack:
        yield _Objects(stack, monkeypatch)


def _gunicorn_internals() -> tuple[Entry, ...]:
    try:
        from sdready.plugins.gunicorn import _compat
    except ImportError:  # gunicorn missing: the tests skip
        return ()
    return _compat.INTERNALS


def _hook_arity(objects: _Objects) -> str | None:
    """Each hook we chain exists with the arity we give it, and gunicorn accepts ours."""
    from gunicorn.config import validate_callable
    from sdready.plugins.gunicorn import _HOOKS, _chain

    cfg = objects.application().cfg
    for name, (arity, _ours, _last) in _HOOKS.items():
        if name not in cfg.settings:
            return f"hook {name}"
        default = cfg.settings[name].default
        if len(inspect.signature(default).parameters) != arity:
            return f"hook {name} with {arity} arguments"
        validate_callable(arity)(_chain(name, None))
    return None


@pytest.mark.parametrize("entry", _ids(_gunicorn_internals()))
def test_gunicorn_internal_exists(entry: Entry, gunicorn_objects: _Objects) -> None:
    _skip_unless_installed(entry)
    name = entry[0]
    if name == "hook arity":
        assert _hook_arity(gunicorn_objects) is None
        return
    assert _missing(name, gunicorn_objects.roots()) is None


def test_checker_reports_a_missing_internal(gunicorn_objects: _Objects) -> None:
    # Control: the very lookup the tests above make fails once an internal is gone.
    roots = gunicorn_objects.roots()
    arbiter = roots["Arbiter"]()
    assert _missing("Arbiter.reexec_pid", roots) is None
    del arbiter.reexec_pid  # type: ignore[attr-defined]  # as a release without it would be
    assert _missing("Arbiter.reexec_pid", roots) == "Arbiter.reexec_pid"
    assert _missing("Worker.tmp.no_such_method", roots) == "Worker.tmp.no_such_method"
    assert _missing("gunicorn.config.no_such_helper", roots) == "gunicorn.config.no_such_helper"
    assert _missing("no_such_package.thing", roots) == "no_such_package"


def test_gunicorn_rejects_a_hook_of_another_arity(gunicorn_objects: _Objects) -> None:
    # Control for the arity check: gunicorn really checks it, so a wrong one would show.
    from gunicorn.config import validate_callable
    from sdready.plugins.gunicorn import _chain

    with pytest.raises(TypeError, match="arity"):
        validate_callable(2)(_chain("on_starting", None))


def test_worker_heartbeat_is_on_the_monotonic_clock(gunicorn_objects: _Objects) -> None:
    # The watchdog compares last_heartbeat() with time.monotonic(), as gunicorn does; not
    # a timing: the two clocks are decades apart, a heartbeat is near one of them.
    from sdready.plugins.gunicorn import _compat

    worker: Any = gunicorn_objects.roots()["Worker"]()
    worker.tmp.notify()
    beat = _compat.last_heartbeat(worker)
    assert abs(beat - time.monotonic()) < abs(beat - time.time())


def test_asgi_worker_app_attribute_is_where_compat_says(gunicorn_objects: _Objects) -> None:
    from sdready.plugins.gunicorn import _compat

    roots = gunicorn_objects.roots()
    wsgi: Any = roots["Worker"]()
    assert _compat.asgi_lifespan(wsgi) is None
    for root in ("ASGIWorker", "UvicornWorker"):
        entry = next(e for e in _compat.INTERNALS if e[0].startswith(root + "."))
        installed = _version(entry[1])
        if installed is None or installed < tuple(map(int, entry[2].split("."))):
            continue
        worker: Any = roots[root]()
        lifespan = _compat.asgi_lifespan(worker)
        assert lifespan is not None, root
        attribute, mode = lifespan
        assert callable(getattr(worker, attribute)), root
        assert mode in ("auto", "on", "off"), root


# -- Flask, click, werkzeug ------------------------------------------------------------------


def _flask_internals() -> tuple[Entry, ...]:
    try:
        from sdready.plugins import _compat_flask
    except ImportError:
        return ()
    return _compat_flask.INTERNALS


def _werkzeug_names_it(variable: str) -> bool:
    import werkzeug._reloader
    import werkzeug.serving

    sources = (inspect.getsource(werkzeug.serving), inspect.getsource(werkzeug._reloader))
    return any(f'"{variable}"' in source for source in sources)


@pytest.mark.parametrize("entry", _ids(_flask_internals()))
def test_flask_internal_exists(entry: Entry, request: pytest.FixtureRequest) -> None:
    _skip_unless_installed(entry)
    name = entry[0]
    if name.startswith("WERKZEUG_"):
        assert _werkzeug_names_it(name)
    elif name == "run_command --reload":
        from flask.cli import run_command

        reload = [p for p in run_command.params if p.name == "reload"]
        assert reload, "flask run has no --reload option"
        assert reload[0].default is None  # None: the debug flag decides
    elif name == "SERVER_SOFTWARE=gunicorn/":
        objects: _Objects = request.getfixturevalue("gunicorn_objects")  # only here
        objects.roots()["Arbiter"]()
        assert os.environ["SERVER_SOFTWARE"].startswith("gunicorn/")
    else:
        assert _missing(name, {}) is None


def test_werkzeug_check_fails_for_a_name_it_does_not_use() -> None:
    pytest.importorskip("werkzeug")
    assert not _werkzeug_names_it("WERKZEUG_NO_SUCH_VARIABLE")


# -- FastAPI (Starlette) and the ASGI middleware's trio -------------------------------------------


@pytest.mark.parametrize("entry", _ids(_compat_fastapi.INTERNALS))
def test_fastapi_internal_exists(entry: Entry) -> None:
    _skip_unless_installed(entry)
    fastapi = pytest.importorskip("fastapi")
    assert entry[0] == "Router.lifespan"
    app = fastapi.FastAPI()
    assert _compat_fastapi.lifespan_handler(app) is not None
    seen: list[str] = []

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    _compat_fastapi.replace_lifespan_handler(app, handler)

    async def nothing() -> Any:
        raise AssertionError("the replacement handler does not receive")

    # The app dispatches the lifespan scope to the handler set on the instance.
    asyncio.run(app({"type": "lifespan", "state": {}}, nothing, nothing))
    assert seen == ["lifespan"]


def test_fastapi_without_router_lifespan_is_reported() -> None:
    # Control: an app whose router lacks the handler is seen as such (the plugin raises).
    fastapi = pytest.importorskip("fastapi")
    app = fastapi.FastAPI()
    app.router.lifespan = None
    assert _compat_fastapi.lifespan_handler(app) is None


@pytest.mark.parametrize("entry", _ids(_compat_asgi.INTERNALS))
def test_asgi_internal_exists(entry: Entry) -> None:
    _skip_unless_installed(entry)
    assert _missing(entry[0], {}) is None


def test_trio_task_is_detected_only_inside_trio() -> None:
    trio = pytest.importorskip("trio")
    assert not _compat_asgi.in_trio_task()  # control: the same call outside trio

    async def main() -> bool:
        return _compat_asgi.in_trio_task()

    assert trio.run(main)


# gunicorn's create_sockets leaves the socket object it reads a passed fd's name with to the
# garbage collector: its ResourceWarning, not ours.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_listeners_set_before_start_are_used_with_the_rest_bound_anew(
    gunicorn_objects: _Objects, tmp_path: Any
) -> None:
    # The fd store gave back one of two binds: gunicorn must serve the passed socket and a
    # fresh one for the other address (it binds nothing itself once LISTENERS is set).
    import socket

    from gunicorn.arbiter import Arbiter
    from sdready.plugins.gunicorn import _compat

    assert "if not self.LISTENERS" in inspect.getsource(Arbiter.start)
    arbiter: Any = gunicorn_objects.roots()["Arbiter"]()
    passed = socket.socket()
    passed.bind(("127.0.0.1", 0))
    passed.listen()
    missing = str(tmp_path / "b.sock")
    try:
        # gunicorn takes the passed fd over, as it does systemd's: give it a copy.
        _compat.listen_on(arbiter, [os.dup(passed.fileno())], [missing])
        names = [listener.sock.getsockname() for listener in arbiter.LISTENERS]
        assert names[0] == passed.getsockname(), names  # adopted, as systemd's fds are
        assert names[1] in (missing, missing.encode()), names  # bound anew
        assert arbiter.systemd is True
    finally:
        for listener in arbiter.LISTENERS:
            listener.close()
        passed.close()
