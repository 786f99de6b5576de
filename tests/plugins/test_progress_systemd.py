"""Slow starts and long drains under a real (private) systemd: EXTEND_TIMEOUT_USEC at work.

- FastAPI with SystemdNotify, ``TimeoutStartSec=3``, a lifespan startup of 8 steps of 1 s
  calling ``sdready.progress(..., extend=3)`` before each: the unit becomes active and a
  dependent unit's GET succeeds; the same app without the calls times out (the control);
  one call and then a hang is killed within ``extend`` + 3 s of that call.
- gunicorn with the plugin, 4 workers whose imports finish 2 s apart, ``ready_workers=all``,
  ``TimeoutStartSec=3``: each booted worker is progress, the unit becomes active; one
  worker taking as long in one piece (no milestone) times out (the control).
- gunicorn, ``--graceful-timeout 6``, ``TimeoutStopSec=2``: a 4 s request in flight at
  ``systemctl stop`` completes with HTTP 200 with the plugin and is cut with stock gunicorn
  (the control); a request that never ends is killed by gunicorn at ``graceful_timeout``,
  and the unit is gone within ``graceful_timeout`` + the engine's margin.

Timings come from systemd's own monotonic timestamps and the apps' marks (the same clock).
"""

from __future__ import annotations

import http.client
import sys
import threading
import time
from pathlib import Path

import pytest
from _fastapi_units import unit_environment
from _gunicorn_support import NO_CONTROL_SOCKET
from _gunicorn_units import gunicorn_unit, unit_logs
from _servers import http_get, reserved_port
from _systemd import UserManager, python_for_units, wait_until
from sdready._engine._drain import Drain

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(240)]

USEC = 1_000_000
EXTEND = 3  # the app's extend=, as in issue 13

FASTAPI_APP = """\
import asyncio
import os
import time
from contextlib import asynccontextmanager

import sdready
from fastapi import FastAPI
from sdready.plugins.fastapi import SystemdNotify

MODE = os.environ["PROGRESS_MODE"]  # startup: calls | none | hang | quick
STOP = os.environ.get("PROGRESS_STOP", "")  # shutdown: calls | none | "" (nothing to do)
EXTEND = float(os.environ["PROGRESS_EXTEND"])


@asynccontextmanager
async def lifespan(app):
    for i in range(1, 9 if MODE != "quick" else 1):
        if MODE == "calls" or (MODE == "hang" and i == 1):
            sdready.progress(f"Loading shard {i}/8", extend=EXTEND)
            with open(os.environ["PROGRESS_MARK"], "w") as mark:  # when it asked
                mark.write(repr(time.monotonic()))
        if MODE == "hang" and i == 2:
            await asyncio.Event().wait()  # hung: never calls again
        await asyncio.sleep(1)
    yield
    for i in range(1, 5 if STOP else 1):  # the app's own shutdown: 4 steps of 1 s
        if STOP == "calls":
            sdready.progress(f"Flushing {i}/4", extend=EXTEND)
        await asyncio.sleep(1)
    with open(os.environ["PROGRESS_MARK"] + ".stopped", "w") as mark:
        mark.write("shut down")


app = FastAPI(lifespan=lifespan)


@app.get("/")
async def home() -> str:
    return "ok"


SystemdNotify(app)
"""

SLOW_WSGI_APP = """\
import os
import time


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path in ("/slow", "/hang"):
        with open(os.path.join(os.environ["APP_MARK_DIR"], "in-flight"), "w") as mark:
            mark.write(repr(time.monotonic()))
        time.sleep(4 if path == "/slow" else 3600)
    body = b"done"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
"""

PROGRESS_WSGI_APP = """\
import os
import time

import sdready

for i in range(1, 7):  # a model loaded in 6 steps of 1 s, in the worker
    if os.environ.get("PROGRESS_MODE") == "calls":
        sdready.progress(f"Loading shard {i}/6", extend=3)
    time.sleep(1)


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
"""

GET_SCRIPT = (  # the dependent unit: one GET, a file saying it was answered
    "import pathlib, sys, urllib.request; "
    "urllib.request.urlopen(f'http://127.0.0.1:{sys.argv[1]}/', timeout=1).read(); "
    "pathlib.Path(sys.argv[2]).write_text('answered')"
)


def _monotonic(props: dict[str, str], name: str) -> float:
    return int(props[name]) / USEC


