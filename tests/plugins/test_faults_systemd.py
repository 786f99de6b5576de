"""Faults an operator meets, under a real (private) systemd user manager: each ends the way
docs/reference.md's "What happens when…" table says, and says why.

- A failing ``health=`` check: the watchdog is not fed and systemd kills the service, as
  before, but STATUS says which check failed and since when, and the log has one WARNING
  per failure streak (control: the same unit with a passing check stays up, and its
  STATUS is the READY one).
- A startup that fails with an ``OSError``: ``ERRNO=`` reaches systemd (``StatusErrno``)
  and STATUS is one short line (control: a ``RuntimeError`` has no errno to send).
"""

from __future__ import annotations

import pytest
from _fastapi_units import write_server_unit
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
            ended = systemd.wait_for(
                server, lambda p: p["ActiveState"] in ("failed", "inactive"), timeout=30
            )
            state = systemd.show(server, "StatusText", "StatusErrno")
            assert state["StatusText"].startswith("Startup failed: "), (ended, state)
            assert "\n" not in state["StatusText"]
            assert len(state["StatusText"]) <= texts.STATUS_BUDGET
            assert state["StatusErrno"] == expected
        finally:
            systemd.stop_units(server)
            systemd.reset(server)
