"""The ``sdready`` command under a real systemd (the session's private user manager).

``notify`` from a shell script that is a unit's main process; ``exec`` as a unit's main
process with the default ``NotifyAccess=main``; ``wait-listen`` in ``ExecStartPost=``.
What the manager believes is read through ``systemctl --user show``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import time
from pathlib import Path

import pytest
from _cli_support import NODE, sdready_console_script
from _servers import http_get
from _systemd import UnitTimeout, UserManager, python_for_units
from sdready import texts
from sdready._listen._proctree import TreeListeners

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(180)]

PY, PY_ENV = python_for_units()
HTTP_SERVER = (PY, "-m", "http.server", "--bind", "127.0.0.1", "0")
NODE_SERVER = (
    "node",
    "-e",
    "require('http').createServer((q, r) => r.end('ok')).listen(0, '127.0.0.1')",
)
RUNS = 20


def sdready_command() -> list[str]:
    """How a unit runs the command: the installed console script, else ``python -m``."""
    script = sdready_console_script()
    return [script] if script else [PY, "-m", "sdready"]


def status_address(status_text: str) -> tuple[str, int]:
    address = status_text.split("listening on ", 1)[1].split(" ", 1)[0].rstrip(",")
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


# -- notify from a shell script ----------------------------------------------------------------


def start_shell_units(systemd: UserManager, tmp_path: Path, notify_line: str) -> list[str]:
    script = tmp_path / f"main-{time.monotonic_ns()}.sh"
    # The shell stays the main process; the notifier is its short-lived child.
    script.write_text(f"#!/bin/sh\n{notify_line}\nexec sleep 60\n")
    script.chmod(0o755)
    return [
        systemd.systemd_run(
            "/bin/sh",
            str(script),
            unit="shell",
            properties={"NotifyAccess": "all", "TimeoutStartSec": "10"},
            env=PY_ENV,
        )
        for _ in range(RUNS)
    ]


def count_active(systemd: UserManager, units: list[str]) -> tuple[int, list[str]]:
    accepted, problems = 0, []
    for unit in units:
        try:
            state = systemd.wait_for(
                unit, lambda s: s["ActiveState"] in ("active", "failed"), timeout=30
            )
        except UnitTimeout as exc:
            problems.append(f"{unit}: {exc}")
            continue
        if state["ActiveState"] == "active":
            accepted += 1
        else:
            problems.append(f"{unit}: {state}")
    return accepted, problems


def test_sdready_notify_from_a_shell_script_is_accepted_20_of_20(
    systemd: UserManager, tmp_path: Path
) -> None:
    line = shlex.join([*sdready_command(), "notify", "--ready", "--status", "shell is up"])
    units = start_shell_units(systemd, tmp_path, line)
    accepted, problems = count_active(systemd, units)
    assert accepted == RUNS, "\n".join(problems[:3])
    assert systemd.show(units[0], "StatusText")["StatusText"] == "shell is up"


def test_systemd_notify_from_a_shell_script_is_recorded(
    systemd: UserManager, tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    # The comparison the issue asks for: recorded, not asserted (it depends on the systemd
    # version, on whether the sender is root, and on timing).
    if shutil.which("systemd-notify") is None:
        pytest.skip("systemd-notify is not installed")
    units = start_shell_units(systemd, tmp_path, "systemd-notify --ready --status='shell is up'")
    accepted, problems = count_active(systemd, units)
    version = systemd.command("systemctl", "--version").stdout.split("\n", 1)[0]
    summary = f"systemd-notify --ready accepted {accepted}/{RUNS} ({version}, uid {os.getuid()})"
    record_property("systemd_notify_accepted", f"{accepted}/{RUNS}")
    print(summary)
    for problem in problems[:3]:
        print("  ", problem.splitlines()[0])
    assert unexplained(systemd, units) == []


def unexplained(systemd: UserManager, units: list[str]) -> list[dict[str, str]]:
    """What holds whatever systemd-notify's race does: the manager decided every start (none
    left pending past TimeoutStartSec=), a refused one failed by that timeout (its READY
    lost, nothing else wrong), and an accepted READY carried its STATUS with it."""
    states = [systemd.show(unit, "ActiveState", "Result", "StatusText") for unit in units]

    def explained(state: dict[str, str]) -> bool:
        if state["ActiveState"] == "active":
            return state["StatusText"] == "shell is up"
        return state["ActiveState"] == "failed" and state["Result"] == "timeout"

    return [state for state in states if not explained(state)]


def test_control_a_start_failing_otherwise_is_unexplained(
    systemd: UserManager, tmp_path: Path
) -> None:
    units = start_shell_units(systemd, tmp_path, "exit 3")
    accepted, _ = count_active(systemd, units)
    assert accepted == 0
    assert len(unexplained(systemd, units)) == RUNS


# -- exec as the main process ------------------------------------------------------------------


SERVERS = [
    pytest.param(HTTP_SERVER, id="http.server"),
    pytest.param(
        NODE_SERVER, id="node", marks=pytest.mark.skipif(NODE is None, reason="node not installed")
    ),
]


@pytest.mark.parametrize("server", SERVERS)
def test_exec_unit_is_active_only_once_the_port_accepts(
    systemd: UserManager, server: tuple[str, ...]
) -> None:
    unit = systemd.systemd_run(
        *sdready_command(),
        "exec",
        "--",
        *server,
        unit="exec",
        # The README's unit: KillMode=mixed lets sdready forward SIGTERM itself.
        properties={"KillMode": "mixed", "TimeoutStartSec": "30"},
        env={**PY_ENV, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    state = systemd.wait_for(
        unit, lambda s: s["ActiveState"] in ("active", "failed"), props=("ActiveState",), timeout=30
    )
    assert state["ActiveState"] == "active", systemd.describe(unit)
    status = systemd.show(unit, "StatusText")["StatusText"]  # read right after becoming active
    assert http_get(status_address(status), timeout=5.0).status == 200
    assert status.startswith("Ready: listening on 127.0.0.1:")
    systemd.stop_units(unit)
    after = systemd.show(unit, "ActiveState", "Result")
    # Killed by the forwarded SIGTERM (node, http.server), sdready dies of SIGTERM too: a
    # clean stop for systemd, not "failed" with status 143.
    assert after == {"ActiveState": "inactive", "Result": "success"}, systemd.describe(unit)


def test_exec_granian_unit(systemd: UserManager, tmp_path: Path) -> None:
    pytest.importorskip("granian")
    (tmp_path / "cli_app.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'ok'})\n"
    )
    granian = str(Path(PY).parent / "granian")
    unit = systemd.systemd_run(
        *sdready_command(),
        "exec",
        "--",
        granian,
        "--interface",
        "asgi",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--working-dir",
        str(tmp_path),
        "cli_app:app",
        unit="granian",
        properties={"KillMode": "mixed"},
        env=PY_ENV,
    )
    systemd.wait_for(unit, ActiveState="active", timeout=30)
    status = systemd.show(unit, "StatusText")["StatusText"]
    assert http_get(status_address(status), timeout=5.0).status == 200
    systemd.stop_units(unit)
    assert systemd.show(unit, "Result")["Result"] == "success"


def test_exec_command_that_dies_fails_the_unit(systemd: UserManager) -> None:
    unit = systemd.systemd_run(
        *sdready_command(), "exec", "--", "/bin/sh", "-c", "exit 3", unit="dies", env=PY_ENV
    )
    state = systemd.wait_for(
        unit,
        ActiveState="failed",
        props=("ActiveState", "Result", "ExecMainStatus", "StatusText"),
        timeout=30,
    )
    assert state["Result"] == "exit-code"
    assert state["ExecMainStatus"] == "3"
    assert state["StatusText"].startswith("Startup failed: /bin/sh exited with status 3")


@pytest.mark.slow
def test_exec_on_timeout_fail_leaves_it_to_timeout_start_sec(systemd: UserManager) -> None:
    unit = systemd.systemd_run(
        *sdready_command(),
        "exec",
        "--ready-timeout",
        "0.5",
        "--on-timeout",
        "fail",
        "--",
        PY,
        "-c",
        "import time; time.sleep(60)",
        unit="never",
        properties={"TimeoutStartSec": "3", "KillMode": "mixed"},
        env=PY_ENV,
    )
    systemd.wait_for(unit, StatusText=texts.TIMEOUT_FAIL.format(timeout=0.5), timeout=20)
    assert systemd.show(unit, "ActiveState")["ActiveState"] == "activating"
    state = systemd.wait_for(unit, ActiveState="failed", timeout=20)
    assert state["Result"] == "timeout"


@pytest.mark.slow
def test_exec_watchdog_keeps_the_unit_alive(systemd: UserManager) -> None:
    unit = systemd.systemd_run(
        *sdready_command(),
        "exec",
        "--watchdog",
        "--",
        *HTTP_SERVER,
        unit="watchdog",
        properties={"WatchdogSec": "1", "KillMode": "mixed"},
        env=PY_ENV,
    )
    systemd.wait_for(unit, ActiveState="active", timeout=30)
    systemd.hold(unit, 2.5, ActiveState="active", NRestarts="0")


def test_wait_listen_in_exec_start_post(systemd: UserManager, tmp_path: Path) -> None:
    # Type=exec: the unit stays "activating" until ExecStartPost= returns, so dependents
    # start only once the server (which binds 0.5 s after it started) accepts.
    server = tmp_path / "slow_server.py"
    server.write_text(
        "import http.server, time\n"
        "time.sleep(0.5)\n"
        "http.server.HTTPServer(('127.0.0.1', 0), http.server.SimpleHTTPRequestHandler)"
        ".serve_forever()\n"
    )
    name = systemd.unit_name("post")
    wait = shlex.join([*sdready_command(), "wait-listen", "--timeout", "20", "--pid"])
    systemd.write_unit(
        name,
        f"""\
        [Service]
        Type=exec
        ExecStart={shlex.join([PY, str(server)])}
        ExecStartPost={wait} $MAINPID
        """,
    )
    systemd.start_unit(name)
    state = systemd.wait_for(
        name, lambda s: s["ActiveState"] in ("active", "failed"), props=("ActiveState",), timeout=30
    )
    assert state["ActiveState"] == "active", systemd.describe(name)
    main_pid = int(systemd.show(name, "MainPID")["MainPID"])
    with TreeListeners(main_pid, "proc") as watch:
        listeners = watch.poll()
    assert len(listeners) == 1 and listeners[0].port is not None
    assert http_get(("127.0.0.1", listeners[0].port), timeout=5.0).status == 200
