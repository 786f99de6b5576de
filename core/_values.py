"""Each readiness option's one check and the one way it is read from text.

The light half of :mod:`._options`: no typing, dataclasses or socket module, so that
``sdready exec`` can check its whole command line with the very rules
:class:`~sdready.ReadyOptions` applies, and still spawn its command before loading the
engine. :class:`~sdready.ReadyOptions` runs :func:`check` when it is made.
"""

from ._cstd import TYPE_CHECKING
from ._listen._expect import parse_expectations
from ._listen._probe import DEFAULT_PROBE_TIMEOUT, parse_probe  # the probe's own bound

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Literal

__all__ = [
    "AUTO_PROBE",
    "DEFAULT_ON_TIMEOUT",
    "DEFAULT_PROBE_TIMEOUT",
    "DEFAULT_READY_TIMEOUT",
    "INHERITED_PROBE",
    "ON_TIMEOUT",
    "PARSERS",
    "check",
    "parse_bool",
    "parse_duration",
    "parse_expect",
]

#: Seconds to wait for the server's listener (or gunicorn's workers) after app startup.
DEFAULT_READY_TIMEOUT = 30.0
#: What happens when that runs out (see :class:`~sdready.ReadyOptions`), and the choices.
DEFAULT_ON_TIMEOUT: 'Literal["warn"]' = "warn"
ON_TIMEOUT = ("warn", "fail", "ready")
#: ``probe="auto"``: an HTTP probe only for sockets that already listened when startup began.
AUTO_PROBE = "auto"
INHERITED_PROBE = "http:/"
WORKERS_ALL = "all"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def check(  # noqa: PLR0913  (one argument per option, as ReadyOptions has them)
    *,
    ready_timeout: object,
    on_timeout: object,
    expect: object,
    probe: object,
    health: object = None,
    ready_workers: object = None,
    keep_sockets: object = None,
    watchdog: object = True,
    ready_path: object = None,
    live_path: object = None,
    shutdown_delay: object = 0,
) -> None:
    """Raise :class:`ValueError` for any value :class:`~sdready.ReadyOptions` refuses."""
    if isinstance(ready_timeout, bool) or not (
        isinstance(ready_timeout, (int, float)) and 0 < ready_timeout < float("inf")
    ):
        raise ValueError(f"ready_timeout must be a positive number, got {ready_timeout!r}")
    if on_timeout not in ON_TIMEOUT:
        raise ValueError(f"on_timeout must be one of {', '.join(ON_TIMEOUT)}; got {on_timeout!r}")
    if probe != AUTO_PROBE:
        parse_probe(probe)  # type: ignore[arg-type]  # a wrong type is refused there
    if expect is not None:
        parse_expectations(expect)  # type: ignore[arg-type]
    if not isinstance(watchdog, bool):  # "no" is a true string: booleans must be booleans
        raise ValueError(f"watchdog must be True or False, got {watchdog!r}")
    if keep_sockets is not None and not isinstance(keep_sockets, bool):
        raise ValueError(f"keep_sockets must be True, False or None, got {keep_sockets!r}")
    if health is not None and not callable(health):
        raise ValueError(f"health must be callable, got {health!r}")
    if ready_workers not in (None, WORKERS_ALL) and (
        isinstance(ready_workers, bool) or not isinstance(ready_workers, int) or ready_workers < 1
    ):
        raise ValueError(f"ready_workers must be a positive number or 'all', got {ready_workers!r}")
    for name, path in (("ready_path", ready_path), ("live_path", live_path)):
        if path is not None and not (
            isinstance(path, str)
            and path.startswith("/")
            and path.isprintable()
            and " " not in path
        ):
            raise ValueError(f"{name} must be None or a URL path like '/readyz', got {path!r}")
    if ready_path is not None and ready_path == live_path:
        raise ValueError(f"ready_path and live_path must differ, both are {ready_path!r}")
    if isinstance(shutdown_delay, bool) or not (
        isinstance(shutdown_delay, (int, float)) and 0 <= shutdown_delay < float("inf")
    ):
        raise ValueError(f"shutdown_delay must be 0 or a positive number, got {shutdown_delay!r}")


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


def _parse_path(name: str, text: str) -> str | None:
    stripped = text.strip()
    return None if stripped.lower() in ("", "none") else stripped


def _parse_delay(name: str, text: str) -> float:
    return 0.0 if text.strip() in ("0", "0s", "") else parse_duration(name, text)


def _parse_workers(name: str, text: str) -> int | str:
    lowered = text.strip().lower()
    if lowered == WORKERS_ALL:
        return WORKERS_ALL
    if lowered.isdigit():
        return int(lowered)
    raise ValueError(f"{name} must be a positive number or 'all', got {text!r}")


#: How each option is read from a string setting (``name`` is as the user wrote it).
PARSERS: "dict[str, Callable[[str, str], object]]" = {
    "ready_timeout": parse_duration,
    "watchdog": parse_bool,
    "expect": _parse_expect,
    "probe": _parse_probe,
    "ready_workers": _parse_workers,
    "keep_sockets": parse_bool,
    "ready_path": _parse_path,
    "live_path": _parse_path,
    "shutdown_delay": _parse_delay,
}
