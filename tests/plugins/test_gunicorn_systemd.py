"""gunicorn under a real systemd: the A-depends-on-B story, and a reload under traffic.

Unit A runs gunicorn (one sync worker) on a loopback port with an app that sleeps 1.5 s at
import. Unit B (``Requires=``/``After=`` A, ``Type=oneshot``) does one GET with a 1 s
timeout. With this plugin, systemd starts B only after a worker can serve: every GET
succeeds. With gunicorn's built-in notify, READY comes from the arbiter before any worker
imported the app: every GET times out (this proves the test can fail). Four pairs run at
a time, each on its own reserved port.

Also: ``systemctl reload`` (``ExecReload=/bin/kill -HUP $MAINPID``) under traffic, and the
README's USR2 recipe (``NotifyAccess=all``) against its failing variant.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from _gunicorn_support import booted_times, http_get, reserved_port
from _gunicorn_units import TrafficClient, gunicorn_unit, unit_logs
from _systemd import UserManager, python_for_units, wait_until

pytest.importorskip("gunicorn")

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(300)]

ROUNDS = 20
CONTROL_ROUNDS = 3
PAIRS = 4  # started together: 20 runs in 5 rounds

CLIENT = """\
import http.client, sys, time

with open(sys.argv[2], "w") as file:  # when the GET went out (CLOCK_MONOTONIC)
    file.write(repr(time.monotonic()))
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


def _pairs(
    manager: UserManager, base: Path, ports: list[int], *, plugin: bool
) -> list[tuple[str, str, int, Path]]:
    """One server unit and one client unit per port: ``(server, client, port, directory)``."""
    python, python_env = python_for_units()
    environment = " ".join(f"{k}={v}" for k, v in python_env.items())
    pairs = []
    for index, port in enumerate(ports):
        directory = base / f"pair-{index}"
        (directory / "marks").mkdir(parents=True)
        (directory / "client.py").write_text(CLIENT)
        env = f"APP_IMPORT_DELAY=1.5 APP_MARK_DIR={directory}/marks"
        server = gunicorn_unit(manager, directory, port, plugin=plugin, env=env, reload=False)
        client = manager.unit_name("gunicorn-b")
        manager.write_dependent_unit(
            client,
            server,
            f"{python} {directory}/client.py {port} {directory}/sent",
            log=directory / "client.log",
            environment=environment,
            reload=False,
        )
        pairs.append((server, client, port, directory))
    manager.daemon_reload()
    return pairs


