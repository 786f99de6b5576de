"""SystemdNotify as a Flask extension, in-process and outside systemd (no NOTIFY_SOCKET).

Here the extension must be inert: these tests check the extension pattern, the options
and the CLI, and that nothing (thread, signal handler, log line above DEBUG) leaks into the
host process. Behaviour under a notify socket runs in subprocesses (test_flask_lifecycle).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator

import pytest

flask = pytest.importorskip("flask")

from sdready import ReadyOptions  # noqa: E402
from sdready.plugins import flask as plugin  # noqa: E402
from sdready.plugins.flask import SystemdNotify  # noqa: E402


@pytest.fixture(autouse=True)
def _outside_systemd(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID"):
        monkeypatch.delenv(name, raising=False)
    yield
    assert plugin._process is None  # nothing armed in the test process


def create_app(**config: object) -> flask.Flask:
    app = flask.Flask("t")
    app.config.update(config)
    return app


def options(app: flask.Flask) -> ReadyOptions:
    return app.extensions["sdready"].options


def test_inert_outside_systemd(caplog: pytest.LogCaptureFixture) -> None:
    threads = set(threading.enumerate())
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    app = create_app()
    SystemdNotify(app)
    assert set(threading.enumerate()) == threads
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    assert [r for r in caplog.records if r.levelno > logging.DEBUG] == []
    state = app.extensions["sdready"]
    assert not state.active
    assert "NOTIFY_SOCKET" in state.inert_reason


def test_config_defaults_are_set_without_overwriting() -> None:
    app = create_app(SDREADY_READY_TIMEOUT=5)
    SystemdNotify(app)
    assert app.config["SDREADY_READY_TIMEOUT"] == 5
    assert app.config["SDREADY_ON_TIMEOUT"] == "warn"
    assert app.config["SDREADY_PROBE"] == "auto"
    assert app.config["SDREADY_WATCHDOG"] is True
    assert options(app).ready_timeout == 5


def test_arguments_win_over_config() -> None:
    app = create_app(SDREADY_READY_TIMEOUT=5, SDREADY_ON_TIMEOUT="fail")
    SystemdNotify(app, ready_timeout=7)
    assert options(app).ready_timeout == 7
    assert options(app).on_timeout == "fail"


def test_config_strings_are_converted() -> None:
    # as from environment variables (app.config.from_prefixed_env keeps non-JSON strings)
    app = create_app(
        SDREADY_READY_TIMEOUT="2.5", SDREADY_WATCHDOG="off", SDREADY_EXPECT="8000, /run/a.sock"
    )
    SystemdNotify(app, probe="http:/healthz")
    assert options(app).ready_timeout == 2.5
    assert options(app).watchdog is False
    assert options(app).expect == [8000, "/run/a.sock"]
    assert options(app).probe == "http:/healthz"
    assert not options(app).auto_probe


def test_probe_auto_is_resolved_per_process() -> None:
    app = create_app()
    SystemdNotify(app)
    assert options(app).auto_probe  # "http:/" only for inherited sockets, decided per process


def test_health_and_notifier_from_config() -> None:
    def health() -> bool:
        return True

    app = create_app(SDREADY_HEALTH=health)
    SystemdNotify(app)
    assert options(app).health is health


@pytest.mark.parametrize(
    "config",
    [
        {"SDREADY_ON_TIMEOUT": "maybe"},
        {"SDREADY_READY_TIMEOUT": -1},
        {"SDREADY_PROBE": "tcp"},
        {"SDREADY_HEALTH": "not callable"},
    ],
)
def test_invalid_values_raise_in_init_app(config: dict[str, object]) -> None:
    app = create_app(**config)
    with pytest.raises(ValueError):
        SystemdNotify(app)
    assert "sdready" not in app.extensions


def test_unknown_option_raises_at_once() -> None:
    with pytest.raises(TypeError, match="ready_timout"):
        SystemdNotify(ready_timout=3)


def test_registering_twice_fails_loudly() -> None:
    app = create_app()
    ext = SystemdNotify(app)
    with pytest.raises(RuntimeError, match="already registered"):
        ext.init_app(app)
    with pytest.raises(RuntimeError, match="already registered"):
        SystemdNotify(app)


def test_factory_pattern_one_extension_many_apps() -> None:
    ext = SystemdNotify(ready_timeout=3)

    def factory(timeout: float) -> flask.Flask:
        app = create_app(SDREADY_READY_TIMEOUT=timeout, SDREADY_ON_TIMEOUT="fail")
        ext.init_app(app)
        return app

    first, second = factory(1), factory(2)
    assert first.extensions["sdready"] is not second.extensions["sdready"]
    assert options(first).ready_timeout == options(second).ready_timeout == 3  # argument wins
    assert options(second).on_timeout == "fail"
    assert "sdready" in first.cli.commands


def test_status_command_outside_systemd() -> None:
    app = create_app()
    SystemdNotify(app)
    result = app.test_cli_runner().invoke(args=["sdready", "status"])
    assert result.exit_code == 0, result.output
    assert "not set: sdready stays inert" in result.output
    assert "watchdog:" in result.output
    assert "NotifyAccess" in result.output
    assert "no NOTIFY_SOCKET" in result.output


def test_status_command_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app()
    SystemdNotify(app)
    env = {"NOTIFY_SOCKET": "/run/x/notify", "WATCHDOG_USEC": "20000000", "SYSTEMD_EXEC_PID": "1"}
    result = app.test_cli_runner().invoke(args=["sdready", "status"], env=env)
    assert result.exit_code == 0, result.output
    assert "/run/x/notify" in result.output
    assert "WatchdogSec=20s, pinging every 10 s" in result.output
    assert "needs NotifyAccess=all" in result.output


def test_status_command_without_the_extension() -> None:
    app = create_app()
    app.cli.add_command(plugin._cli)
    result = app.test_cli_runner().invoke(args=["sdready", "status"])
    assert "not registered" in result.output


def test_second_app_with_other_readiness_options_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One READY per process: the process-wide waiter keeps the first app's options.
    first, second = create_app(), create_app(SDREADY_READY_TIMEOUT=3)
    SystemdNotify(first)
    SystemdNotify(second)
    process = plugin._Process(first.extensions["sdready"])  # not started: no thread
    process.attach(first, first.extensions["sdready"])
    process.attach(second, second.extensions["sdready"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "ready_timeout differ from the first app's" in warnings[0]