class StatusWatcher(threading.Thread):
    """Polls a unit's StatusText while it starts; keeps each distinct value in order."""

    def __init__(self, manager: UserManager, unit: str) -> None:
        super().__init__(name="status-watcher", daemon=True)
        self.manager, self.unit = manager, unit
        self.seen: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                text = self.manager.show(self.unit, "StatusText")["StatusText"]
            except Exception:  # a slow or failing systemctl: look again
                continue
            if text and (not self.seen or self.seen[-1] != text):
                self.seen.append(text)
            self.done.wait(0.05)

    def finish(self) -> list[str]:
        self.done.set()
        self.join(15)
        return self.seen


def start_watching(manager: UserManager, start: str, watch: str) -> list[str]:
    """``systemctl start`` *start* (its outcome not checked) and return *watch*'s StatusTexts
    seen meanwhile, in order."""
    watcher = StatusWatcher(manager, watch)
    watcher.start()
    try:
        manager.run("start", start, check=False, timeout=60)
    finally:
        seen = watcher.finish()
    return seen


# -- a slow FastAPI startup --------------------------------------------------------------------


def _fastapi_units(
    systemd: UserManager, port: int, mode: str, stop: str = ""
) -> tuple[str, str, Path]:
    python, _ = python_for_units()
    work = systemd.work_dir / systemd.unit_name(f"progress-{mode}", suffix="")
    work.mkdir(parents=True)
    (work / "progress_app.py").write_text(FASTAPI_APP)
    mark = work / "progressed"
    server = systemd.unit_name("progress-fastapi")
    log = work / "server.log"
    env = {"PROGRESS_MODE": mode, "PROGRESS_EXTEND": str(EXTEND), "PROGRESS_MARK": str(mark)}
    env["PROGRESS_STOP"] = stop
    argv = f"{python} -m uvicorn progress_app:app --host 127.0.0.1 --port {port}"
    systemd.write_unit(
        server,
        f"""\
        [Service]
        Type=notify
        ExecStart={argv} --log-level warning
        WorkingDirectory={work}
        Environment={unit_environment(env)}
        StandardOutput=append:{log}
        StandardError=append:{log}
        TimeoutStartSec=3
        TimeoutStopSec=1
        """,
        reload=False,
    )
    client = systemd.unit_name("progress-client")
    systemd.write_dependent_unit(
        client,
        server,
        f'{sys.executable} -c "{GET_SCRIPT}" {port} {work}/answered',
        log=work / "client.log",
    )
    return server, client, work


def _start_pair(
    systemd: UserManager, server: str, client: str, work: Path
) -> tuple[bool, list[str]]:
    """Start the client (pulling in the server): was its GET answered, and the server's
    StatusTexts seen meanwhile."""
    seen = start_watching(systemd, client, server)
    return (work / "answered").exists(), seen


def test_progress_keeps_a_slow_fastapi_start_alive(systemd: UserManager) -> None:
    with reserved_port() as port:
        server, client, work = _fastapi_units(systemd, port, "calls")
        answered, seen = _start_pair(systemd, server, client, work)
        details = f"{seen}\n{systemd.describe(server)}\n{unit_logs(work)}"
        assert answered, details
        state = systemd.wait_for(server, ActiveState="active", SubState="running")
        assert state["StatusText"].startswith(f"Ready: listening on 127.0.0.1:{port} "), details
        assert http_get(("127.0.0.1", port))[0] == 200
    shards = [text for text in seen if text.startswith("Loading shard ")]
    assert shards == sorted(shards), details  # in order, 1/8 … 8/8
    assert len(shards) >= 6 and shards[-1] == "Loading shard 8/8", details


def test_control_the_same_start_without_progress_times_out(systemd: UserManager) -> None:
    with reserved_port() as port:
        server, client, work = _fastapi_units(systemd, port, "none")
        answered, _ = _start_pair(systemd, server, client, work)
        details = f"{systemd.describe(server)}\n{unit_logs(work)}"
        assert not answered, details
        state = systemd.wait_ended(server)
        assert state["Result"] == "timeout", details


def test_a_start_that_stops_progressing_is_still_killed(systemd: UserManager) -> None:
    with reserved_port() as port:
        server, client, work = _fastapi_units(systemd, port, "hang")
        _start_pair(systemd, server, client, work)
        details = f"{systemd.describe(server)}\n{unit_logs(work)}"
        state = systemd.wait_ended(
            server, props=("ActiveState", "Result", "InactiveEnterTimestampMonotonic"), timeout=30
        )
        assert state["Result"] == "timeout", details
        asked = float((work / "progressed").read_text())
        gone = _monotonic(state, "InactiveEnterTimestampMonotonic")
        # Killed within extend + 3 s of its last call (TimeoutStopSec=1 of that is the kill).
        assert gone - asked <= EXTEND + 3, f"{gone - asked:.2f} s\n{details}"


