"""Faults an operator meets, under a real (private) systemd user manager: each ends the way
docs/reference.md's "What happens when…" table says, and says why.

- A failing ``health=`` check: the watchdog is not fed and systemd kills the service, as
  before, but STATUS says which check failed and since when, and the log has one WARNING
  per failure streak (control: the same unit with a passing check stays up, and its
  STATUS is the READY one).
- A stop during a slow startup (``systemctl stop``, or systemd's own SIGTERM after
  ``TimeoutStartSec=``): the app's startup is cancelled and the process ends by the
  SIGTERM, not by ``TimeoutStopSec=``'s SIGKILL (control: the same app without sdready).
  gunicorn's booting workers end at once instead of holding the stop for its
  ``graceful_timeout`` (control: stock gunicorn, killed at ``TimeoutStopSec=``).
- A startup that fails with an ``OSError``: ``ERRNO=`` reaches systemd (``StatusErrno``)
  and STATUS is one short line (control: a ``RuntimeError`` has no errno to send).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _fastapi_units import write_server_unit
from _gunicorn_units import gunicorn_unit, unit_logs
from _servers import reserved_port
from _systemd import UnitTimeout, UserManager
from sdready import texts

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(240)]


@pytest.mark.parametrize("health", ["false", "raise", "control-passing"])
def test_failing_health_check_is_said_before_the_watchdog_kill(
    systemd: UserManager, health: str
) -> None:
    failing = health != "control-passing"
    env = {"SDREADY_TEST_STARTUP_DELAY": "0"}
    if failing:
        env["SDREADY_TEST_HEALTH"] = health
    with reserved_port() as port:
        server = write_server_unit(
            systemd,
            service_type="notify",
            bind=["--host", "127.0.0.1", "--port", str(port)],
            extra="WatchdogSec=2",
            env=env,
        )
        try:
            systemd.start_unit(server, wait_started=True, timeout=30)
            if not failing:
                # Control: a passing check keeps the unit up past WatchdogSec= with the
                # READY status, so the texts below come from the failing check alone.
                systemd.hold(server, 3.0, ActiveState="active")
                status = systemd.show(server, "StatusText")["StatusText"]
                assert status.startswith("Ready: listening on 127.0.0.1:"), status
                return
            seen = systemd.wait_for(
                server,
                lambda p: (
                    p["StatusText"].startswith("Unhealthy since ") or p["ActiveState"] != "active"
                ),
                timeout=10,
            )
            assert seen["StatusText"].startswith("Unhealthy since "), seen
            reason = "ConnectionError" if health == "raise" else "health check returned False"
            assert reason in seen["StatusText"] and seen["StatusText"].endswith(
                "; watchdog not fed"
            ), seen["StatusText"]
            ended = systemd.wait_for(server, lambda p: p["Result"] == "watchdog", timeout=20)
            assert ended["Result"] == "watchdog"
            log = (systemd.work_dir / f"{server}.log").read_text()
            assert log.count("health check failed:") == 1, log  # one WARNING per streak
        except UnitTimeout as exc:
            raise AssertionError(f"{exc}\n{systemd.describe(server)}") from None
        finally:
            systemd.stop_units(server)
            systemd.reset(server)


@pytest.mark.parametrize(("errno", "expected"), [(98, "98"), (0, "0")])
def test_failed_start_sends_errno_and_one_short_status_line(
    systemd: UserManager, errno: int, expected: str
) -> None:
    env = {"SDREADY_TEST_STARTUP_DELAY": "0"}
    if errno:
        env["SDREADY_TEST_FAIL_ERRNO"] = str(errno)  # OSError(98, "test failure")
    else:  # control: a RuntimeError has no errno, whose message is a long multi-line text
        env["SDREADY_TEST_FAIL"] = "boom " + "x" * 400
    with reserved_port() as port:
        server = write_server_unit(
            systemd,
            service_type="notify",
            bind=["--host", "127.0.0.1", "--port", str(port)],
            env=env,
        )
        try:
            systemd.start_unit(server, wait_started=False, timeout=30)
            ended = systemd.wait_ended(server, timeout=30)
            state = systemd.show(server, "StatusText", "StatusErrno")
            assert state["StatusText"].startswith("Startup failed: "), (ended, state)
            assert "\n" not in state["StatusText"]
            assert len(state["StatusText"]) <= texts.STATUS_BUDGET
            assert state["StatusErrno"] == expected
        finally:
            systemd.stop_units(server)
            systemd.reset(server)


@pytest.mark.parametrize(
    "app", ["_asgi_fastapi:app", "_asgi_apps:plain"], ids=["sdready", "control"]
)
def test_stop_during_a_slow_startup_cancels_it(systemd: UserManager, app: str) -> None:
    with reserved_port() as port:
        server = write_server_unit(
            systemd,
            service_type="notify",
            bind=["--host", "127.0.0.1", "--port", str(port)],
            env={"SDREADY_TEST_STARTUP_DELAY": "60"},
            extra="TimeoutStopSec=6",
            app=app,
        )
        try:
            systemd.start_unit(server, wait_started=False, timeout=30)
            systemd.wait_for(server, ActiveState="activating", timeout=10)
            if app == "_asgi_fastapi:app":  # the app's startup has begun (not the import)
                systemd.wait_for(server, StatusText="Starting…", timeout=30)
            systemd.hold(server, 1.5, ActiveState="activating")  # well into the startup
            systemd.run("stop", server, timeout=30)
            state = systemd.show(server, "Result", "ExecMainCode", "ExecMainStatus")
            log = (systemd.work_dir / f"{server}.log").read_text()
            if app == "_asgi_apps:plain":
                # Control: the server ignores SIGTERM until its startup completes, so the
                # stop waits out TimeoutStopSec= and ends with SIGKILL.
                assert (state["Result"], state["ExecMainStatus"]) == ("timeout", "9"), state
                return
            # Ended by the SIGTERM itself within the stop: a clean stop (an inactive unit is
            # unloaded, so its ExecMainStatus is gone; the timed-out start below shows it).
            assert state["Result"] == "success", (state, log)
            assert "SIGTERM during the app's startup: cancelling it" in log
        finally:
            systemd.stop_units(server)
            systemd.reset(server)


def test_a_start_systemd_times_out_ends_at_once_and_fails_its_dependent(
    systemd: UserManager,
) -> None:
    with reserved_port() as port:
        server = write_server_unit(
            systemd,
            service_type="notify",
            bind=["--host", "127.0.0.1", "--port", str(port)],
            env={"SDREADY_TEST_STARTUP_DELAY": "60"},
            extra="TimeoutStartSec=3\nTimeoutStopSec=30",
        )
        client = systemd.unit_name("client-a")
        systemd.write_dependent_unit(client, server, "/bin/true", log=systemd.work_dir / "a.log")
        try:
            # The dependent's start fails with B's: not after B's TimeoutStopSec=30 as well.
            result = systemd.run("start", client, check=False, timeout=25)
            assert result.returncode != 0
            state = systemd.show(server, "Result", "ExecMainStatus", "ActiveState")
            assert state["Result"] == "timeout" and state["ActiveState"] == "failed", state
            assert state["ExecMainStatus"] == "15", state  # SIGTERM, never TimeoutStopSec's KILL
        finally:
            systemd.stop_units(client, server)
            systemd.reset(client, server)


@pytest.mark.parametrize("plugin", [True, False], ids=["sdready", "control-stock-gunicorn"])
def test_gunicorn_stop_before_a_worker_served_ends_its_boot(
    systemd: UserManager, tmp_path: Path, plugin: bool
) -> None:
    # The worker imports the app for 30 s and ignores SIGTERM until it booted, so a stop
    # waits for gunicorn's graceful_timeout (5 s here) unless its boot is ended.
    with reserved_port() as port:
        unit = gunicorn_unit(
            systemd,
            tmp_path,
            port,
            plugin=plugin,
            env="APP_IMPORT_DELAY=30",
            extra="TimeoutStopSec=3",
            service_type="notify",
        )
        try:
            systemd.start_unit(unit, wait_started=False, timeout=30)
            # The worker is importing: with the plugin the unit is still activating; stock
            # gunicorn sent its READY when the arbiter booted.
            during = "activating" if plugin else "active"
            systemd.wait_for(unit, ActiveState=during, timeout=10)
            systemd.hold(unit, 2.0, ActiveState=during)
            systemd.run("stop", unit, timeout=30)
            state = systemd.show(unit, "Result")
            logs = unit_logs(tmp_path)
            if not plugin:  # control: TimeoutStopSec= runs out first, SIGKILL
                assert state["Result"] == "timeout", (state, logs)
                return
            assert state["Result"] == "success", (state, logs)
            assert "SIGTERM before any worker could serve: ending 1 worker at once" in logs
        finally:
            systemd.stop_units(unit)
            systemd.reset(unit)
