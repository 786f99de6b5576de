"""Every readiness option, its one default, and the one way each is read from text.

Front ends build :class:`ReadyOptions` from keywords (ASGI, FastAPI, Flask arguments), from
prefixed settings (``SDREADY_*`` environment variables, Flask's ``SDREADY_*`` config keys,
gunicorn's ``sdready_*`` config names: :func:`prefixed`) and from the CLI's arguments (the
same parsers, as argparse types). Nothing here sends or waits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Literal, TypedDict

from ._expect import Expect, parse_expectations
from ._probe import parse_probe

if TYPE_CHECKING:
    from ._notifier import Notifier

__all__ = [
    "DEFAULT_READY_TIMEOUT",
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

#: Seconds to wait for the server's listener (or gunicorn's workers) after app startup.
DEFAULT_READY_TIMEOUT = 30.0

OnTimeout = Literal["warn", "fail", "ready"]
ON_TIMEOUT: tuple[OnTimeout, ...] = ("warn", "fail", "ready")
#: ``probe="auto"``: an HTTP probe only for sockets that already listened when startup began.
AUTO_PROBE = "auto"
INHERITED_PROBE = "http:/"

#: Returns (or resolves to) True when the app is healthy. Raising counts as unhealthy.
HealthCheck = Callable[[], bool | Awaitable[bool]]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_WORKERS_ALL = "all"


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

    Bad values raise :class:`ValueError` here, when the options are made.
    """

    ready_timeout: float = DEFAULT_READY_TIMEOUT
    on_timeout: OnTimeout = "warn"
    expect: Expect | None = None
    probe: str | None = None
    watchdog: bool = True
    health: HealthCheck | None = None
    notifier: Notifier | None = None
    ready_workers: int | Literal["all"] | None = None
    keep_sockets: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.ready_timeout, bool) or not (
            isinstance(self.ready_timeout, (int, float)) and 0 < self.ready_timeout < float("inf")
        ):
            raise ValueError(f"ready_timeout must be a positive number, got {self.ready_timeout!r}")
        if self.on_timeout not in ON_TIMEOUT:
            raise ValueError(
                f"on_timeout must be one of {', '.join(ON_TIMEOUT)}; got {self.on_timeout!r}"
            )
        if self.probe != AUTO_PROBE:
            parse_probe(self.probe)
        if self.expect is not None:
            parse_expectations(self.expect)
        if self.keep_sockets not in (None, True, False):
            raise ValueError(f"keep_sockets must be True, False or None, got {self.keep_sockets!r}")
        if self.health is not None and not callable(self.health):
            raise ValueError(f"health must be callable, got {self.health!r}")
        workers = self.ready_workers
        if workers not in (None, _WORKERS_ALL) and (
            isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
        ):
            raise ValueError(f"ready_workers must be a positive number or 'all', got {workers!r}")

    @property
    def auto_probe(self) -> bool:
        """True for ``probe="auto"``."""
        return self.probe == AUTO_PROBE

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
            raise ValueError(f"unknown readiness option(s): {', '.join(sorted(unknown))}")
        values = dict(settings)
        for name, parse in _PARSERS.items():
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
        elif strict:
            known = ", ".join(prefix + (n.upper() if prefix.isupper() else n) for n in OPTIONS)
            raise ValueError(f"unknown sdready setting {key!r}; known: {known}")
    return found


#: Option names in documentation order.
OPTIONS = tuple(f.name for f in fields(ReadyOptions))


def parse_bool(name: str, text: str) -> bool:
    """``"1"/"true"/"yes"/"on"`` → True, ``"0"/"false"/"no"/"off"/""`` → False."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), got {text!r}")


def parse_duration(name: str, text: str) -> float:
    """``"30"``, ``"1.5s"``, ``"500ms"``, ``"2min"`` → seconds (positive and finite)."""
    stripped = text.strip().lower()
    number, unit = stripped, "s"
    for suffix in sorted(_DURATION_UNITS, key=len, reverse=True):
        if stripped.endswith(suffix):
            number, unit = stripped[: -len(suffix)].strip(), suffix
            break
    try:
        value = float(number) * _DURATION_UNITS[unit]
    except ValueError:
        raise ValueError(
            f"{name} must be a number of seconds (e.g. 30, 1.5s, 500ms, 2min), got {text!r}"
        ) from None
    if not 0 < value < float("inf"):
        raise ValueError(f"{name} must be positive and finite, got {text!r}")
    return value


def parse_expect(text: str) -> list[int | str] | None:
    """``"8000, 127.0.0.1:9000, /run/app.sock"`` → ``[8000, "127.0.0.1:9000", "/run/app.sock"]``."""
    items: list[int | str] = []
    for raw in text.split(","):
        part = raw.strip()
        if part:
            items.append(int(part) if part.isdigit() else part)
    return items or None


def _parse_expect(name: str, text: str) -> list[int | str] | None:
    return parse_expect(text)


def _parse_probe(name: str, text: str) -> str | None:
    return None if text.strip().lower() in ("", "none") else text.strip()


def _parse_workers(name: str, text: str) -> int | str:
    lowered = text.strip().lower()
    if lowered == _WORKERS_ALL:
        return _WORKERS_ALL
    if lowered.isdigit():
        return int(lowered)
    raise ValueError(f"{name} must be a positive number or 'all', got {text!r}")


_PARSERS: dict[str, Callable[[str, str], object]] = {
    "ready_timeout": parse_duration,
    "watchdog": parse_bool,
    "expect": _parse_expect,
    "probe": _parse_probe,
    "ready_workers": _parse_workers,
    "keep_sockets": parse_bool,
}
