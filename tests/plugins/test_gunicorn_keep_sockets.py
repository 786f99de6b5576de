"""gunicorn keeps its listening sockets in systemd's fd store: restarts refuse nothing.

Real systemd (252, and 254 where ``$FDSTORE`` alone switches keeping on), a client GETting
every 20 ms through a HUP reload, 3 SIGKILLs and 2 ``systemctl restart``s. Several
``--bind``s, one of them a unix socket, come back from the store (gunicorn reads
``LISTEN_FDS`` itself). The same unit without the store is the control.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _gunicorn_support import NO_CONTROL_SOCKET
from _restarts import restart_under_traffic, restart_unit
from _servers import free_port, http_get
from _systemd import UserManager

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(300)]

KILLS = 3
PLUGIN = "-c python:sdready.plugins.gunicorn"


def _gunicorn_unit(
    manager: UserManager, tmp_path: Path, port: int, *, worker: str, store: bool, keep: bool
) -> str:
    app = "restart_apps:asgi" if "uvicorn" in worker else "restart_apps:wsgi"
    # 252 cannot say that the unit has a store: the option says to keep; 254 sets $FDSTORE.
    env = "Environment=SDREADY_KEEP_SOCKETS=1" if keep and manager.systemd.version < 254 else ""
    return restart_unit(
        manager,
        tmp_path,
        f"{{bin}}/gunicorn {PLUGIN} --bind 127.0.0.1:{port} --bind unix:{tmp_path}/app.sock "
        f"--workers 2 -k {worker} {NO_CONTROL_SOCKET} --graceful-timeout 5 {app}",
        base="gunicorn-keep",
        store=store,
        extra=f"ExecReload=/bin/kill -HUP $MAINPID\n{env}",
    )


@pytest.mark.parametrize("worker", ["sync", "uvicorn_worker.UvicornWorker"])
def test_kept_sockets_refuse_nothing_across_restarts(
    manager: UserManager, tmp_path: Path, worker: str
) -> None:
    port = free_port()
    with manager.scoped():
        unit = _gunicorn_unit(manager, tmp_path, port, worker=worker, store=True, keep=True)
        outcome = restart_under_traffic(manager, unit, ("127.0.0.1", port), kills=KILLS, reloads=1)
        unix = http_get(str(tmp_path / "app.sock"), timeout=5)  # the second bind came back
        log = (tmp_path / "server.log").read_text(errors="replace")
    print(f"systemd {manager.systemd.version} gunicorn {worker}, kept: {outcome}")
    assert outcome.refused == 0, f"{outcome}: {outcome.errors[:5]}\n{log[-3000:]}"
    assert outcome.cut <= KILLS, f"{outcome}: {outcome.errors[:5]}"
    assert unix.status == 200


def test_control_without_the_store_is_refused(manager: UserManager, tmp_path: Path) -> None:
    port = free_port()
    with manager.scoped():
        unit = _gunicorn_unit(manager, tmp_path, port, worker="sync", store=False, keep=False)
        outcome = restart_under_traffic(manager, unit, ("127.0.0.1", port), kills=KILLS)
    print(f"systemd {manager.systemd.version} gunicorn sync, control: {outcome}")
    assert outcome.refused > 0, outcome


def test_a_store_alone_keeps_nothing_on_252(user_manager: UserManager, tmp_path: Path) -> None:
    """systemd 252 sets no $FDSTORE: without the option the plugin stores nothing."""
    port = free_port()
    with user_manager.scoped():
        unit = _gunicorn_unit(user_manager, tmp_path, port, worker="sync", store=True, keep=False)
        outcome = restart_under_traffic(
            user_manager, unit, ("127.0.0.1", port), kills=1, restarts=0
        )
    assert outcome.refused > 0, outcome


def test_usr2_upgrade_keeps_the_sockets(manager: UserManager, tmp_path: Path) -> None:
    """USR2 (NotifyAccess=all: the new master takes MAINPID), the old master retired with
    TERM, then a SIGKILL: the restart still gets every socket from the store."""
    import os
    import signal

    from _restarts import TrafficClient
    from _systemd import wait_until

    port = free_port()
    with manager.scoped():
        unit = _gunicorn_unit(manager, tmp_path, port, worker="sync", store=True, keep=True)
        manager.write_unit(  # the same unit, NotifyAccess=all for the take-over
            unit,
            (manager.unit_dir / unit).read_text().replace("NotifyAccess=main", "NotifyAccess=all"),
        )
        manager.start_unit(unit, wait_started=True, timeout=60)
        old = int(manager.wait_for(unit, ActiveState="active")["MainPID"])
        client = TrafficClient(("127.0.0.1", port))
        client.start()
        try:
            os.kill(old, signal.SIGUSR2)
            manager.wait_for(unit, lambda p: p["MainPID"] not in ("0", str(old)), timeout=60)
            os.kill(old, signal.SIGTERM)
            wait_until(lambda: not os.path.exists(f"/proc/{old}"), timeout=30)
            answered = client.outcome.answered
            manager.run("kill", "--signal=SIGKILL", unit, timeout=10)
            manager.wait_for(
                unit, lambda p: int(p["NRestarts"]) > 0, ActiveState="active", timeout=60
            )
            client.answer_after(answered)
        finally:
            outcome = client.finish()
        unix = http_get(str(tmp_path / "app.sock"), timeout=5)
    print(f"systemd {manager.systemd.version} gunicorn USR2 then SIGKILL: {outcome}")
    assert outcome.refused == 0, f"{outcome}: {outcome.errors[:5]}"
    assert unix.status == 200


def test_a_kept_unix_socket_keeps_its_file_over_a_restart(
    manager: UserManager, tmp_path: Path
) -> None:
    """gunicorn unlinks the unix socket files it bound when it stops; a kept one must stay
    reachable by its path after ``systemctl restart`` of the first generation."""
    port = free_port()
    with manager.scoped():
        unit = _gunicorn_unit(manager, tmp_path, port, worker="sync", store=True, keep=True)
        outcome = restart_under_traffic(manager, unit, ("127.0.0.1", port), kills=0, restarts=1)
        unix = http_get(str(tmp_path / "app.sock"), timeout=5)
    assert outcome.refused == 0, outcome
    assert unix.status == 200


def test_a_store_too_small_loses_no_bind_address(manager: UserManager, tmp_path: Path) -> None:
    # Two binds kept, a store that holds one: after the restart the second address is bound
    # anew (before: gunicorn served only the socket it was passed, and refused the other for
    # good), and the log says how many came back and what would hold them all.
    port = free_port()
    with manager.scoped():
        unit = _gunicorn_unit(manager, tmp_path, port, worker="sync", store=True, keep=True)
        manager.write_unit(unit, (manager.unit_dir / unit).read_text().replace(
            "FileDescriptorStoreMax=8", "FileDescriptorStoreMax=1"
        ))  # fmt: skip
        manager.start_unit(unit, wait_started=True, timeout=30)
        # The sockets are kept right after READY: a restart before that finds none.
        manager.wait_for(
            unit,
            lambda p: int(p["NFileDescriptorStore"]) >= 1,
            props=("NFileDescriptorStore",),
            timeout=30,
        )
        manager.run("restart", unit, timeout=30)
        manager.wait_for(unit, ActiveState="active", SubState="running", timeout=30)
        tcp = http_get(f"127.0.0.1:{port}", timeout=5)
        unix = http_get(str(tmp_path / "app.sock"), timeout=5)
        log = (tmp_path / "server.log").read_text(errors="replace")
    assert (tcp.status, unix.status) == (200, 200), log[-3000:]
    # The store really was short (control: one of the two came back), and it was said.
    assert "the fd store gave back 1 of the 2 listening sockets kept" in log, log[-3000:]
    assert "FileDescriptorStoreMax=2 would hold them all" in log
