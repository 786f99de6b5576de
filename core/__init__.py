"""sdready: tell systemd the truth about your web app's state over sd_notify.

The core is standard library only and never imports asyncio or a web framework; the
framework adapters live in ``sdready.plugins``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._env import listen_fds_count, watchdog_interval
from ._exceptions import NotifyError
from ._listeners import (
    Listener,
    ListenerSnapshot,
    ListenTimeoutError,
    async_wait_until_listening,
    listening_sockets,
    snapshot_listeners,
    wait_until_listening,
)
from ._notifier import Notifier, notify, ready, reloading, status, stopping, watchdog
from ._options import Expect, HealthCheck, OnTimeout, ReadyOptions
from ._readiness import Readiness, progress
from ._version import __version__
from ._watchdog import Watchdog, watchdog_loop

if TYPE_CHECKING:
    from ._activation import listen_socket

__all__ = [
    "Expect",
    "HealthCheck",
    "ListenTimeoutError",
    "Listener",
    "ListenerSnapshot",
    "Notifier",
    "NotifyError",
    "OnTimeout",
    "Readiness",
    "ReadyOptions",
    "Watchdog",
    "__version__",
    "async_wait_until_listening",
    "listen_fds_count",
    "listen_socket",
    "listening_sockets",
    "notify",
    "progress",
    "ready",
    "reloading",
    "snapshot_listeners",
    "status",
    "stopping",
    "wait_until_listening",
    "watchdog",
    "watchdog_interval",
    "watchdog_loop",
]


def __getattr__(name: str) -> object:
    # PEP 562: listen_socket's module (socket binding, the fd store) loads on first use.
    if name == "listen_socket":
        from ._activation import listen_socket

        return listen_socket
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
