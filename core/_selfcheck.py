"""Starting the engine's unit self-check: once per process, in the background.

The check itself (:func:`sdready._unitcheck.self_check`) asks systemd for this process's
unit and logs one WARNING per setting that does not match what the front end does; it is
loaded only here, under systemd, off the app's path.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from ._env import invocation_id, main_pid

if TYPE_CHECKING:
    from ._unitcheck import Engine

__all__ = ["start_self_check"]

#: Pids that started the check (a forked worker checks on its own, if at all).
_STARTED: set[int] = set()


def start_self_check(engine: Engine) -> None:
    """Start the check for *engine* unless this process did already, or it cannot apply.

    Only under systemd (``INVOCATION_ID``) and from a process that notifies or is the
    unit's main one (``Type=simple``: front ends stay inert there, and the check says
    why). Returns at once: READY never waits for it; its failures stay at DEBUG.
    """
    pid = os.getpid()
    if pid in _STARTED or invocation_id() is None:
        return
    if not engine.enabled and main_pid() != pid:
        return
    _STARTED.add(pid)
    threading.Thread(target=_run, args=(engine,), name="sdready-unit-check", daemon=True).start()


def _run(engine: Engine) -> None:
    from ._unitcheck import self_check

    self_check(engine)
