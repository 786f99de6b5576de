"""SystemdNotify in real server processes: failures, STOPPING, watchdog, inherited sockets.

Each test starts the app module of ``_flask_support`` under a real server, with a
NotifyRecorder standing in for systemd, and kills the process group at the end.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _flask_support import Server, is_our_ready, ready_address, run_server, write_app
from _servers import http_get
from sdready import texts
from sdready.testing import NotifyRecorder

pytest.importorskip("flask")
pytest.importorskip("waitress")

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return write_app(tmp_path)


@pytest.fixture
def recorder() -> Iterator[NotifyRecorder]:
    recorder = NotifyRecorder(set_environment=False).start()
    try:
        yield recorder
    finally:
        recorder.close()


def _from(recorder: NotifyRecorder, pid: int, field: str) -> list[str]:
    return [m[field] for m in recorder.messages if m.pid == pid and field in m]


def _serve_and_check(server: Server) -> str:
    message = server.wait_ready()
    address = ready_address(message)
    assert http_get(address) == (200, "ok")
    return address


# -- never READY when the process exits before serving ------------------------------------


@pytest.mark.parametrize("kind", ["waitress", "flask-run", "gunicorn"])
def test_import_error_after_init_app_sends_no_ready(
    kind: str, app: Path, recorder: NotifyRecorder
) -> None:
    if kind == "gunicorn":
        pytest.importorskip("gunicorn")
    with run_server(kind, app, recorder, env={"APP_FAIL": "import"}) as server:
        assert server.wait() != 0
        if kind == "waitress":  # the uncaught exception itself is what STATUS says
            error = "ImportError: simulated import error after SystemdNotify(app)"
            failed = texts.STARTUP_FAILED.format(message=error)
            recorder.wait_for(f"STATUS={failed}", timeout=5)
        elif kind == "flask-run":  # click reports the error itself: no exception reaches us
            failed = texts.STARTUP_FAILED.format(message="the process exited before it served")
            recorder.wait_for(f"STATUS={failed}", timeout=5)
        recorder.barrier()
    assert not [m for m in recorder.messages if is_our_ready(m)], recorder.messages


@pytest.mark.parametrize("kind", ["waitress", "werkzeug", "flask-run"])
def test_port_in_use_sends_no_ready(kind: str, app: Path, recorder: NotifyRecorder) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        with run_server(kind, app, recorder, args=[port]) as server:
            assert server.wait() != 0, server.output()
            failed = recorder.wait_for(
                lambda m: m.get("STATUS", "").startswith("Startup failed"), 5
            )
            recorder.barrier()
    assert recorder.values("READY") == [], recorder.messages
    if kind == "waitress":  # the bind's own error, with its errno (werkzeug exits itself)
        assert "Address already in use" in failed["STATUS"], failed
        assert failed["ERRNO"] == "98", failed


def test_main_thread_gone_before_listening_sends_no_ready(
    app: Path, recorder: NotifyRecorder
) -> None:
    # A server thread that binds only once the main thread has finished: the interpreter is
    # shutting down, so READY would announce a process that is about to exit.
    script = app.parent / "late.py"
    script.write_text(
        "import threading, time, socket\n"
        "import flask_app\n"
        "def late():\n"
        "    time.sleep(0.3)\n"
        "    s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); time.sleep(0.5)\n"
        "threading.Thread(target=late).start()\n"
    )
    env = {"NOTIFY_SOCKET": recorder.address, "PYTHONPATH": str(app.parent)}
    result = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    recorder.barrier()
    assert recorder.values("READY") == [], result.stderr
    assert "main thread has ended" in result.stderr


# -- STOPPING: chained signal handlers, atexit -----------------------------------------------


@pytest.mark.parametrize("kind", ["waitress", "werkzeug"])
def test_sigterm_sends_stopping_and_still_kills(
    kind: str, app: Path, recorder: NotifyRecorder
) -> None:
    with run_server(kind, app, recorder) as server:
        _serve_and_check(server)
        server.signal(signal.SIGTERM)
        # SIG_DFL before sdready: the process still dies of the signal, no cleanup ran.
        assert server.wait() == -signal.SIGTERM
        assert "SERVE_RETURNED" not in server.output()
        recorder.wait_for("STOPPING=1", timeout=5)
        recorder.barrier()
    assert _from(recorder, server.pid, "STOPPING") == ["1"]
    assert recorder.statuses[-1] == texts.STOPPING
    fields = [m for m in recorder.messages if "READY" in m or "STOPPING" in m]
    assert ["READY" in m for m in fields] == [True, False]


def test_no_stopping_from_a_process_that_is_not_the_units_main_one(
    app: Path, recorder: NotifyRecorder
) -> None:
    # SYSTEMD_EXEC_PID names the main process; a child's exit is not the service stopping.
    with run_server("waitress", app, recorder, env={"SYSTEMD_EXEC_PID": "1"}) as server:
        _serve_and_check(server)
        server.signal(signal.SIGTERM)
        assert server.wait() == -signal.SIGTERM
        recorder.barrier()
    assert recorder.values("STOPPING") == []
    assert "NotifyAccess=all" in server.output()  # the core's hint for the READY above


@pytest.mark.parametrize("kind", ["waitress", "werkzeug"])
def test_sigint_sends_stopping_once_then_the_server_shuts_down(
    kind: str, app: Path, recorder: NotifyRecorder
) -> None:
    with run_server(kind, app, recorder) as server:
        _serve_and_check(server)
        server.signal(signal.SIGINT)
        # KeyboardInterrupt as before: the server closes, serve() returns, exit 0.
        assert server.wait() == 0, server.output()
        assert "SERVE_RETURNED" in server.output()
        recorder.wait_for("STOPPING=1", timeout=5)
        recorder.barrier()
    assert _from(recorder, server.pid, "STOPPING") == ["1"]  # the signal, not atexit again


def test_gunicorn_worker_logs_the_plugin_hint_once_and_never_stops(
    app: Path, recorder: NotifyRecorder
) -> None:
    pytest.importorskip("gunicorn")
    with run_server("gunicorn", app, recorder) as server:
        ready = server.wait_ready()
        assert http_get(ready_address(ready)) == (200, "ok")
        assert ready.pid != server.pid  # the worker, not the arbiter
        server.signal(signal.SIGTERM)  # gunicorn's graceful shutdown, untouched
        assert server.wait() == 0
        recorder.barrier()
    output = server.output()
    assert output.count("without sdready's gunicorn plugin") == 1, output
    assert recorder.values("STOPPING") == []  # a worker's exit is not the service stopping


def test_gunicorn_plugin_leaves_the_extension_silent(app: Path, recorder: NotifyRecorder) -> None:
    pytest.importorskip("gunicorn")
    with run_server("gunicorn-plugin", app, recorder) as server:
        ready = recorder.wait_for("READY=1", timeout=30)
        address = re.search(r"listening on (\S+?)(?:,| \()", ready["STATUS"])
        assert address is not None, ready
        assert http_get(address.group(1)) == (200, "ok")
        recorder.barrier()
    senders = {m.pid for m in recorder.messages if "BARRIER" not in m}
    assert senders == {server.pid}, recorder.messages  # the arbiter
    output = server.output()
    assert "sdready inert for app 'flask_app': no NOTIFY_SOCKET" in output
    assert "without sdready's gunicorn plugin" not in output


# -- watchdog ---------------------------------------------------------------------------------


def test_watchdog_pings_only_while_health_passes(
    app: Path, recorder: NotifyRecorder, tmp_path: Path
) -> None:
    flag = tmp_path / "healthy"
    flag.touch()
    env = {"WATCHDOG_USEC": "400000", "APP_HEALTH": "1", "APPCFG_HEALTH_FILE": str(flag)}

    def pings() -> int:
        return len(recorder.values("WATCHDOG"))

    with run_server("waitress", app, recorder, env=env) as server:
        _serve_and_check(server)
        first = recorder.wait_for("WATCHDOG=1", timeout=5)
        recorder.wait_for("WATCHDOG=1", timeout=2, since=recorder.messages.index(first) + 1)
        flag.unlink()
        # One ping thread: once a skip is logged, every earlier ping was sent already.
        skipped = "watchdog ping skipped: health check returned False"
        deadline = time.monotonic() + 5
        while skipped not in server.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert skipped in server.output()
        recorder.barrier()
        sick = pings()
        time.sleep(1.0)  # five ping periods of 0.2 s
        assert pings() == sick, "pinged although health() returned False"
        flag.touch()
        recorder.wait_for("WATCHDOG=1", timeout=5, since=len(recorder))


def test_watchdog_off_by_argument(app: Path, recorder: NotifyRecorder) -> None:
    env = {"WATCHDOG_USEC": "200000", "APP_EXT_ARGS": '{"watchdog": false}'}
    with run_server("waitress", app, recorder, env=env) as server:
        _serve_and_check(server)
        time.sleep(0.5)
    recorder.barrier()
    assert recorder.values("WATCHDOG") == []


# -- inherited sockets: READY waits for an HTTP probe -----------------------------------------


@pytest.mark.parametrize("probe", ["auto", None], ids=["default-probe", "probe-off"])
def test_inherited_socket_ready_only_after_serving(
    probe: str | None, app: Path, recorder: NotifyRecorder
) -> None:
    with socket.socket() as inherited:
        inherited.bind(("127.0.0.1", 0))
        inherited.listen()
        inherited.set_inheritable(True)
        env = {} if probe == "auto" else {"APPCFG_SDREADY_PROBE": "null"}
        args = [str(inherited.fileno())]
        with run_server(
            "waitress-fd", app, recorder, gap=0.5, args=args, env=env, pass_fds=[inherited.fileno()]
        ) as server:
            ready = server.wait_ready()
            assert http_get(ready_address(ready)) == (200, "ok")
            serving_at = server.serving_at()
    output = server.output()
    if probe == "auto":
        assert ready.time > serving_at, "READY before waitress even started serving"
        assert "READY waits until a GET (http:/) answers below 500" in output
    else:  # the kernel accepted all along: without the probe READY comes during the gap
        assert ready.time < serving_at
        assert "proves little" in output


# -- werkzeug's reloader ---------------------------------------------------------------------


@pytest.mark.slow
def test_reloader_parent_sends_ready_once_its_child_serves(
    app: Path, recorder: NotifyRecorder
) -> None:
    # The watcher (the unit's main process) listens 1-2 s before its child serves: READY
    # from it waits for an HTTP answer, so it is true and works with NotifyAccess=main.
    with run_server("flask-run-debug", app, recorder) as server:
        ready = server.wait_ready()
        assert ready.pid == server.pid
        assert http_get(ready_address(ready)) == (200, "ok")
        status, child = http_get(ready_address(ready), "/pid")
        assert status == 200 and int(child) != server.pid  # the child serves
        time.sleep(0.2)
        recorder.barrier()
        assert [m for m in recorder.messages if m.pid == int(child)] == []  # the child is silent
        assert len(recorder.values("READY")) == 1
        server.signal(signal.SIGTERM)  # werkzeug's reloader turns SIGTERM into sys.exit(0)
        server.wait()
        recorder.barrier()
    assert "READY waits until a GET (http:/) answers below 500" in server.output()
    assert _from(recorder, server.pid, "STOPPING") == ["1"]


# -- several apps, config vs arguments --------------------------------------------------------


def test_two_apps_share_one_waiter_and_one_ready(app: Path, recorder: NotifyRecorder) -> None:
    with run_server("two-apps", app, recorder) as server:
        address = _serve_and_check(server)
        assert http_get(address, "/other/") == (200, "ok")
        time.sleep(0.2)
    output = server.output()
    line = next(line for line in output.splitlines() if line.startswith("APPS "))
    assert line.startswith("APPS 2 "), line
    assert line.count("sdready-flask-ready") == 1, line
    assert len(recorder.values("READY")) == 1


@pytest.mark.parametrize(
    ("args", "expect_ready"),
    [("{}", False), ('{"on_timeout": "ready"}', True)],
    ids=["config-only", "argument-wins"],
)
def test_config_keys_and_arguments_reach_the_waiter(
    args: str, expect_ready: bool, app: Path, recorder: NotifyRecorder
) -> None:
    # Config: wait 0.5 s for port 1 (never there), then fail; the argument overrides one key.
    env = {
        "APPCFG_SDREADY_READY_TIMEOUT": "0.5",
        "APPCFG_SDREADY_EXPECT": "1",
        "APPCFG_SDREADY_ON_TIMEOUT": "fail",
        "APP_EXT_ARGS": args,
    }
    with run_server("waitress", app, recorder, env=env) as server:
        if expect_ready:
            ready = recorder.wait_for("READY=1", timeout=10)
            assert ready["STATUS"] == texts.READY_UNCHECKED.format(pid=server.pid)
        else:
            # expect= names what must listen: the text says so (waitress does listen).
            failed = texts.TIMEOUT_FAIL_EXPECTED.format(timeout=0.5)
            recorder.wait_for(lambda m: m.get("STATUS") == failed, timeout=10)
            recorder.barrier()
            assert recorder.values("READY") == []


# -- Flask CLI commands other than `run` never arm --------------------------------------------


@pytest.mark.parametrize("cli", [["routes"], ["sdready", "status"]])
def test_flask_cli_commands_send_nothing(
    cli: list[str], app: Path, recorder: NotifyRecorder
) -> None:
    env = {"NOTIFY_SOCKET": recorder.address, "PYTHONPATH": str(app.parent)}
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "flask_app", *cli],
        cwd=app.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    recorder.barrier()
    assert [m.text for m in recorder.messages] == ["BARRIER=1"]  # the barrier's own only
    assert "does not serve" in result.stderr  # the DEBUG line saying why
    if cli[0] == "sdready":
        assert recorder.address in result.stdout
