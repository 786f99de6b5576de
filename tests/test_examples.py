"""Every example in examples/ keeps working, so the examples cannot rot.

* each example app, run as its README says, reaches READY=1 under a NotifyRecorder and
  answers a GET at that moment;
* every example unit file passes ``systemd-analyze verify`` (with stand-in executables for
  its /srv paths);
* under a private systemd, every example unit, with its paths pointed at this checkout and
  its port at a free one, becomes active and answers (the dependent pair: A succeeds), and
  ``sdready doctor`` finds nothing wrong with it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from _servers import ServerProcess, child_env, free_port, http_get
from _systemd import UserManager, python_for_units, verify_units
from sdready.testing import NotifyRecorder, RecorderTimeout

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BIN = Path(sys.executable).parent
PY = sys.executable
# Examples default to 0.5-1 s of pretend startup work; shorter keeps the suite quick while
# still putting the server's bind well after the app's own code started.
# EXAMPLE_DB: the Django example's database, none written into the checkout.
FAST = {
    "EXAMPLE_STARTUP_DELAY": "0.2",
    "B_STARTUP_SECONDS": "0.2",
    "PYTHONUNBUFFERED": "1",
    "EXAMPLE_DB": ":memory:",
}
READY_TIMEOUT = 45.0  # generous: a loaded 2-core machine takes seconds to import FastAPI
GET_TIMEOUT = 5.0
PORT_ATTEMPTS = 3

pytestmark = pytest.mark.timeout(180)


@dataclass(frozen=True)
class App:
    """One example app and the command its README gives for it."""

    id: str
    folder: str
    argv: Callable[[int], list[str]]
    env: Mapping[str, str] = field(default_factory=dict)
    files: tuple[str, ...] = ()  # the example files this case covers


def _uvicorn(app: str, *extra: str) -> Callable[[int], list[str]]:
    return lambda port: [
        PY,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra,
    ]


def _hypercorn(app: str) -> Callable[[int], list[str]]:
    return lambda port: [str(BIN / "hypercorn"), "--bind", f"127.0.0.1:{port}", app]


def _gunicorn_plugin(app: str) -> Callable[[int], list[str]]:
    plugin = ["-c", "python:sdready.plugins.gunicorn"]
    return lambda port: [str(BIN / "gunicorn"), *plugin, "--bind", f"127.0.0.1:{port}", app]


APPS = [
    App("asgi-plain-uvicorn", "asgi", _uvicorn("app:app"), files=("app.py",)),
    App(
        "asgi-starlette-uvicorn", "asgi", _uvicorn("starlette_app:app"), files=("starlette_app.py",)
    ),
    App("asgi-starlette-hypercorn", "asgi", _hypercorn("starlette_app:app")),
    App("fastapi-uvicorn", "fastapi", _uvicorn("app:app"), files=("app.py",)),
    App("fastapi-uvicorn-workers", "fastapi", _uvicorn("app:app", "--workers", "2")),
    App(
        "b-fastapi-uvicorn",
        "dependent-services",
        _uvicorn("service_b:app"),
        files=("service_b.py",),
    ),
    App(
        "b-flask-waitress",
        "dependent-services",
        lambda port: [PY, "service_b_flask.py", "--port", str(port)],
        files=("service_b_flask.py",),
    ),
    App("b-flask-gunicorn", "dependent-services", _gunicorn_plugin("service_b_flask:app")),
    App(
        "b-asgi-sdready-exec-hypercorn",
        "dependent-services",
        lambda port: [str(BIN / "sdready"), "exec", "--", *_hypercorn("service_b_asgi:app")(port)],
        files=("service_b_asgi.py",),
    ),
    App(
        "b-asgi-sdready-exec-granian",
        "dependent-services",
        lambda port: [
            str(BIN / "sdready"),
            "exec",
            "--",
            str(BIN / "granian"),
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "service_b_asgi:app",
        ],
    ),
    App(
        "flask-waitress",
        "flask",
        lambda port: [PY, "app.py", "--port", str(port)],
        files=("app.py",),
    ),
    App(
        "gunicorn-flask-conf",
        "gunicorn",
        lambda port: [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "flask_app:app"],
        env={"WORKERS": "1"},  # BIND is added per port below
        files=("flask_app.py", "gunicorn.conf.py"),
    ),
    App(
        "gunicorn-fastapi-uvicorn-worker",
        "gunicorn",
        lambda port: [
            str(BIN / "gunicorn"),
            "-c",
            "python:sdready.plugins.gunicorn",
            "-k",
            "uvicorn_worker.UvicornWorker",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "fastapi_app:app",
        ],
        files=("fastapi_app.py",),
    ),
]
APPS += [
    App(
        "restarts-waitress-listen-socket",
        "restarts",
        lambda port: [PY, "app.py", "--listen", f"127.0.0.1:{port}"],
        files=("app.py",),
    ),
    App(
        "restarts-exec-listen-uvicorn",
        "restarts",
        lambda port: [
            str(BIN / "sdready"),
            "exec",
            "--listen",
            f"127.0.0.1:{port}",
            "--",
            str(BIN / "uvicorn"),
            "--fd",
            "3",
            "asgi_app:app",
        ],
        files=("asgi_app.py",),
    ),
]
APPS += [
    App("django-uvicorn", "django", _uvicorn("mysite.asgi:application")),
    App(
        "django-waitress",
        "django",
        lambda port: [
            str(BIN / "waitress-serve"),
            f"--listen=127.0.0.1:{port}",
            "mysite.wsgi:application",
        ],
    ),
    App("django-gunicorn", "django", _gunicorn_plugin("mysite.wsgi:application")),
    App(
        "django-runserver",
        "django",
        lambda port: [PY, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        files=("manage.py",),
    ),
]
# Files in example folders that are not apps to serve, and why.
NOT_APPS = {
    "dependent-services/client_a.py": "the client; test_dependent_client_a runs it",
    "dependent-services/alternative_sdnotify.py": "demo --compare only: READY sent too early",
}


def _skip_missing(folder: str) -> None:
    if not (EXAMPLES / folder).is_dir():
        pytest.skip(f"examples/{folder} does not exist yet")


class Running(ServerProcess):
    """An example app's server, its port, and its output (the last 3000 characters)."""

    def __init__(self, argv: list[str], *, port: int, **kwargs: Any) -> None:
        super().__init__(argv, **kwargs)
        self.port = port

    def output(self, tail: int | None = 3000) -> str:
        return super().output(tail)


