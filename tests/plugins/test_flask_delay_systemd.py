"""The shutdown delay of a Flask app under waitress, stopped by a real systemd (issue 22).

``systemctl stop`` sends SIGTERM: the unit stays ``deactivating`` past ``TimeoutStopSec=``
(sdready's ``EXTEND_TIMEOUT_USEC``) while waitress keeps serving and ``/readyz`` answers
503; a second SIGTERM (``systemctl kill``) ends the delay, and the process dies of the held
signal: a clean stop. Control: without the option waitress dies at once and refuses.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _delay import stop_through_the_delay
from _flask_support import write_app
from _servers import http_get, reserved_port
from _systemd import UserManager, python_for_units

pytest.importorskip("flask")
pytest.importorskip("waitress")

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(240)]


@pytest.fixture
def app_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sdr-fd-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _unit(systemd: UserManager, app_dir: Path, port: int, delay: bool) -> str:
    python, env = python_for_units()
    app = write_app(app_dir)
    env["APPCFG_SDREADY_READY_PATH"] = "/readyz"  # Flask's from_prefixed_env: app.config
    if delay:
        env["APPCFG_SDREADY_SHUTDOWN_DELAY"] = "60"
    server = systemd.unit_name("flask-delay")
    systemd.write_unit(
        server,
        f"""\
        [Service]
        Type=notify
        ExecStart={python} {app} waitress {port}
        Environment={" ".join(f"{key}={value}" for key, value in env.items())}
        TimeoutStopSec=2
        StandardOutput=append:{app_dir}/server.log
        StandardError=append:{app_dir}/server.log
        """,
    )
    return server


@pytest.mark.parametrize("delay", [True, False], ids=["delay", "control"])
def test_systemctl_stop_waits_while_waitress_serves(
    systemd: UserManager, app_dir: Path, delay: bool
) -> None:
    with reserved_port() as port:
        server = _unit(systemd, app_dir, port, delay)
        address = ("127.0.0.1", port)

        def while_held() -> None:
            systemd.wait_for(server, lambda p: p["StatusText"].startswith("Stopping"), timeout=10)
            assert http_get(address, "/readyz") == (503, "stopping")
            assert http_get(address, "/") == (200, "ok")
            # Past TimeoutStopSec=2: the extended timeout keeps systemd from killing it.
            systemd.hold(server, 3.0, ActiveState="deactivating")
            assert http_get(address, "/") == (200, "ok")

        stop_through_the_delay(systemd, server, address, delay=delay, while_held=while_held)
