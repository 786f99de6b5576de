"""The Django plugin in real server processes, a NotifyRecorder standing in for systemd.

The test project (tests/_django_site) sleeps ``SITE_GAP`` seconds once the app exists and
before the server binds, so a READY sent when Django is set up would come too early: the
promise is that a GET at the moment READY arrives succeeds. Every case has its control:
the project without sdready (no READY), the obvious approach (READY from ``ready()``:
refused), gunicorn without sdready's plugin (its READY before Django loaded).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _django_support import KINDS, command, manage, serve, site_env
from _servers import free_port, http_get
from sdready.testing import NotifyMessage, NotifyRecorder

pytest.importorskip("django")
pytest.importorskip("waitress")
pytest.importorskip("uvicorn")
pytest.importorskip("gunicorn")

pytestmark = pytest.mark.timeout(120)

GAP = 0.5
ROUNDS = 3


@pytest.fixture
def recorder(notify_socket: NotifyRecorder) -> NotifyRecorder:
    return notify_socket  # each server's NOTIFY_SOCKET is set explicitly (serve, _run)


def _get(port: int) -> tuple[int, str]:
    return http_get(("127.0.0.1", port), timeout=1.0)


# -- READY means reachable ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_get_succeeds_the_moment_ready_arrives(
    kind: str, recorder: NotifyRecorder, tmp_path: Path
) -> None:
    for index in range(ROUNDS):
        recorder.clear()
        port = free_port()
        log = tmp_path / f"{kind}-{index}.log"
        with serve(command(kind, port), recorder, log, site_env(gap=GAP)) as site:
            began = time.monotonic()
            ready = site.ready()
            assert _get(port) == (200, "ok"), site.output(3000)  # at once, like a dependent unit
            assert ready.time - began >= GAP  # the app module's slow part came first
            assert ready["STATUS"].startswith("Ready: "), ready
            assert f"listening on 127.0.0.1:{port}" in ready["STATUS"]


def test_without_sdready_no_ready(recorder: NotifyRecorder, tmp_path: Path) -> None:
    """Control: the same project without the plugin, Django's own get_asgi_application."""
    port = free_port()
    env = site_env(mode="plain", asgi="django")
    with serve(command("uvicorn", port), recorder, tmp_path / "plain.log", env) as site:
        deadline = time.monotonic() + 30
        while True:  # serving: a GET succeeds
            try:
                assert _get(port) == (200, "ok")
                break
            except OSError:
                assert time.monotonic() < deadline and site.process.poll() is None, site.output()
                time.sleep(0.05)
        recorder.barrier()  # everything the server sent so far is recorded
    assert [m for m in recorder if "READY" in m] == []


def test_ready_from_app_config_ready_comes_before_the_server_listens(
    recorder: NotifyRecorder, tmp_path: Path
) -> None:
    """Control: the obvious approach (READY in AppConfig.ready()) is refused at READY."""
    port = free_port()
    env = site_env(mode="naive", gap=GAP)
    with serve(command("waitress", port), recorder, tmp_path / "naive.log", env) as site:
        site.ready()
        with pytest.raises(ConnectionRefusedError):
            _get(port)


def test_gunicorn_without_the_plugin_says_ready_before_django_loaded(
    recorder: NotifyRecorder, tmp_path: Path
) -> None:
    """Control for gunicorn: its own READY comes at boot; the app stays out of its way."""
    port = free_port()
    with serve(command("gunicorn", port), recorder, tmp_path / "g.log", site_env(gap=GAP)) as site:
        ready = site.ready()
        assert "Ready: " not in ready.get("STATUS", "")  # gunicorn's, not ours
        deadline = time.monotonic() + 30
        while "APP_LOADED" not in site.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        loaded, threads = site.app_loaded()
        assert ready.time < loaded
        assert "sdready-django-ready" not in threads
        assert "without sdready's gunicorn plugin" in site.output()
        recorder.barrier()
    assert len(recorder.values("READY")) == 1


