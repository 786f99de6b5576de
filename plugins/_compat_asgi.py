"""What the ASGI middleware relies on in async libraries and servers, in one place.

Names (checked by tests/plugins/test_compat.py, see :data:`INTERNALS`): trio's
``trio.lowlevel`` functions, public but outside trio's stability promise for its main
namespace. Behaviours (pinned by the real-server tests, not by a name): uvicorn runs the
lifespan startup before it binds and hypercorn's workers listen only after it (hence the
background waiter: tests/plugins/test_asgi_servers.py::test_connect_at_ready_always_succeeds),
hypercorn raises from ``send`` on ``lifespan.*.failed``
(::test_startup_failure_means_no_ready), and servers carry on when an app raises before
reading ``lifespan.startup`` (::test_app_without_lifespan_support_gets_ready).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["INTERNALS", "in_trio_task", "spawn_trio_system_task"]

#: (name, distribution, first release that has it), as in the gunicorn plugin's compat.
INTERNALS: tuple[tuple[str, str, str], ...] = (
    ("trio.lowlevel.current_task", "trio", "0.22"),
    ("trio.lowlevel.spawn_system_task", "trio", "0.22"),
)


def in_trio_task() -> bool:
    """trio >= 0.22: ``trio.lowlevel.current_task()`` raises RuntimeError outside a trio
    task; trio is only ever imported by a server that runs it, so an absent module is no."""
    trio = sys.modules.get("trio")
    if trio is not None:
        with contextlib.suppress(RuntimeError):
            trio.lowlevel.current_task()
            return True
    return False


def spawn_trio_system_task(work: Callable[[], Awaitable[Any]], name: str) -> None:
    """trio >= 0.22: ``trio.lowlevel.spawn_system_task``, a task outside the server's
    nurseries that lives as long as the run (the watchdog pinger: none of the app's)."""
    import trio

    trio.lowlevel.spawn_system_task(work, name=name)
