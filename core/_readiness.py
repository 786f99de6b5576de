"""One startup's story, told to systemd: Starting… → Waiting… → READY (or why not).

Every plugin and the CLI drive the same object, so the texts, the listener rule and the
timeout policy are decided once, here.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Literal

from . import texts
from ._env import is_main_process
from ._exceptions import NotifyError
from ._listeners import (
    Expect,
    Listener,
    ListenerSnapshot,
    async_wait_until_listening,
    listening_sockets,
    snapshot_listeners,
    validate_wait_options,
    wait_until_listening,
)
from ._notifier import Notifier

if TYPE_CHECKING:
    from ._watchdog import HealthCheck

__all__ = ["Readiness", "ReadyOptions"]

logger = logging.getLogger("sdready")

OnTimeout = Literal["warn", "fail", "ready"]
_ON_TIMEOUT = ("warn", "fail", "ready")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class ReadyOptions:
    """How readiness is decided; shared by every plugin and the CLI.

    :param ready_timeout: seconds to wait for the listening socket after app startup.
    :param on_timeout: ``"warn"`` (log an error, send READY anyway), ``"fail"`` (no READY:
        systemd's ``TimeoutStartSec=`` decides) or ``"ready"`` (send READY quietly).
    :param expect: which listeners must exist: port, ``"host:port"``, unix path,
        ``"@abstract"``, a predicate on :class:`~sdready.Listener`, or a list of those.
    :param probe: ``None``, ``"connect"`` or ``"http:/path"``: prove the app answers too.
    :param watchdog: feed systemd's watchdog when ``WatchdogSec=`` is set.
    :param health: callable gating each watchdog ping (sync, or async in ASGI apps).
    :param notifier: the :class:`~sdready.Notifier` to use (default: from ``NOTIFY_SOCKET``).
    """

    ready_timeout: float = 30.0
    on_timeout: OnTimeout = "warn"
    expect: Expect | None = None
    probe: str | None = None
    watchdog: bool = True
    health: HealthCheck | None = None
    notifier: Notifier | None = None

    def __post_init__(self) -> None:
        if isinstance(self.ready_timeout, bool) or not (
            isinstance(self.ready_timeout, (int, float)) and self.ready_timeout > 0
        ):
            raise ValueError(f"ready_timeout must be a positive number, got {self.ready_timeout!r}")
        if self.on_timeout not in _ON_TIMEOUT:
            raise ValueError(
                f"on_timeout must be one of {', '.join(_ON_TIMEOUT)}; got {self.on_timeout!r}"
            )
        if (
            self.probe is not None
            and self.probe != "connect"
            and not self.probe.startswith("http:/")
        ):
            raise ValueError(f"probe must be None, 'connect' or 'http:/path'; got {self.probe!r}")
        validate_wait_options(self.expect, self.probe)
        if self.health is not None and not callable(self.health):
            raise ValueError(f"health must be callable, got {self.health!r}")

    @classmethod
    def from_settings(cls, settings: Mapping[str, object]) -> ReadyOptions:
        """Build options from loosely typed settings (config files, environment variables).

        Keys are the field names; string values are converted (``"10"`` → 10.0,
        ``"off"`` → False, ``"8000,/run/app.sock"`` → ``[8000, "/run/app.sock"]``,
        ``"none"`` → None for probe). Unknown keys raise :class:`ValueError`.
        """
        known = {f.name for f in fields(cls)}
        unknown = set(settings) - known
        if unknown:
            raise ValueError(f"unknown readiness option(s): {', '.join(sorted(unknown))}")
        values = dict(settings)
        if isinstance(values.get("ready_timeout"), str):
            values["ready_timeout"] = _parse_float("ready_timeout", str(values["ready_timeout"]))
        if isinstance(values.get("watchdog"), str):
            values["watchdog"] = parse_bool("watchdog", str(values["watchdog"]))
        if isinstance(values.get("expect"), str):
            values["expect"] = parse_expect(str(values["expect"]))
        if isinstance(values.get("probe"), str) and str(values["probe"]).lower() in ("", "none"):
            values["probe"] = None
        return cls(**values)  # type: ignore[arg-type]


def parse_bool(name: str, text: str) -> bool:
    """``"1"/"true"/"yes"/"on"`` → True, ``"0"/"false"/"no"/"off"/""`` → False."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), got {text!r}")


def parse_expect(text: str) -> list[int | str] | None:
    """``"8000, 127.0.0.1:9000, /run/app.sock"`` → ``[8000, "127.0.0.1:9000", "/run/app.sock"]``."""
    items: list[int | str] = []
    for raw in text.split(","):
        part = raw.strip()
        if part:
            items.append(int(part) if part.isdigit() else part)
    return items or None


