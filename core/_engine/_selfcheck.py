"""Starting the engine's unit self-check: once per process, in the background.

The check itself (:func:`sdready._units._unitcheck.self_check`) asks systemd for this process's
unit and logs one WARNING per setting that does not match what the front end does; it is
loaded only here, under systemd, off the app's path.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from .. import texts
from .._env import invocation_id, main_pid
from .._log import logger

if TYPE_CHECKING:
    from typing import Protocol

    from .._notify._notifier import Notifier
    from .._units._unitcheck import Engine as CheckedEngine

    class Engine(CheckedEngine, Protocol):
        """What starting the check asks of the engine: the check's needs, its notifier."""

        notifier: Notifier


__all__ = ["start_self_check"]

#: Pids that started the check (a forked worker checks on its own, if at all).
_STARTED: set[int] = set()
#: The container WARNING was logged: once per process, and a forked worker inherits it.
_CONTAINER_SAID: list[bool] = []


def start_self_check(engine: Engine) -> None:
    """Start the check for *engine* unless this process did already, or it cannot apply.

    First says once, at WARNING, why a ``NOTIFY_SOCKET`` that is set cannot be used, and
    in an OCI container which messages its notify proxy drops. The check runs only under
    systemd (``INVOCATION_ID``) and from a process that notifies or is the unit's main one
    (``Type=simple``: front ends stay inert there, and the check says why). Returns at
    once: READY never waits for it; its failures stay at DEBUG.
    """
    if not engine.enabled:
        engine.notifier.report_invalid()
    container = engine.notifier.container if engine.enabled else None
    if container is not None and not _CONTAINER_SAID:
        # In a container podman passes no INVOCATION_ID: said here, before that check.
        _CONTAINER_SAID.append(True)
        logger.warning(texts.CONTAINER_PROXY, container)
    pid = os.getpid()
    if pid in _STARTED or invocation_id() is None:
        return
    if not engine.enabled and main_pid() != pid:
        return
    _STARTED.add(pid)
    threading.Thread(target=_run, args=(engine,), name="sdready-unit-check", daemon=True).start()


def _run(engine: Engine) -> None:
    from .._units._unitcheck import self_check

    self_check(engine)