# -- failures, STOPPING ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["waitress", "uvicorn"])
def test_startup_failure_sends_no_ready(
    kind: str, recorder: NotifyRecorder, tmp_path: Path
) -> None:
    env = site_env(SITE_FAIL="1")
    with serve(command(kind, free_port()), recorder, tmp_path / "fail.log", env) as site:
        assert site.wait(30) != 0
        recorder.barrier()
        output = site.output(3000)
    assert "simulated failure" in output
    assert recorder.values("READY") == [], [str(m) for m in recorder]
    if kind == "waitress":  # the app config's waiter says why at exit
        assert recorder.statuses[-1] == "Startup failed: the process exited before it served"


@pytest.mark.parametrize("kind", ["waitress", "uvicorn", "runserver"])
def test_sigterm_sends_stopping(kind: str, recorder: NotifyRecorder, tmp_path: Path) -> None:
    with serve(command(kind, free_port()), recorder, tmp_path / "term.log", site_env()) as site:
        site.ready()
        site.signal(signal.SIGTERM)
        site.wait(15)
        recorder.wait_for("STOPPING=1", timeout=5)
    assert len(recorder.values("STOPPING")) == 1


# -- processes that do not serve ------------------------------------------------------------


def _run(argv: list[str], recorder: NotifyRecorder | None, env: dict[str, str]) -> str:
    environ = {**os.environ, **env}
    environ.pop("NOTIFY_SOCKET", None)
    if recorder is not None:
        environ["NOTIFY_SOCKET"] = recorder.address
    result = subprocess.run(
        argv, env=environ, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def _sent_by_others(recorder: NotifyRecorder) -> list[NotifyMessage]:
    """What the recorder got, but this test's own BARRIER messages."""
    return [m for m in recorder if m.pid != os.getpid()]


THREADS = "import threading; print('THREADS', sorted(t.name for t in threading.enumerate()))"


@pytest.mark.parametrize(
    "args", [["check"], ["migrate", "--noinput"], ["shell", "-c", THREADS]], ids=lambda a: a[0]
)
def test_management_commands_stay_inert(args: list[str], recorder: NotifyRecorder) -> None:
    output = _run(manage(*args), recorder, site_env())
    recorder.barrier()  # the command has exited; anything it sent is recorded by now
    assert _sent_by_others(recorder) == []
    assert f"'manage.py {args[0]}' does not serve" in output  # the DEBUG line says why
    if args[0] == "shell":
        assert "THREADS ['MainThread']" in output


def test_runserver_reloader_parent_is_inert_its_child_sends_ready(
    recorder: NotifyRecorder, tmp_path: Path
) -> None:
    port = free_port()
    with serve(command("runserver-reload", port), recorder, tmp_path / "r.log", site_env()) as site:
        ready = site.ready()
        assert _get(port) == (200, "ok")
        child = int(http_get(("127.0.0.1", port), "/pid").body)
        assert child != site.pid
        assert ready.pid == child and f"(pid {child})" in ready["STATUS"]
        assert "runserver's autoreloader: its child serves" in site.output()
        recorder.barrier()
    assert {m.pid for m in _sent_by_others(recorder)} == {child}  # the parent sent nothing


def test_outside_systemd_no_thread(tmp_path: Path) -> None:
    port = free_port()
    with serve(command("waitress", port), None, tmp_path / "out.log", site_env()) as site:
        deadline = time.monotonic() + 30
        while "APP_LOADED" not in site.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        _, threads = site.app_loaded()
        assert "no NOTIFY_SOCKET" in site.output()
    assert threads == ["MainThread"]


def test_under_systemd_the_waiter_thread_runs(recorder: NotifyRecorder, tmp_path: Path) -> None:
    """Control for the inert cases: the same server with NOTIFY_SOCKET has our thread."""
    with serve(command("waitress", free_port()), recorder, tmp_path / "on.log", site_env()) as site:
        site.ready()
        _, threads = site.app_loaded()
    assert "sdready-django-ready" in threads


# -- settings and the database health check -------------------------------------------------


@pytest.mark.parametrize(
    ("sdready", "expected"),
    [
        ({"ready_timeot": 5}, "unknown key 'ready_timeot' in settings.SDREADY; did you mean"),
        ({"ready_timeout": "soon"}, "settings.SDREADY: SDREADY['ready_timeout']"),
        ({"health": "no.such.module.check"}, "settings.SDREADY['health']"),
    ],
)
def test_bad_settings_stop_every_command(
    sdready: dict[str, object], expected: str, recorder: NotifyRecorder
) -> None:
    environ = {**os.environ, **site_env(sdready=sdready), "NOTIFY_SOCKET": recorder.address}
    result = subprocess.run(
        manage("check"), env=environ, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and expected in result.stderr, result.stderr


def test_watchdog_pings_only_while_the_database_answers(
    recorder: NotifyRecorder, tmp_path: Path
) -> None:
    database = tmp_path / "db.sqlite3"
    env = site_env(sdready={"health": "database"}, SITE_DB=str(database), WATCHDOG_USEC="400000")
    with serve(command("waitress", free_port()), recorder, tmp_path / "wd.log", env) as site:
        site.ready()
        first = recorder.wait_for("WATCHDOG=1", timeout=5)
        recorder.wait_for("WATCHDOG=1", timeout=5, since=recorder.messages.index(first) + 1)
        database.unlink()
        database.mkdir()  # sqlite cannot open a directory: the check fails
        skipped = "watchdog ping skipped: health check raised OperationalError"
        deadline = time.monotonic() + 10
        while skipped not in site.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert skipped in site.output(), site.output(3000)
        # One ping thread: the skip was logged after every earlier ping was sent.
        recorder.barrier()
        sick = len(recorder.values("WATCHDOG"))
        seen = site.output().count(skipped)
        while site.output().count(skipped) < seen + 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # two more periods, both skipped
        recorder.barrier()
        assert len(recorder.values("WATCHDOG")) == sick, "pinged while the database failed"
        database.rmdir()
        recorder.wait_for("WATCHDOG=1", timeout=5, since=len(recorder))


def test_asgi_watchdog_runs_the_database_check_off_the_event_loop(
    recorder: NotifyRecorder, tmp_path: Path
) -> None:
    """Under uvicorn the pings come from the loop; the sync check runs in a thread (on the
    loop's own thread Django refuses the database: see test_django_settings' control)."""
    env = site_env(
        sdready={"health": "database"}, SITE_DB=str(tmp_path / "db.sqlite3"), WATCHDOG_USEC="400000"
    )
    with serve(command("uvicorn", free_port()), recorder, tmp_path / "awd.log", env) as site:
        site.ready()
        first = recorder.wait_for("WATCHDOG=1", timeout=5)
        recorder.wait_for("WATCHDOG=1", timeout=5, since=recorder.messages.index(first) + 1)
        assert "watchdog ping skipped" not in site.output()


@pytest.mark.parametrize(
    ("sdready", "answered"), [(None, True), ({"probe": None}, False)], ids=["default", "no-probe"]
)
def test_a_socket_listening_before_django_waits_for_an_http_answer(
    sdready: dict[str, object] | None, answered: bool, recorder: NotifyRecorder, tmp_path: Path
) -> None:
    """Socket activation, a parent's fd: the kernel accepts before the app serves, so by
    default READY waits for an HTTP answer. Control: without the probe, READY comes on the
    kernel's word, and a GET then waits for a server that is still starting."""
    port = free_port()
    argv = [sys.executable, "-m", "_django_site.serve_inherited", str(port)]
    env = site_env(sdready=sdready, gap=1.5)  # longer than the GET's 1 s timeout
    with serve(argv, recorder, tmp_path / "inherited.log", env) as site:
        site.ready()
        if answered:
            assert _get(port) == (200, "ok")
        else:
            with pytest.raises(OSError):
                _get(port)