@pytest.mark.parametrize("stop", ["calls", "none"], ids=["progress", "control-no-calls"])
def test_progress_in_the_apps_shutdown_keeps_the_stop_alive(
    systemd: UserManager, stop: str
) -> None:
    """TimeoutStopSec=1, a lifespan shutdown of 4 steps of 1 s: with progress(extend=3)
    before each it completes (Result=success); without, systemd kills it (the control)."""
    with reserved_port() as port:
        server, _client, work = _fastapi_units(systemd, port, "quick", stop)
        systemd.start_unit(server, wait_started=True, timeout=30)
        systemd.wait_for(server, ActiveState="active", SubState="running")
        systemd.run("stop", server, check=False, timeout=30)
        state = systemd.show(server, "ActiveState", "Result")
        details = f"{state}\n{systemd.describe(server)}\n{unit_logs(work)}"
        completed = (work / "progressed.stopped").exists()
        if stop == "calls":
            assert completed and state["Result"] == "success", details
        else:
            assert not completed and state["Result"] == "timeout", details


# -- gunicorn: workers booting one after another -------------------------------------------------


def _gunicorn_start(
    systemd: UserManager, tmp_path: Path, port: int, *, workers: int, env: str
) -> tuple[str, list[str]]:
    unit = gunicorn_unit(
        systemd,
        tmp_path,
        port,
        plugin=True,
        workers=workers,
        env=f"SDREADY_READY_WORKERS=all APP_MARK_DIR={tmp_path}/marks {env}",
        extra="TimeoutStartSec=3\nTimeoutStopSec=5",
    )
    (tmp_path / "marks").mkdir(exist_ok=True)
    return unit, start_watching(systemd, unit, unit)


def test_each_booted_gunicorn_worker_is_progress(systemd: UserManager, tmp_path: Path) -> None:
    stagger = tmp_path / "stagger"
    stagger.mkdir()
    env = f"APP_IMPORT_DELAY=2 APP_STAGGER_DIR={stagger} APP_STAGGER_STEP=2"
    with reserved_port() as port:
        unit, seen = _gunicorn_start(systemd, tmp_path, port, workers=4, env=env)
        details = f"{seen}\n{systemd.describe(unit)}\n{unit_logs(tmp_path)}"
        state = systemd.wait_for(unit, ActiveState="active", SubState="running")
        assert state["StatusText"].startswith("Ready: 4 workers, listening on "), details
        assert http_get(("127.0.0.1", port))[0] == 200
    for booted in (1, 2, 3):
        assert f"Booting workers ({booted}/4)" in seen, details
    marks = sorted(float(p.read_text()) for p in (tmp_path / "marks").iterdir())
    started = systemd.show(unit, "ExecMainStartTimestampMonotonic")
    assert marks[-1] - _monotonic(started, "ExecMainStartTimestampMonotonic") > 3, details


def test_control_one_worker_as_slow_in_one_piece_times_out(
    systemd: UserManager, tmp_path: Path
) -> None:
    with reserved_port() as port:
        unit, _ = _gunicorn_start(systemd, tmp_path, port, workers=1, env="APP_IMPORT_DELAY=8")
        state = systemd.wait_ended(unit)
        assert state["Result"] == "timeout", f"{systemd.describe(unit)}\n{unit_logs(tmp_path)}"


@pytest.mark.parametrize("mode", ["calls", "none"], ids=["progress", "control-no-calls"])
def test_progress_from_the_app_in_a_gunicorn_worker(
    systemd: UserManager, tmp_path: Path, mode: str
) -> None:
    """The app loads in the worker (6 steps of 1 s), which never sees NOTIFY_SOCKET: its
    progress() goes to the arbiter, whose engine extends TimeoutStartSec=3."""
    with reserved_port() as port:
        unit = _slow_unit(
            systemd, tmp_path, port, plugin=True, app="progress_wsgi",
            env={"PROGRESS_MODE": mode}, start=False,
        )  # fmt: skip
        seen = start_watching(systemd, unit, unit)
        state = systemd.wait_for(unit, lambda p: p["ActiveState"] != "activating")
        details = f"{seen} {state}\n{unit_logs(tmp_path)}"
        if mode == "calls":
            assert state["ActiveState"] == "active", details
            assert "Loading shard 6/6" in seen, details
            assert http_get(("127.0.0.1", port))[0] == 200
        else:
            assert state["Result"] == "timeout", details


# -- gunicorn: the stop drains in-flight requests --------------------------------------------------