def _start(app: App, port: int, recorder: NotifyRecorder, log: Path) -> Running:
    env = child_env({**FAST, **app.env, "BIND": f"127.0.0.1:{port}"}, notify=recorder)
    return Running(app.argv(port), port=port, env=env, log=log, cwd=EXAMPLES / app.folder)


def _wait_ready(running: Running, recorder: NotifyRecorder) -> bool:
    """True at READY=1; False if the process exited first (raises on timeout)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(RecorderTimeout):
            recorder.wait_for("READY=1", timeout=0.2)
            return True
        if running.process.poll() is not None:
            return False
    raise AssertionError(
        f"no READY=1 within {READY_TIMEOUT:g} s; got {[str(m) for m in recorder.messages]}\n"
        + running.output()
    )


@contextlib.contextmanager
def serving(app: App, recorder: NotifyRecorder, tmp_path: Path) -> Iterator[Running]:
    """The app, started on a free port and READY (retrying when the port got taken)."""
    for attempt in range(PORT_ATTEMPTS):
        recorder.clear()
        running = _start(app, free_port(), recorder, tmp_path / f"{app.id}-{attempt}.log")
        try:
            if _wait_ready(running, recorder):
                yield running
                return
        finally:
            running.close(grace=15.0)  # the whole group: the server and its workers
        if "in use" not in running.output().lower() or attempt == PORT_ATTEMPTS - 1:
            raise AssertionError(f"{app.id} exited before READY=1:\n{running.output()}")
    raise AssertionError("unreachable")


@pytest.mark.parametrize("app", APPS, ids=lambda app: app.id)
def test_example_ready_means_reachable(
    app: App, notify_socket: NotifyRecorder, tmp_path: Path
) -> None:
    _skip_missing(app.folder)
    with serving(app, notify_socket, tmp_path) as running:
        # The moment READY arrived: a client systemd starts now must be answered.
        status, body = http_get(("127.0.0.1", running.port), timeout=GET_TIMEOUT)
        assert status == 200, body
        ready = notify_socket.wait_for("READY=1", timeout=0)
        assert "STATUS" in ready, str(ready)


def test_dependent_client_a(notify_socket: NotifyRecorder, tmp_path: Path) -> None:
    """A succeeds against a READY B and fails (exit 1, with the reason) without one."""
    client = EXAMPLES / "dependent-services" / "client_a.py"
    b = next(app for app in APPS if app.id == "b-fastapi-uvicorn")
    with serving(b, notify_socket, tmp_path) as running:
        url = f"http://127.0.0.1:{running.port}/"
        ok = subprocess.run(
            [PY, str(client), url], check=False, capture_output=True, text=True, timeout=30
        )
    assert ok.returncode == 0, ok.stderr
    assert '"service":"B"' in ok.stdout
    with socket.socket() as unused:  # bound, not listening: connections are refused
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}/"
        failed = subprocess.run(
            [PY, str(client), url], check=False, capture_output=True, text=True, timeout=30
        )
    assert failed.returncode == 1
    assert "failed: " in failed.stderr and "refused" in failed.stderr


def test_every_example_app_is_covered() -> None:
    """A new example app must be added to APPS (or NOT_APPS), so it is tested too."""
    covered = {f"{app.folder}/{name}" for app in APPS for name in app.files}
    for folder in sorted(p for p in EXAMPLES.iterdir() if p.is_dir()):
        if folder.name.startswith((".", "_")):
            continue
        assert (folder / "README.md").is_file(), f"examples/{folder.name} has no README.md"
        assert list(folder.glob("*.service")), f"examples/{folder.name} has no unit file"
        for path in sorted(folder.glob("*.py")):
            key = f"{folder.name}/{path.name}"
            assert key in covered or key in NOT_APPS, f"examples/{key} is not tested: add to APPS"


# -- unit files ----------------------------------------------------------------------------

UNITS = sorted(EXAMPLES.glob("*/*.service"))
_SRV = re.compile(r"/srv/[\w.-]+")


def _unit_id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
@pytest.mark.parametrize("unit", UNITS, ids=_unit_id)
def test_unit_file_verifies(unit: Path, tmp_path: Path) -> None:
    """``systemd-analyze verify``: no unknown keys, no bad values, executables exist.

    The units name /srv/<app>/... paths; they are moved under tmp_path, with stand-in
    executables, since verify checks that every Exec*= program exists.
    """
    complaints = verify_units(unit.parent.glob("*.service"), unit.name, tmp_path)
    assert not complaints, complaints


def _localize(text: str, folder: Path, ports: Mapping[str, int], names: Mapping[str, str]) -> str:
    """An example unit pointed at this checkout: venv programs, the example dir, free ports."""
    python, python_env = python_for_units()
    venv_bin = str(Path(python).parent)
    text = re.sub(r"/srv/[\w.-]+/\.venv/bin", venv_bin, text)
    text = _SRV.sub(str(folder), text)
    for port, free in ports.items():
        text = re.sub(rf"(?<=[ :]){port}\b", str(free), text)
    for name, unique in names.items():
        text = text.replace(name, unique)
    env = {**python_env, **FAST, "BIND": f"127.0.0.1:{ports['8000']}", "WORKERS": "1"}
    extra = "\n".join(f'Environment="{k}={v}"' for k, v in env.items())
    return text.replace("[Service]\n", f"[Service]\n{extra}\n", 1)


SYSTEMD_UNITS = [u for u in UNITS if u.name != "service-a.service"]


@pytest.mark.systemd
@pytest.mark.parametrize("unit", SYSTEMD_UNITS, ids=_unit_id)
def test_unit_runs_under_systemd(unit: Path, user_manager: UserManager) -> None:
    """The example unit, as written (paths and port aside), starts and serves."""
    with user_manager.scoped():
        ports = {"8000": free_port(), "8001": free_port()}
        name = user_manager.unit_name(unit.stem)
        text = _localize(unit.read_text(), unit.parent, ports, {unit.name: name})
        user_manager.write_unit(name, text)
        user_manager.start_unit(name)
        user_manager.wait_for(name, ActiveState="active", timeout=READY_TIMEOUT)
        port = ports["8001"] if re.search(rf"\b{ports['8001']}\b", text) else ports["8000"]
        status, body = http_get(("127.0.0.1", port), timeout=GET_TIMEOUT)
        assert status == 200, body
        # Several workers (uvicorn --workers, NotifyAccess=all) each send their own STATUS:
        # a late one's "Starting…" may follow the first READY; every one ends with Ready.
        user_manager.wait_for(
            name, lambda p: p["StatusText"].startswith("Ready"), timeout=READY_TIMEOUT
        )
        _assert_doctor_clean(user_manager, name)


def _assert_doctor_clean(manager: UserManager, name: str) -> None:
    """``sdready doctor`` finds nothing wrong with the example unit (exit status 0)."""
    result = manager.doctor(name)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.systemd
def test_dependent_units_under_systemd(user_manager: UserManager) -> None:
    """service-a.service pulls in service-b.service, starts after its READY and succeeds."""
    folder = EXAMPLES / "dependent-services"
    with user_manager.scoped():
        ports = {"8000": free_port()}
        names = {
            "service-a.service": user_manager.unit_name("service-a"),
            "service-b.service": user_manager.unit_name("service-b"),
        }
        for original, name in names.items():
            text = _localize((folder / original).read_text(), folder, ports, names)
            user_manager.write_unit(name, text, reload=False)
        user_manager.daemon_reload()
        a, b = names["service-a.service"], names["service-b.service"]
        user_manager.start_unit(a)
        props = user_manager.wait_for(
            a, lambda p: p["ActiveState"] in ("active", "failed"), timeout=READY_TIMEOUT
        )
        assert props["ActiveState"] == "active", user_manager.describe(a)
        b_ready = user_manager.show(b, "ActiveEnterTimestampMonotonic")
        a_start = user_manager.show(a, "ExecMainStartTimestampMonotonic")
        assert int(a_start["ExecMainStartTimestampMonotonic"]) >= int(
            b_ready["ActiveEnterTimestampMonotonic"]
        )
        _assert_doctor_clean(user_manager, a)
        _assert_doctor_clean(user_manager, b)


# -- make demo -----------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_tells_the_story_with_the_recorder() -> None:
    """``examples/demo.py --recorder``: A fails under Type=simple, succeeds with sdready.

    (``make demo`` itself runs the systemd version; this keeps the script from rotting
    where no private systemd can run.)
    """
    result = subprocess.run(
        [PY, str(EXAMPLES / "demo.py"), "--recorder"],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Connection refused" in out
    assert "B READY=1  STATUS=Ready: listening on 127.0.0.1:" in out
    assert out.count("HTTP 200") >= 4, out  # scenario 2 and the three servers of scenario 3
    assert out.count("→ guaranteed: READY only once") == 3, out  # scenario 3's verdicts
    assert "UNEXPECTED" not in out
    assert "nothing left behind" in out


def _demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sdready_demo", EXAMPLES / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _rows(lines: list[str]) -> tuple[int, int]:
    listening = next(i for i, line in enumerate(lines) if "B listening" in line)
    ready = next(i for i, line in enumerate(lines) if "B READY=1" in line)
    return listening, ready


def test_demo_timeline_never_prints_ready_before_the_listen_it_reports() -> None:
    """The 1 ms poll found no listener at +99.6 ms and one at +101.0 ms; READY came at +100.4.

    The listen() happened somewhere in that window, so the row says so and comes first;
    the 0.1 demo printed READY (+100 ms) one line above "listening" (+101 ms).
    """
    demo = _demo()
    run = demo.Run(demo.FASTAPI, "notify", 8000, "recorder", b_start=10.0, ready=10.1004)
    run.listening, run.not_listening = 10.101, 10.0996
    run.a_start, run.a_ok = 10.102, True
    lines = demo.timeline(run)
    listening, ready = _rows(lines)
    assert listening < ready, lines
    assert "between +100 and +101 ms" in lines[listening]
    assert "+101 ms" not in lines[listening].split("B listening")[0]  # no single time claimed
    assert demo.verdict(run).startswith("guaranteed: READY only once B listened")


def test_demo_timeline_explains_a_waiting_status_after_the_listen() -> None:
    """Under load the wait may begin after uvicorn listened; control: sent before, no note."""
    demo = _demo()
    run = demo.Run(demo.FASTAPI, "notify", 8000, "recorder", b_start=10.0, ready=10.103)
    run.listening, run.not_listening = 10.101, 10.100
    run.messages = [(10.102, {"STATUS": "Waiting for the listening socket…"})]
    note = "(sent as the wait began: B already listened)"
    assert any(note in line for line in demo.timeline(run)), demo.timeline(run)
    run.messages = [(10.0995, {"STATUS": "Waiting for the listening socket…"})]
    assert not any(note in line for line in demo.timeline(run)), demo.timeline(run)


def test_demo_verdicts_tell_a_race_from_a_guarantee() -> None:
    """Control: READY before the window (startup code's notify) reads as a race, in order."""
    demo = _demo()
    startup_code = next(v for v in demo.COMPARE if "startup code" in v.how)
    run = demo.Run(startup_code, "notify", 8000, "recorder", b_start=10.0, ready=10.099)
    run.listening, run.not_listening = 10.101, 10.0996
    run.a_start, run.a_ok = 10.102, True
    lines = demo.timeline(run)
    listening, ready = _rows(lines)
    assert ready < listening, lines
    assert lines[listening].split() == ["+101", "ms", "B", "listening", "on", "127.0.0.1:8000"]
    assert demo.verdict(run).startswith(
        "no guarantee, A's GET got its answer this time: READY before B listened"
    )
    run.a_ok = False
    assert demo.verdict(run).startswith("no guarantee, A's GET failed: READY before B listened")
    # The same early READY from an approach that claims a guarantee is flagged, not excused.
    run.variant, run.a_ok = demo.FASTAPI, True
    assert demo.verdict(run).startswith("UNEXPECTED")
    # A READY after B listened, from an approach without a guarantee (gunicorn's own): its
    # margin, not the guaranteed rows' words.
    run.variant, run.ready = startup_code, 10.201
    assert demo.verdict(run).startswith(
        "no guarantee, A's GET got its answer this time: READY 100 ms after B listened"
    )
