"""sdready: tell systemd the truth about your web app's state over sd_notify.

The core is standard library only and never imports asyncio or a web framework; the
framework adapters live in ``sdready.plugins``.
"""

from ._cstd import TYPE_CHECKING

# Every other public name is imported on first use (PEP 562): `sdready notify` in a shell
# script, or a plugin that needs only the engine, pays only for what it uses. `typing` is
# not imported for this: it alone costs milliseconds of start-up.
if TYPE_CHECKING:  # what type checkers and IDEs see: the names as imported eagerly
    from ._engine._progress import progress
    from ._engine._readiness import Readiness
    from ._engine._watchdog import Watchdog, watchdog_loop
    from ._env import listen_fds_count, watchdog_interval
    from ._exceptions import NotifyError
    from ._listen._activation import listen_socket
    from ._listen._listeners import (
        Listener,
        ListenerSnapshot,
        ListenTimeoutError,
        async_wait_until_listening,
        listening_sockets,
        snapshot_listeners,
        wait_until_listening,
    )
    from ._notify._notifier import Notifier, notify, ready, reloading, status, stopping, watchdog
    from ._options import Expect, HealthCheck, OnTimeout, ReadyOptions
    from ._version import __version__

#: Where each public name lives.
_MODULES = {
    "__version__": "_version",
    "listen_socket": "_listen._activation",
    "listen_fds_count": "_env",
    "watchdog_interval": "_env",
    "NotifyError": "_exceptions",
    "Listener": "_listen._listeners",
    "ListenerSnapshot": "_listen._listeners",
    "ListenTimeoutError": "_listen._listeners",
    "async_wait_until_listening": "_listen._listeners",
    "listening_sockets": "_listen._listeners",
    "snapshot_listeners": "_listen._listeners",
    "wait_until_listening": "_listen._listeners",
    "Notifier": "_notify._notifier",
    "notify": "_notify._notifier",
    "ready": "_notify._notifier",
    "reloading": "_notify._notifier",
    "status": "_notify._notifier",
    "stopping": "_notify._notifier",
    "watchdog": "_notify._notifier",
    "Expect": "_options",
    "HealthCheck": "_options",
    "OnTimeout": "_options",
    "ReadyOptions": "_options",
    "Readiness": "_engine._readiness",
    "progress": "_engine._progress",
    "Watchdog": "_engine._watchdog",
    "watchdog_loop": "_engine._watchdog",
}

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
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # The import statement's own machinery: importlib is not loaded at start-up.
    value = getattr(__import__(f"{__name__}.{module}", fromlist=(name,)), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
