"""The shutdown delay stopped by a real systemd (issue 22), shared by the hypercorn and
waitress tests: ``systemctl stop``, the unit held ``deactivating`` while the server serves
and ``/readyz`` answers 503, then a second SIGTERM (``systemctl kill``) ends the delay and
the stop is clean. Without the delay (the control) the server is gone at once."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from _servers import Address, http_get
from _systemd import UserManager


def stop_through_the_delay(
    systemd: UserManager,
    server: str,
    address: Address,
    *,
    delay: bool,
    while_held: Callable[[], None],
    log: Callable[[], str] = str,
) -> None:
    """Start *server*, stop it, check the delay (*while_held* asserts what holds meanwhile)
    or, without *delay*, that nothing answers any more; always clean up the unit."""
    try:
        systemd.start_unit(server, wait_started=True, timeout=30)
        assert http_get(address, "/readyz") == (200, "ready")
        systemd.run("stop", "--no-block", server)
        if not delay:
            systemd.wait_for(server, ActiveState="inactive", timeout=20)
            with pytest.raises(OSError):
                http_get(address, "/", timeout=0.5)
            return
        systemd.wait_for(server, ActiveState="deactivating", timeout=10)
        while_held()
        systemd.run("kill", "--signal=SIGTERM", server)  # a second SIGTERM ends the delay
        state = systemd.wait_for(server, ActiveState="inactive", timeout=20, props=("Result",))
        assert state["Result"] == "success", (state, log())  # died of SIGTERM: a clean stop
    finally:
        systemd.run("kill", "--signal=SIGKILL", server, check=False)
        systemd.stop_units(server)
        systemd.reset(server)
