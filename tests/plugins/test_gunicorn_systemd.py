"""gunicorn under a real systemd: the A-depends-on-B story, and a reload under traffic.

Unit A runs gunicorn (one sync worker) on a loopback port with an app that sleeps 1.5 s at
import. Unit B (``Requires=``/``After=`` A, ``Type=oneshot``) does one GET with a 1 s
timeout. With this plugin, systemd starts B only after a worker can serve: every GET
succeeds. With gunicorn's built-in notify, READY comes from the arbiter before any worker
imported the app: every GET times out (this proves the test can fail).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _gunicorn_support import http_get, reserved_port, write_apps
from _systemd import UserManager, python_for_units, wait_until

pytest.importorskip("gunicorn")

pytestmark = [pytest.mark.systemd, pytest.mark.slow, pytest.mark.timeout(300)]

ROUNDS = 20
CONTROL_ROUNDS = 3

CLIENT = """\
import http.client, sys

connection = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=1.0)
try:
    connection.request("GET", "/")
    response = connection.getresponse()
    body = response.read()
except OSError as exc:
    sys.exit(f"GET failed: {exc!r}")
print(response.status, body)
sys.exit(0 if response.status == 200 else 1)
"""


@pytest.fixture
def systemd(user_manager: UserManager) -> Iterator[UserManager]:
    with user_manager.scoped() as manager:
        yield manager


def _gunicorn() -> str:
    return str(Path(sys.executable).with_name("gunicorn"))


def _server_unit(
    manager: UserManager,
    directory: Path,
    port: int,
    *,
    plugin: bool,
    workers: int = 1,
    env: str = "",
) -> str:
    _python, python_env = python_for_units()
    apps = write_apps(directory / "apps")
    paths = [str(apps), *filter(None, [python_env.get("PYTHONPATH")])]
    python_env = {**python_env, "PYTHONPATH": ":".join(paths)}
    environment = " ".join(f"{k}={v}" for k, v in python_env.items())
    config = "-c python:sdready.plugins.gunicorn " if plugin else ""
    name = manager.unit_name("gunicorn-a")
    manager.write_unit(
        name,
        f"""\
        [Service]
        Type=notify
        ExecStart={_gunicorn()} {config}--bind 127.0.0.1:{port} --workers {workers} \\
            --no-control-socket --graceful-timeout 5 wsgi_app:app
        ExecReload=/bin/kill -HUP $MAINPID
        WorkingDirectory={apps}
        Environment={environment} {env}
        TimeoutStartSec=30
        StandardOutput=append:{directory}/server.log
        StandardError=append:{directory}/server.log
        """,
    )
    return name


def _logs(directory: Path) -> str:
    return "\n".join(
        f"--- {name}:\n{(directory / name).read_text(errors='replace')[-3000:]}"
        for name in ("client.log", "server.log")
        if (directory / name).exists()
    )


def _pair(manager: UserManager, directory: Path, port: int, *, plugin: bool) -> list[str]:
    python, python_env = python_for_units()
    (directory / "client.py").write_text(CLIENT)
    server = _server_unit(manager, directory, port, plugin=plugin, env="APP_IMPORT_DELAY=1.5")
    environment = " ".join(f"{k}={v}" for k, v in python_env.items())
    client = manager.unit_name("gunicorn-b")
    manager.write_unit(
        client,
        f"""\
        [Unit]
        Requires={server}
        After={server}

        [Service]
        Type=oneshot
        ExecStart={python} {directory}/client.py {port}
        Environment={environment}
        StandardOutput=append:{directory}/client.log
        StandardError=append:{directory}/client.log
        """,
    )
    results = []
    for _ in range(ROUNDS if plugin else CONTROL_ROUNDS):
        manager.run("start", client, check=False, timeout=60)
        results.append(manager.show(client, "Result")["Result"])
        if plugin:
            status = manager.show(server, "StatusText")["StatusText"]
            assert status.startswith(f"Ready: 1 worker, listening on 127.0.0.1:{port} (pid ")
        manager.run("stop", server, timeout=30)
        manager.reset(client, server)
    return results


def test_dependent_unit_gets_an_answer_with_the_plugin(
    systemd: UserManager, tmp_path: Path
) -> None:
    with reserved_port() as port:
        results = _pair(systemd, tmp_path, port, plugin=True)
    assert results == ["success"] * ROUNDS, f"{results}\n{_logs(tmp_path)}"


def test_dependent_unit_fails_with_gunicorns_own_notify(
    systemd: UserManager, tmp_path: Path
) -> None:
    with reserved_port() as port:
        results = _pair(systemd, tmp_path, port, plugin=False)
    assert results == ["exit-code"] * CONTROL_ROUNDS, f"{results}\n{_logs(tmp_path)}"


class _Client(threading.Thread):
    """GETs on fresh connections, back to back, until stopped; records every outcome."""

    def __init__(self, port: int) -> None:
        super().__init__(name="reload-client", daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.answers: list[tuple[float, str]] = []
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status, body = http_get(("127.0.0.1", self.port), timeout=5.0)
            except OSError as exc:
                self.failures.append(repr(exc))
            else:
                if status == 200:
                    self.answers.append((time.monotonic(), body.split()[0]))
                else:
                    self.failures.append(f"HTTP {status}")
            time.sleep(0.01)


def test_reload_under_traffic(systemd: UserManager, tmp_path: Path) -> None:
    version = tmp_path / "version"
    version.write_text("v1")
    with reserved_port() as port:
        env = f"APP_IMPORT_DELAY=1 APP_VERSION_FILE={version}"
        unit = _server_unit(systemd, tmp_path, port, plugin=True, workers=2, env=env)
        systemd.start_unit(unit, wait_started=True, timeout=30)
        before = systemd.wait_for(unit, ActiveState="active", SubState="running")
        assert "generation" not in before["StatusText"]
        client = _Client(port)
        client.start()
        try:
            wait_until(lambda: len(client.answers) >= 5, timeout=10, message="no answers")
            version.write_text("v2")
            systemd.run("reload", unit, timeout=30)
            # systemd 252: reload returns when `kill -HUP` has exited, before the reload is
            # done; the unit's StatusText shows when the new generation is READY.
            after = systemd.wait_for(
                unit,
                lambda p: "generation 2" in p["StatusText"] and p["ActiveState"] == "active",
                timeout=20,
                interval=0.01,
            )
            seen = time.monotonic()
            # READY came once a new-generation worker could serve: it answers at once.
            assert http_get(("127.0.0.1", port), timeout=1.0)[1].startswith("v2 ")
            expected = (
                f"Ready: 2 workers, listening on 127.0.0.1:{port} "
                f"(pid {before['MainPID']}, generation 2)"
            )
            final = systemd.wait_for(unit, StatusText=expected, timeout=10)
            time.sleep(0.5)
        finally:
            client.stop.set()
            client.join(10)
    details = f"{after}\n{_logs(tmp_path)}"
    assert not client.failures, f"{client.failures}\n{details}"
    versions = [v for _, v in client.answers]
    assert versions[0] == "v1" and versions[-1] == "v2", versions
    first_v2 = versions.index("v2")
    assert set(versions[first_v2:]) == {"v2"}, versions  # no old generation after the switch
    assert client.answers[first_v2][0] <= seen + 0.5
    assert final["NRestarts"] == "0" and final["MainPID"] == before["MainPID"], details
    with contextlib.suppress(Exception):
        systemd.run("stop", unit, timeout=30)
