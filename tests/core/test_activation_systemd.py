"""sdready.listen_socket under a real systemd: restarts refuse no connection (issue 12).

Flask on waitress serves the socket listen_socket returns, as a ``Restart=always`` unit.
With the fd store (``FileDescriptorStoreMax=``; on 254 also ``FileDescriptorStorePreserve=``
and keeping switched on by ``$FDSTORE`` alone) a client's GETs every 20 ms see no refused
connection across 3 SIGKILLs and 2 ``systemctl restart``s; the same unit without the store
is the control and is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _restarts import restart_under_traffic, restart_unit
from _servers import free_port, http_get
from _systemd import UserManager

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(300)]

KILLS = 3


def _waitress(manager: UserManager, tmp_path: Path, port: int, keep: str, store: bool) -> str:
    return restart_unit(
        manager,
        tmp_path,
        f"{{python}} serve_waitress.py 127.0.0.1:{port} {keep}",
        base="waitress-keep",
        store=store,
    )


def test_kept_socket_refuses_nothing_across_restarts(manager: UserManager, tmp_path: Path) -> None:
    port = free_port()
    # 254 says the store exists ($FDSTORE): listen_socket keeps the socket by default.
    keep = "auto" if manager.systemd.version >= 254 else "yes"
    with manager.scoped():
        unit = _waitress(manager, tmp_path, port, keep, store=True)
        outcome = restart_under_traffic(manager, unit, ("127.0.0.1", port), kills=KILLS)
        log = (tmp_path / "server.log").read_text(errors="replace")
    print(f"systemd {manager.systemd.version}, kept: {outcome}")
    assert outcome.refused == 0, f"{outcome}: {outcome.errors[:5]}\n{log[-3000:]}"
    assert outcome.cut <= KILLS + 2, f"{outcome}: {outcome.errors[:5]}"
    assert "the socket systemd passed" in log  # the later starts took it from the store


def test_control_without_the_store_is_refused(manager: UserManager, tmp_path: Path) -> None:
    port = free_port()
    with manager.scoped():
        unit = _waitress(manager, tmp_path, port, "no", store=False)
        outcome = restart_under_traffic(manager, unit, ("127.0.0.1", port), kills=KILLS)
    print(f"systemd {manager.systemd.version}, control: {outcome}")
    assert outcome.refused > 0, outcome


def test_a_disabled_store_still_serves(manager: UserManager, tmp_path: Path) -> None:
    """keep=True without FileDescriptorStoreMax=: systemd closes what it is sent; the app
    serves as before and says once what the unit needs."""
    port = free_port()
    with manager.scoped():
        unit = _waitress(manager, tmp_path, port, "yes", store=False)
        manager.start_unit(unit, wait_started=True, timeout=60)
        manager.wait_for(unit, ActiveState="active", timeout=30)
        assert http_get(("127.0.0.1", port), timeout=5).status == 200
        log = (tmp_path / "server.log").read_text(errors="replace")
    assert log.count("the unit needs FileDescriptorStoreMax=") == 1, log
    assert "Traceback" not in log


def test_preserve_keeps_the_socket_over_a_stop(manager: UserManager, tmp_path: Path) -> None:
    """FileDescriptorStorePreserve=yes (254+): after systemctl stop the store still holds
    the socket while the unit stays loaded (a target wants it, as an enabled unit's does),
    so a connection made while the unit is stopped waits and is served by the next start.
    systemd 252 (no such setting) empties the store at the stop: refused, the control."""
    import socket

    port = free_port()
    with manager.scoped():
        unit = _waitress(manager, tmp_path, port, "yes", store=True)
        anchor = manager.unit_name("anchor", ".target")
        manager.write_unit(anchor, f"[Unit]\nWants={unit}\n")  # keeps the unit loaded
        manager.start_unit(anchor, wait_started=True, timeout=60)
        manager.wait_for(unit, ActiveState="active", timeout=60)
        manager.run("stop", unit, timeout=30)
        try:  # while no process of the unit runs
            client = socket.create_connection(("127.0.0.1", port), timeout=30)
        except ConnectionRefusedError:
            answer = "refused"
        else:
            with client:
                manager.start_unit(unit, wait_started=True, timeout=60)
                client.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
                answer = client.recv(64).split(b"\r\n")[0].decode()
    expected = "HTTP/1.0 200 OK" if manager.systemd.version >= 254 else "refused"
    assert answer == expected
