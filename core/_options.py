"""Every readiness option, its one default, and the one way each is read from text.

Front ends build :class:`ReadyOptions` from keywords (ASGI, FastAPI, Flask arguments), from
prefixed settings (``SDREADY_*`` environment variables, Flask's ``SDREADY_*`` config keys,
gunicorn's ``sdready_*`` config names: :func:`prefixed`) and from the CLI's arguments (the
same parsers, as argparse types). Nothing here sends or waits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Literal, TypedDict

from ._listen._expect import Expect
from ._log import logger
from ._values import (
    AUTO_PROBE,
    DEFAULT_ON_TIMEOUT,
    DEFAULT_READY_TIMEOUT,
    INHERITED_PROBE,
    PARSERS,
    check,
    parse_bool,
    parse_duration,
    parse_expect,
)

if TYPE_CHECKING:
    from ._notify._notifier import Notifier

__all__ = [
    "AUTO_PROBE",
    "DEFAULT_READY_TIMEOUT",
    "INHERITED_PROBE",
    "Expect",
    "HealthCheck",
    "OnTimeout",
    "ReadyKeywords",
    "ReadyOptions",
    "parse_bool",
    "parse_duration",
    "parse_expect",
    "prefixed",
]

OnTimeout = Literal["warn", "fail", "ready"]

#: Returns (or resolves to) True when the app is healthy. Raising counts as unhealthy.
HealthCheck = Callable[[], bool | Awaitable[bool]]


@dataclass(frozen=True)
class ReadyOptions:
    """How readiness is decided; one type for every front end.

    :param ready_timeout: seconds to wait for the listening socket after app startup.
    :param on_timeout: ``"warn"`` (log an error, send READY anyway), ``"fail"`` (no READY:
        systemd's ``TimeoutStartSec=`` decides) or ``"ready"`` (send READY quietly).
    :param expect: which listeners must exist: port, ``"host:port"``, unix path,
        ``"@abstract"``, a predicate on :class:`~sdready.Listener`, or a list of those.
    :param probe: ``None``, ``"connect"``, ``"http:/path"``, or ``"auto"`` (an HTTP GET of
        ``/`` only for sockets that already listened when startup began: they accept
        before the app serves).
    :param watchdog: feed systemd's watchdog when ``WatchdogSec=`` is set.
    :param health: callable gating each watchdog ping (sync, or async in ASGI apps).
    :param notifier: the :class:`~sdready.Notifier` to use (default: from ``NOTIFY_SOCKET``).
    :param ready_workers: gunicorn only: how many workers must serve (a number or
        ``"all"``); None: 1, or all under ``reuse_port``.
    :param keep_sockets: gunicorn only: keep its listening sockets in systemd's fd store
        once READY; None: when ``$FDSTORE`` says the unit has a store (systemd >= 254).
    :param ready_path: a path (``"/readyz"``) answered 200 ``ready`` between READY and the
        stop while *health* passes, else 503 with the phase; the app never sees it. Set
        (or *shutdown_delay*), the engine runs without a notify socket too (Kubernetes).
    :param live_path: a path (``"/livez"``) answered 200 unless *health* fails.
    :param shutdown_delay: seconds to keep serving after SIGTERM (with STOPPING=1 sent and
        *ready_path* answering 503) before the server's own graceful shutdown.

    Bad values raise :class:`ValueError` here, when the options are made.
    """

    ready_timeout: float = DEFAULT_READY_TIMEOUT
    on_timeout: OnTimeout = DEFAULT_ON_TIMEOUT
    expect: Expect | None = None
    probe: str | None = None
    watchdog: bool = True
    health: HealthCheck | None = None
    notifier: Notifier | None = None
    ready_workers: int | Literal["all"] | None = None
    keep_sockets: bool | None = None
    ready_path: str | None = None
    live_path: str | None = None
    shutdown_delay: float = 0

    def __post_init__(self) -> None:
        check(
            ready_timeout=self.ready_timeout,
            on_timeout=self.on_timeout,
            expect=self.expect,
            probe=self.probe,
            health=self.health,
            ready_workers=self.ready_workers,
            keep_sockets=self.keep_sockets,
            watchdog=self.watchdog,
            ready_path=self.ready_path,
            live_path=self.live_path,
            shutdown_delay=self.shutdown_delay,
        )

    @property
    def auto_probe(self) -> bool:
        """True for ``probe="auto"``."""
        return self.probe == AUTO_PROBE

    @property
    def serves_probes(self) -> bool:
        """True when the engine runs without a notify socket too: a readiness path or a
        shutdown delay is set (Kubernetes has no systemd, and still needs both)."""
        return self.ready_path is not None or self.shutdown_delay > 0

    @classmethod
    def from_settings(cls, settings: Mapping[str, object], *, label: str = "{}") -> ReadyOptions:
        """Build options from loosely typed settings (config files, environment variables).

        Keys are the field names; string values are converted (``"10"`` → 10.0,
        ``"500ms"`` → 0.5, ``"off"`` → False, ``"8000,/run/app.sock"`` →
        ``[8000, "/run/app.sock"]``, ``"none"`` → None for probe, ``"4"`` → 4 workers).
        Unknown keys raise :class:`ValueError`; its message names an option as
        ``label.format(name)`` (``"sdready_{}"``, or ``"SDREADY_{}"`` for upper case: as
        the user wrote it).
        """
        unknown = set(settings) - OPTION_NAMES
        if unknown:
            named = ", ".join(f"{n}{closest(n, OPTIONS)}" for n in sorted(unknown))
            raise ValueError(f"unknown readiness option(s): {named}")
        values = dict(settings)
        for name, parse in PARSERS.items():
            if isinstance(values.get(name), str):
                shown = label.format(name.upper() if label.isupper() else name)
                values[name] = parse(shown, str(values[name]))
        return cls(**values)  # type: ignore[arg-type]


OPTION_NAMES = frozenset(f.name for f in fields(ReadyOptions))


class ReadyKeywords(TypedDict, total=False):
    """The keyword arguments of every front end, for type checkers (``**Unpack[...]``)."""

    ready_timeout: float
    on_timeout: OnTimeout
    expect: Expect | None
    probe: str | None
    watchdog: bool
    health: HealthCheck | None
    notifier: Notifier | None
    ready_workers: int | Literal["all"] | None
    keep_sockets: bool | None
    ready_path: str | None
    live_path: str | None
    shutdown_delay: float


def prefixed(
    settings: Mapping[str, object], prefix: str, *, strict: bool = True
) -> dict[str, object]:
    """The options among *settings* whose keys are *prefix* + an option name, any case.

    ``prefixed(os.environ, "SDREADY_", strict=False)`` → ``{"ready_timeout": "60"}``.
    With ``strict`` an unknown name after the prefix (a typo) raises :class:`ValueError`.
    """
    found: dict[str, object] = {}
    size = len(prefix)
    for key, value in settings.items():
        if not key.lower().startswith(prefix.lower()):
            continue
        name = key[size:].lower()
        if name in OPTION_NAMES:
            found[name] = value
            continue
        shown = [prefix + (n.upper() if prefix.isupper() else n) for n in OPTIONS]
        hint = closest(key, shown)
        if strict:
            raise ValueError(f"unknown sdready setting {key!r}{hint}; known: {', '.join(shown)}")
        if hint:  # a typo of ours, not another tool's SDREADY_-prefixed name: say so
            logger.warning("ignoring unknown sdready setting %r%s", key, hint)
    return found


def closest(name: str, known: Sequence[str]) -> str:
    """``" (did you mean 'X'?)"`` for the known name closest to a misspelt *name*, or ``""``."""
    import difflib

    match = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
    return f" (did you mean {match[0]!r}?)" if match else ""


#: Option names in documentation order.
OPTIONS = tuple(f.name for f in fields(ReadyOptions))