def _slow_unit(
    systemd: UserManager,
    directory: Path,
    port: int,
    *,
    plugin: bool,
    app: str = "slow_app",
    env: dict[str, str] | None = None,
    start: bool = True,
) -> str:
    _python, python_env = python_for_units()
    apps = directory / "apps"
    apps.mkdir(parents=True)
    (apps / "slow_app.py").write_text(SLOW_WSGI_APP)
    (apps / "progress_wsgi.py").write_text(PROGRESS_WSGI_APP)
    (directory / "marks").mkdir()
    marks = {"APP_MARK_DIR": str(directory / "marks")}
    environment = unit_environment({**python_env, **marks, **(env or {})})
    gunicorn = Path(sys.executable).with_name("gunicorn")
    config = "-c python:sdready.plugins.gunicorn " if plugin else ""
    name = systemd.unit_name("progress-drain")
    systemd.write_unit(
        name,
        f"""\
        [Service]
        Type=notify
        ExecStart={gunicorn} {config}--bind 127.0.0.1:{port} --workers 1 {NO_CONTROL_SOCKET} \\
            --graceful-timeout 6 --timeout 60 {app}:app
        WorkingDirectory={apps}
        Environment={environment}
        TimeoutStartSec={30 if start else 3}
        TimeoutStopSec=2
        StandardOutput=append:{directory}/server.log
        StandardError=append:{directory}/server.log
        """,
    )
    if start:
        systemd.start_unit(name, wait_started=True, timeout=40)
        systemd.wait_for(name, ActiveState="active", SubState="running", timeout=20)
    return name


class InFlight(threading.Thread):
    """One GET of *path* that takes long; records the status or the error."""

    def __init__(self, port: int, path: str) -> None:
        super().__init__(name="in-flight", daemon=True)
        self.port, self.path = port, path
        self.outcome: str | None = None

    def run(self) -> None:
        try:
            status, body = http_get(("127.0.0.1", self.port), self.path, timeout=20)
        except (OSError, http.client.HTTPException) as exc:
            self.outcome = f"cut: {exc!r}"
        else:
            self.outcome = f"HTTP {status} {body}"


def _stop_during(
    systemd: UserManager, unit: str, directory: Path, port: int, path: str
) -> tuple[str, float]:
    """GET *path*, stop the unit while the app works on it: the GET's outcome, and how long
    the stop took."""
    request = InFlight(port, path)
    request.start()
    mark = directory / "marks" / "in-flight"
    wait_until(mark.exists, timeout=15, message="the request never reached the app")
    issued = time.monotonic()
    systemd.run("stop", unit, check=False, timeout=60)  # returns once the unit stopped
    took = time.monotonic() - issued
    request.join(30)
    assert request.outcome is not None, "the request is still waiting"
    return request.outcome, took


@pytest.mark.parametrize("plugin", [True, False], ids=["plugin", "control-stock-gunicorn"])
def test_request_in_flight_at_stop_completes(
    systemd: UserManager, tmp_path: Path, plugin: bool
) -> None:
    with reserved_port() as port:
        unit = _slow_unit(systemd, tmp_path, port, plugin=plugin)
        outcome, _ = _stop_during(systemd, unit, tmp_path, port, "/slow")
        state = systemd.show(unit, "ActiveState", "Result")
        details = f"{outcome} {state}\n{unit_logs(tmp_path)}\n{systemd.describe(unit)}"
        if plugin:
            assert outcome == "HTTP 200 done", details
            assert state["Result"] == "success", details
        else:  # TimeoutStopSec=2 kills the worker 2 s into its 4 s request
            assert outcome.startswith("cut: "), details
            assert state["Result"] == "timeout", details


def test_a_request_that_never_ends_is_killed_within_the_drain_budget(
    systemd: UserManager, tmp_path: Path
) -> None:
    graceful = 6
    with reserved_port() as port:
        unit = _slow_unit(systemd, tmp_path, port, plugin=True)
        outcome, took = _stop_during(systemd, unit, tmp_path, port, "/hang")
        state = systemd.show(unit, "ActiveState", "Result")
        details = f"{outcome} {state}\n{unit_logs(tmp_path)}"
        assert state["ActiveState"] in ("inactive", "failed"), details
        assert outcome.startswith("cut: "), details
        # Far past TimeoutStopSec=2: the drain was extended until gunicorn SIGKILLed the
        # worker at graceful_timeout; never past the budget + margin, where systemd would.
        assert graceful - 1 < took <= graceful + Drain.MARGIN + 1, f"{took:.2f} s"
