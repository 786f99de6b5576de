"""Each supported server under a ``.socket`` unit: READY stays truthful, restarts refuse nothing.

The ``.socket`` unit owns the listening socket and the service gets it as fd 3
(``LISTEN_FDS``): uvicorn ``--fd 3`` and hypercorn ``--bind fd://3`` with the ASGI
middleware, gunicorn with its plugin (a TCP and a unix socket), Flask on waitress with
``sdready.listen_socket`` (which takes the unit's socket by address), and ``sdready exec
--listen`` in front of uvicorn. The socket accepts before the app serves, so READY must
wait for the app: the ASGI app takes 1 s to start and says when it is done. Then the
client's GETs every 20 ms see no refused connection across 3 SIGKILLs and 2 restarts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _gunicorn_support import NO_CONTROL_SOCKET
from _restarts import EXEC_LISTEN_UVICORN, restart_under_traffic, restart_unit
from _servers import free_port, http_get
from _systemd import UserManager

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(300)]

KILLS = 3
SERVERS = {
    "uvicorn": "{bin}/uvicorn --fd 3 restart_apps:asgi_sd",
    "hypercorn": "{bin}/hypercorn --bind fd://3 restart_apps:asgi_sd",
    "gunicorn": "{bin}/gunicorn -c python:sdready.plugins.gunicorn --workers 2 "
    f"{NO_CONTROL_SOCKET} restart_apps:wsgi",
    "waitress": "{python} serve_waitress.py 127.0.0.1:{port} auto",
    "exec": EXEC_LISTEN_UVICORN,
}


@pytest.mark.parametrize("server", list(SERVERS))
def test_socket_unit_ready_is_true_and_restarts_refuse_nothing(
    manager: UserManager, tmp_path: Path, server: str
) -> None:
    port = free_port()
    sockets = [f"127.0.0.1:{port}"]
    if server == "gunicorn":
        sockets.append(str(tmp_path / "g.sock"))
    with manager.scoped():
        unit = restart_unit(
            manager,
            tmp_path,
            SERVERS[server].replace("{port}", str(port)),
            base=f"socket-{server}",
            store=False,
            extra="Environment=APP_STARTUP_DELAY=1",
            sockets=sockets,
            access="all" if server == "hypercorn" else "main",  # READY from its worker
        )
        manager.start_unit(unit.removesuffix(".service") + ".socket", wait_started=True)
        manager.start_unit(unit, wait_started=True, timeout=60)  # Type=notify: until READY
        log = (tmp_path / "server.log").read_text(errors="replace")
        if "asgi" in SERVERS[server]:
            assert "APP STARTUP COMPLETE" in log, log  # READY came after the app's startup
        if server == "gunicorn":
            assert http_get(sockets[1], timeout=5).status == 200
        outcome = restart_under_traffic(manager, unit, ("127.0.0.1", port), kills=KILLS)
        log = (tmp_path / "server.log").read_text(errors="replace")
    print(f"systemd {manager.systemd.version} .socket {server}: {outcome}")
    assert outcome.refused == 0, f"{outcome}: {outcome.errors[:5]}\n{log[-3000:]}"
    assert outcome.cut <= KILLS, f"{outcome}: {outcome.errors[:5]}"
