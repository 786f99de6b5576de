"""sdready exec --listen under a real systemd: uvicorn --fd 3 restarts refusing nothing.

sdready owns the socket: bound on the first start, kept in the fd store, passed back by
systemd on the next (252 with FileDescriptorStoreMax=, 254 with Preserve= too) and handed
to uvicorn as fd 3. The control runs the same app with ``uvicorn --port`` under plain
``sdready exec``: every restart is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _restarts import EXEC_LISTEN_UVICORN, restart_under_traffic, restart_unit
from _servers import free_port
from _systemd import UserManager

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(300)]

KILLS = 3


def test_exec_listen_refuses_nothing_across_restarts(manager: UserManager, tmp_path: Path) -> None:
    port = free_port()
    with manager.scoped():
        unit = restart_unit(
            manager,
            tmp_path,
            EXEC_LISTEN_UVICORN.replace("{port}", str(port)),
            base="exec-listen",
            store=True,
        )
        outcome = restart_under_traffic(manager, unit, ("127.0.0.1", port), kills=KILLS)
        log = (tmp_path / "server.log").read_text(errors="replace")
    print(f"systemd {manager.systemd.version} exec --listen uvicorn, kept: {outcome}")
    assert outcome.refused == 0, f"{outcome}: {outcome.errors[:5]}\n{log[-3000:]}"
    assert outcome.cut <= KILLS, f"{outcome}: {outcome.errors[:5]}"
    assert "the socket systemd passed" in log


def test_control_exec_without_listen_is_refused(manager: UserManager, tmp_path: Path) -> None:
    port = free_port()
    with manager.scoped():
        unit = restart_unit(
            manager,
            tmp_path,
            f"{{python}} -m sdready exec -- {{bin}}/uvicorn --port {port} restart_apps:asgi",
            base="exec-control",
            store=True,
        )
        outcome = restart_under_traffic(manager, unit, ("127.0.0.1", port), kills=KILLS)
    print(f"systemd {manager.systemd.version} exec uvicorn, control: {outcome}")
    assert outcome.refused > 0, outcome
