"""sdready exec --listen: sdready owns the socket, keeps it, hands it over as fd 3.

Outside a real systemd the manager is a NotifyRecorder (it receives the FDSTORE'd fd);
the restart behaviour under a real systemd is in test_cli_listen_systemd.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _gunicorn_support import NO_CONTROL_SOCKET
from _restarts import write_apps
from _servers import free_port, http_get
from sdready._listen._activation import fdname_for
from sdready.testing import NotifyRecorder

pytestmark = pytest.mark.timeout(120)

BIN = Path(sys.executable).parent


@pytest.fixture
def apps(tmp_path: Path) -> Path:
    return write_apps(tmp_path)


@pytest.fixture
def run_exec(apps: Path, notify_socket: NotifyRecorder, tmp_path: Path) -> Iterator[object]:
    """Start ``sdready exec ARGS``; its output goes to tmp_path/exec.log as well."""
    started: list[subprocess.Popen[str]] = []

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        with open(tmp_path / "exec.log", "w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "sdready", "exec", *args],
                cwd=apps,
                env={**notify_socket.env, "PYTHONPATH": str(apps), **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        started.append(process)
        return process

    yield run
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_uvicorn_gets_fd_3_and_ready_waits_for_the_app(
    run_exec: object, notify_socket: NotifyRecorder, tmp_path: Path
) -> None:
    port = free_port()
    run_exec(  # type: ignore[operator]
        "--listen", f"127.0.0.1:{port}", "--", str(BIN / "uvicorn"), "--fd", "3",
        "restart_apps:asgi", env={"APP_STARTUP_DELAY": "1"},
    )  # fmt: skip
    stored = notify_socket.wait_for("FDSTORE", timeout=30)
    assert stored["FDNAME"] == f"127.0.0.1_{port}"
    assert len(stored.fds) == 1
    ready = notify_socket.wait_for("READY", timeout=30)
    # The socket accepted from the start (fd 3 listened before uvicorn even ran); READY
    # came once the app answered a GET: after its 1 s startup.
    log = (tmp_path / "exec.log").read_text()
    assert "Application startup complete" in log, log
    assert "listening on 127.0.0.1:" in ready["STATUS"]
    assert http_get(("127.0.0.1", port), timeout=5).status == 200
    assert "bound a new listening socket" in log


def test_hypercorn_takes_fd_uri(run_exec: object, notify_socket: NotifyRecorder) -> None:
    port = free_port()
    run_exec(  # type: ignore[operator]
        "--listen", f"127.0.0.1:{port}", "--", str(BIN / "hypercorn"), "--bind", "fd://3",
        "restart_apps:asgi",
    )  # fmt: skip
    notify_socket.wait_for("READY", timeout=30)
    assert http_get(("127.0.0.1", port), timeout=5).status == 200


def test_gunicorn_reads_listen_fds(
    run_exec: object, notify_socket: NotifyRecorder, tmp_path: Path
) -> None:
    port = free_port()
    unix = str(tmp_path / "g.sock")
    run_exec(  # type: ignore[operator]
        "--listen", f"127.0.0.1:{port}", "--listen", unix, "--", str(BIN / "gunicorn"),
        *NO_CONTROL_SOCKET.split(), "restart_apps:wsgi",
    )  # fmt: skip
    notify_socket.wait_for("READY", timeout=30)
    assert http_get(("127.0.0.1", port), timeout=5).status == 200
    assert http_get(unix, timeout=5).status == 200
    names = notify_socket.values("FDNAME")
    assert names == [f"127.0.0.1_{port}", fdname_for(unix)]  # "_" in the path: %5F


def test_a_bad_address_is_an_internal_error(run_exec: object, tmp_path: Path) -> None:
    process = run_exec("--listen", "localhost:80", "--", "true")  # type: ignore[operator]
    process.wait(30)
    output = (tmp_path / "exec.log").read_text()
    assert process.returncode == 125, output
    assert "cannot listen" in output


def test_without_notify_socket_nothing_is_kept(apps: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    show = (
        "import os; e = os.environ; "
        "print(e['LISTEN_FDS'], e['LISTEN_FDNAMES'], os.getpid() == int(e['LISTEN_PID']))"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "sdready", "exec", "--listen", f"127.0.0.1:{port}", "--",
         sys.executable, "-c", show],
        cwd=apps, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    output = process.communicate(timeout=60)[0]
    assert f"1 127.0.0.1_{port} True" in output, output


@pytest.mark.parametrize("plugin", [True, False])
def test_the_commands_own_ready_is_relayed(
    run_exec: object, notify_socket: NotifyRecorder, tmp_path: Path, plugin: bool
) -> None:
    """The probe can never succeed (GET /error answers 500): READY comes only from the
    command's sdready plugin (the ASGI middleware); the plain app is the control."""
    port = free_port()
    app = "restart_apps:asgi_sd" if plugin else "restart_apps:asgi"
    run_exec(  # type: ignore[operator]
        "--listen", f"127.0.0.1:{port}", "--probe", "http:/error", "--on-timeout", "fail",
        "--ready-timeout", "30" if plugin else "2",
        "--", str(BIN / "uvicorn"), "--fd", "3", app,
    )  # fmt: skip
    if plugin:
        ready = notify_socket.wait_for("READY", timeout=30)
        assert f"listening on 127.0.0.1:{port}" in ready["STATUS"]
        assert "sent READY=1 itself" in (tmp_path / "exec.log").read_text()
    else:
        notify_socket.wait_for(lambda m: m.get("STATUS", "").startswith("Not ready"), timeout=30)
        assert not notify_socket.values("READY")


_WITH_FD3 = """
import os, sys
source, name = int(sys.argv[1]), sys.argv[2]
os.dup2(source, 3)
os.environ.update(LISTEN_FDS="1", LISTEN_FDNAMES=name, LISTEN_PID=str(os.getpid()))
os.execv(sys.executable, [sys.executable, "-m", "sdready", *sys.argv[3:]])
"""


@pytest.mark.parametrize("socket_unit", [False, True])
def test_a_socket_no_listen_names_leaves_the_store(
    apps: Path, notify_socket: NotifyRecorder, tmp_path: Path, socket_unit: bool
) -> None:
    """systemd passes a socket stored for an address the unit no longer listens on: it
    leaves the store. A .socket unit's socket (another name) is left alone."""
    import socket

    with socket.socket() as old:
        old.bind(("127.0.0.1", 0))
        old.listen()
        name = "app.socket" if socket_unit else f"127.0.0.1_{old.getsockname()[1]}"
        new = free_port()
        show = "import os; print('child', os.environ['LISTEN_FDNAMES'])"
        result = subprocess.run(
            [sys.executable, "-c", _WITH_FD3, str(old.fileno()), name, "exec", "--listen",
             f"127.0.0.1:{new}", "--", sys.executable, "-c", show],
            pass_fds=(old.fileno(),), env=notify_socket.env, cwd=apps,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    output = result.stdout + result.stderr
    sdready_marker = "no --listen names any more"
    removed = notify_socket.values("FDSTOREREMOVE")
    if socket_unit:  # not sdready's: passed on to the command after the --listen socket
        assert f"child 127.0.0.1_{new}:{name}" in output, output
        assert not removed and sdready_marker not in output
    else:
        assert f"child 127.0.0.1_{new}\n" in output, output  # only the --listen socket
        assert removed and sdready_marker in output, output
        remove = next(m for m in notify_socket.messages if "FDSTOREREMOVE" in m)
        assert remove["FDNAME"] == name
