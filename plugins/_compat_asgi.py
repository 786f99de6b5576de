"""What the ASGI middleware relies on in async libraries and servers, in one place.

Names (checked by tests/plugins/test_compat.py, see :data:`INTERNALS`): trio's
``trio.lowlevel`` functions, public but outside trio's stability promise for its main
namespace; hypercorn's ``raise_shutdown`` and its workers' ``EventWrapper`` (the shutdown
delay's gate, :func:`gate_hypercorn_stop`). Behaviours (pinned by the real-server tests,
not by a name): uvicorn runs the lifespan startup before it binds and hypercorn's workers
listen only after it (hence the background waiter:
tests/plugins/test_asgi_servers.py::test_connect_at_ready_always_succeeds),
hypercorn raises from ``send`` on ``lifespan.*.failed``
(::test_startup_failure_means_no_ready), and servers carry on when an app raises before
reading ``lifespan.startup`` (::test_app_without_lifespan_support_gets_ready).
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["INTERNALS", "gate_hypercorn_stop", "in_trio_task", "spawn_trio_system_task"]

#: (name, distribution, first release that has it), as in the gunicorn plugin's compat.
INTERNALS: tuple[tuple[str, str, str], ...] = (
    ("trio.lowlevel.current_task", "trio", "0.22"),
    ("trio.lowlevel.spawn_system_task", "trio", "0.22"),
    ("hypercorn.asyncio.run.raise_shutdown", "hypercorn", "0.15"),
    ("hypercorn.trio.run.raise_shutdown", "hypercorn", "0.15"),
    ("hypercorn.asyncio.worker_context.EventWrapper", "hypercorn", "0.15"),
    ("hypercorn.trio.worker_context.EventWrapper", "hypercorn", "0.15"),
)

#: A stop trigger (an async function of no arguments) and the loop's sleep.
Gate = Callable[
    [Callable[[], Awaitable[object]], Callable[[float], Awaitable[object]]], Awaitable[None]
]


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


def gate_hypercorn_stop(gate: Gate) -> Callable[[], None] | None:
    """hypercorn >= 0.15: make its worker, serving in this task's event loop, await
    ``gate(trigger, sleep)`` between its stop trigger and its shutdown; the undo, or None
    when hypercorn does not serve here.

    hypercorn's stop comes from no signal handler of this process: in a worker the trigger
    polls an event its parent sets on SIGTERM, alone the loop's own signal handler sets one.
    Either way the worker awaits ``raise_shutdown(trigger)``, a global of
    ``hypercorn.{asyncio,trio}.run`` looked up once the lifespan startup is over (when this
    runs) and before it serves, then closes its listeners. The trigger of
    ``context.terminate`` (``max_requests``: a worker's restart, not the service's stop)
    passes ungated.
    """
    asyncio_loop = not in_trio_task()
    backend = "asyncio" if asyncio_loop else "trio"
    module: Any = sys.modules.get(f"hypercorn.{backend}.run")
    context: Any = sys.modules.get(f"hypercorn.{backend}.worker_context")
    if module is None or context is None:
        return None
    sleep: Callable[[float], Awaitable[object]]
    if asyncio_loop:
        import asyncio

        sleep = asyncio.sleep
    else:
        import trio

        sleep = trio.sleep
    original = getattr(module.raise_shutdown, "__wrapped__", module.raise_shutdown)
    terminate = context.EventWrapper

    async def raise_shutdown(shutdown_trigger: Callable[[], Awaitable[object]]) -> None:
        if isinstance(getattr(shutdown_trigger, "__self__", None), terminate):
            await original(shutdown_trigger)
        else:
            await original(functools.partial(gate, shutdown_trigger, sleep))

    raise_shutdown.__wrapped__ = original  # type: ignore[attr-defined]
    module.raise_shutdown = raise_shutdown

    def undo() -> None:
        if module.raise_shutdown is raise_shutdown:
            module.raise_shutdown = original

    return undo