def _parse_float(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {text!r}") from None


class Readiness:
    """Tell systemd how one startup goes, and send READY only once a client can connect.

    Call :meth:`starting` before the app's own startup code (it snapshots the listening
    sockets that exist already), :meth:`waiting` after it, then :meth:`announce` (asyncio)
    or :meth:`announce_blocking` (a thread). Without a notify socket every method is a
    no-op, so plugins stay inert outside systemd.
    """

    def __init__(self, options: ReadyOptions | None = None) -> None:
        self.options = options if options is not None else ReadyOptions()
        self.notifier = self.options.notifier if self.options.notifier is not None else Notifier()
        self.baseline: ListenerSnapshot | None = None
        self.wait_started: ListenerSnapshot | None = None
        self.listeners: list[Listener] = []
        self.ready_sent = False
        self._closed = False  # startup failed or stopping began: READY would be a lie

    @property
    def enabled(self) -> bool:
        """False outside systemd (no notify socket): nothing is sent, nothing is waited for."""
        return self.notifier.enabled

    def starting(self) -> None:
        """Snapshot existing listeners and send ``STATUS=Starting…``."""
        if not self.enabled:
            return
        try:
            self.baseline = snapshot_listeners()
        except (NotImplementedError, OSError) as exc:  # no /proc: announce() says so
            logger.debug("cannot snapshot listening sockets: %s", exc)
        self.notifier.status(texts.STARTING)

    def waiting(self) -> None:
        """Mark the end of the app's startup: ``STATUS=Waiting for the listening socket…``.

        Call it before the server can go on to listen (e.g. before forwarding ASGI's
        ``lifespan.startup.complete``): listeners opened between :meth:`starting` and now
        are the app's own, and this look decides which, whenever the waiter then runs.
        """
        if not self.enabled or self._closed:
            return
        try:
            # Only what listens now matters here: no need for the snapshot's extra walk
            # over unlistened sockets, on the event loop, at the end of startup.
            self.wait_started = ListenerSnapshot(tuple(listening_sockets()), time.monotonic())
        except (NotImplementedError, OSError) as exc:
            logger.debug("cannot snapshot listening sockets: %s", exc)
        self.notifier.status(texts.WAITING)

    async def announce(self) -> bool:
        """Wait (asynchronously) for the server's listener, then send READY per the options.

        Returns True when READY was sent. Cancelling the task sends nothing.
        """
        if not self._may_announce():
            return False
        options = self.options
        try:
            listeners = await async_wait_until_listening(
                options.ready_timeout,
                options.expect,
                baseline=self.baseline,
                probe=options.probe,
                wait_started=self.wait_started,
            )
        except (NotifyError, NotImplementedError, OSError) as exc:  # timeout, or no /proc
            return self._timed_out(exc)
        return self._ready(listeners)

    def announce_blocking(self, stop: threading.Event | None = None) -> bool:
        """Like :meth:`announce`, in the calling thread; give up silently once *stop* is set."""
        if not self._may_announce():
            return False
        options = self.options
        try:
            listeners = wait_until_listening(
                options.ready_timeout,
                options.expect,
                baseline=self.baseline,
                probe=options.probe,
                stop=stop,
                wait_started=self.wait_started,
            )
        except (NotifyError, NotImplementedError, OSError) as exc:
            if stop is not None and stop.is_set():
                return False
            return self._timed_out(exc)
        if stop is not None and stop.is_set():
            return False
        return self._ready(listeners)

    def startup_failed(self, message: str, errno: int | None = None) -> None:
        """Report a failed startup (``STATUS=Startup failed: …``, ``ERRNO=``); never READY after."""
        self._closed = True
        if not self.enabled:
            return
        fields: dict[str, str | int] = {
            "STATUS": texts.STARTUP_FAILED.format(message=_one_line(message))
        }
        if errno is not None and errno > 0:
            fields["ERRNO"] = errno
        self.notifier.send(fields)

    def stopping(self) -> None:
        """Send ``STOPPING=1`` with ``STATUS=Stopping…``; a pending READY is abandoned.

        Not from a worker (``SYSTEMD_EXEC_PID`` names another process): a server restarting
        one of its workers is not the service stopping, and with ``NotifyAccess=all``
        systemd would take it as such and stop the whole unit.
        """
        self._closed = True
        if not self.enabled:
            return
        if not is_main_process():
            logger.debug("pid %d is a worker: its shutdown sends no STOPPING=1", os.getpid())
            return
        self.notifier.stopping(texts.STOPPING)

    # -- internals --------------------------------------------------------------------------

    def _may_announce(self) -> bool:
        return self.enabled and not self._closed and not self.ready_sent

    def _ready(self, listeners: list[Listener]) -> bool:
        if self._closed or self.ready_sent:
            return False
        self.listeners = listeners
        self.ready_sent = True
        status = texts.READY.format(addresses=texts.format_addresses(listeners), pid=os.getpid())
        self.notifier.ready(status)
        logger.debug("READY sent: %s", status)
        return True

    def _timed_out(self, exc: Exception) -> bool:
        if self._closed or self.ready_sent:
            return False
        policy = self.options.on_timeout
        timeout = self.options.ready_timeout
        if policy == "fail":
            logger.error("not sending READY: %s", exc)
            self.notifier.status(texts.TIMEOUT_FAIL.format(timeout=timeout))
            return False
        if policy == "warn":
            logger.error(
                "sending READY although no listening socket was seen (on_timeout='warn'): %s", exc
            )
            status = texts.TIMEOUT_WARN.format(timeout=timeout, pid=os.getpid())
        else:
            logger.debug("sending READY after the listener wait timed out (on_timeout='ready')")
            status = texts.READY_UNCHECKED.format(pid=os.getpid())
        self.ready_sent = True
        self.notifier.ready(status)
        return True


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(no message)"
