"""The shutdown delay of a FastAPI app under hypercorn, stopped by a real systemd (issue 22).

``systemctl stop`` sends SIGTERM to every process of the unit (``KillMode=control-group``):
hypercorn's parent sets the event its worker polls, and the worker itself gets one. The
worker keeps serving while ``/readyz`` answers 503, until a second SIGTERM (``systemctl
kill``) ends the delay and hypercorn's graceful stop runs: a clean stop. Control: without
the option the worker dies of the SIGTERM at once and nothing answers.
"""

from __future__ import annotations

import pytest
from _delay import stop_through_the_delay
from _fastapi_units import unit_environment
from _servers import http_get, reserved_port
from _systemd import UserManager, python_for_units

pytest.importorskip("hypercorn")
pytest.importorskip("fastapi")

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(240)]


@pytest.mark.parametrize("delay", [True, False], ids=["delay", "control"])
def test_systemctl_stop_waits_while_hypercorn_serves(systemd: UserManager, delay: bool) -> None:
    python, _ = python_for_units()
    options = '{"ready_path": "/readyz"%s}' % (', "shutdown_delay": 60' if delay else "")
    # In a quoted Environment= assignment, systemd unescapes \" to ".
    environment = unit_environment({"SDREADY_TEST_OPTIONS": options.replace('"', '\\"')})
    with reserved_port() as port:
        server = systemd.unit_name("hypercorn-delay")
        log = systemd.work_dir / f"{server}.log"
        systemd.write_unit(
            server,
            f"""\
            [Service]
            Type=notify
            NotifyAccess=all
            ExecStart={python} -m hypercorn _asgi_fastapi:app --bind 127.0.0.1:{port}
            WorkingDirectory={systemd.work_dir}
            Environment={environment}
            TimeoutStopSec=30
            StandardOutput=append:{log}
            StandardError=append:{log}
            """,
        )
        address = ("127.0.0.1", port)

        def while_held() -> None:
            assert http_get(address, "/readyz") == (503, "stopping"), log.read_text()
            for _ in range(3):
                assert http_get(address, "/").status == 200

        stop_through_the_delay(
            systemd, server, address, delay=delay, while_held=while_held, log=log.read_text
        )