def _run_pairs(
    manager: UserManager, base: Path, runs: int, *, plugin: bool, together: int = PAIRS
) -> list[tuple[str, bool]]:
    """*runs* starts, *together* at a time, each client pulling its server in.

    Returns per run the client's Result and whether its GET went out after the app
    could serve (the worker's mark file is older than the client's send time).
    """
    results: list[tuple[str, bool]] = []
    with ExitStack() as stack:
        ports = [stack.enter_context(reserved_port()) for _ in range(min(together, runs))]
        pairs = _pairs(manager, base, ports, plugin=plugin)
        servers = [server for server, _, _, _ in pairs]
        clients = [client for _, client, _, _ in pairs]
        for _ in range(runs // len(pairs)):
            manager.run("start", *clients, check=False, timeout=90)
            for server, client, port, directory in pairs:
                sent = float((directory / "sent").read_text())
                # No mark yet: the app still cannot serve, long after the GET went out.
                booted = booted_times(directory / "marks").values()
                after = bool(booted) and min(booted) <= sent
                results.append((manager.show(client, "Result")["Result"], after))
                if plugin:
                    status = manager.show(server, "StatusText")["StatusText"]
                    expected = f"Ready: 1 worker, listening on 127.0.0.1:{port} (pid "
                    assert status.startswith(expected), status
            manager.run("stop", *servers, timeout=60)
            manager.reset(*clients, *servers)
            for _, _, _, directory in pairs:
                for mark in (directory / "marks").iterdir():
                    mark.unlink()
    return results


def _all_logs(base: Path) -> str:
    return "\n".join(unit_logs(directory) for directory in sorted(base.glob("pair-*")))


@pytest.mark.slow
def test_dependent_unit_gets_an_answer_with_the_plugin(
    systemd: UserManager, tmp_path: Path
) -> None:
    results = _run_pairs(systemd, tmp_path, ROUNDS, plugin=True)
    assert results == [("success", True)] * ROUNDS, f"{results}\n{_all_logs(tmp_path)}"


@pytest.mark.slow
def test_dependent_unit_fails_with_gunicorns_own_notify(
    systemd: UserManager, tmp_path: Path
) -> None:
    """The control: systemd starts the client while the app is still importing.

    That the GET went out before the app could serve holds in every run; that it then
    times out depends on timing (the client's own start-up eats into the 0.5 s margin
    between the app's 1.5 s and the client's 1 s), so one lucky run of three is allowed
    on a loaded machine. Runs go one at a time to keep the load down.
    """
    results = _run_pairs(systemd, tmp_path, CONTROL_ROUNDS, plugin=False, together=1)
    details = f"{results}\n{_all_logs(tmp_path)}"
    assert not any(after for _, after in results), details  # READY came too early, always
    assert [result for result, _ in results].count("exit-code") >= CONTROL_ROUNDS - 1, details


def test_reload_under_traffic(systemd: UserManager, tmp_path: Path) -> None:
    version = tmp_path / "version"
    version.write_text("v1")
    with reserved_port() as port:
        env = f"APP_IMPORT_DELAY=1 APP_VERSION_FILE={version}"
        unit = gunicorn_unit(systemd, tmp_path, port, plugin=True, workers=2, env=env)
        systemd.start_unit(unit, wait_started=True, timeout=30)
        before = systemd.wait_for(unit, ActiveState="active", SubState="running")
        assert "generation" not in before["StatusText"]
        client = TrafficClient(port)
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
    details = f"{after}\n{unit_logs(tmp_path)}"
    assert not client.failures, f"{client.failures}\n{details}"
    versions = [answer.version for answer in client.answers]
    assert versions[0] == "v1" and versions[-1] == "v2", versions
    first_v2 = versions.index("v2")
    assert set(versions[first_v2:]) == {"v2"}, versions  # no old generation after the switch
    assert client.answers[first_v2].answered <= seen + 0.5
    assert final["NRestarts"] == "0" and final["MainPID"] == before["MainPID"], details
    with contextlib.suppress(Exception):
        systemd.run("stop", unit, timeout=30)


@pytest.mark.parametrize(("access", "survives"), [("all", True), ("main", False)])
def test_usr2_upgrade_hands_the_unit_to_the_new_master(
    systemd: UserManager, tmp_path: Path, access: str, survives: bool
) -> None:
    """README's USR2 recipe: with NotifyAccess=all the new master claims MAINPID (and the
    watchdog), and the old one can be retired with TERM; without it, retiring the old
    master ends the unit."""
    with reserved_port() as port:
        unit = gunicorn_unit(
            systemd, tmp_path, port, plugin=True, access=access, extra="WatchdogSec=2"
        )
        systemd.start_unit(unit, wait_started=True, timeout=30)
        old = int(systemd.wait_for(unit, ActiveState="active")["MainPID"])
        os.kill(old, signal.SIGUSR2)
        if survives:
            props = systemd.wait_for(unit, lambda p: p["MainPID"] not in ("0", str(old)))
            new = int(props["MainPID"])
        else:
            time.sleep(2.0)  # the new master's MAINPID/READY are refused: nothing changes
            assert systemd.show(unit)["MainPID"] == str(old)
        os.kill(old, signal.SIGTERM)
        wait_until(lambda: not os.path.exists(f"/proc/{old}"), timeout=15, message="old master")
        if not survives:
            systemd.wait_for(unit, lambda p: p["ActiveState"] != "active", timeout=15)
            return
        # Over WatchdogSec: the new master feeds the watchdog the old one was fed for.
        systemd.hold(unit, 3.0, ActiveState="active", SubState="running", MainPID=new)
        final = systemd.wait_for(unit, NRestarts="0")
        assert final["StatusText"].startswith("Ready: 1 worker, listening on ")
        assert f"(pid {new})" in final["StatusText"]
        assert http_get(("127.0.0.1", port), timeout=1.0)[0] == 200
        systemd.run("stop", unit, timeout=30)
