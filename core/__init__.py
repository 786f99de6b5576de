"""sdready: tell systemd the truth about your web app's state over sd_notify.

The core is standard library only and never imports asyncio or a web framework; the
framework adapters live in ``sdready.plugins``.
"""

from __future__ import annotations

from ._env import listen_fds_count, watchdog_interval
from ._exceptions import NotifyError
from ._notifier import Notifier, notify, ready, reloading, status, stopping, watchdog
from ._readiness import Readiness, ReadyOptions
from ._version import __version__
from ._watchdog import Watchdog, watchdog_loop

__all__ = [
    "Notifier",
    "NotifyError",
    "Readiness",
    "ReadyOptions",
    "Watchdog",
    "__version__",
    "listen_fds_count",
    "notify",
    "ready",
    "reloading",
    "status",
    "stopping",
    "watchdog",
    "watchdog_interval",
    "watchdog_loop",
]
