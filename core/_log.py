"""sdready's logger: ``logging.getLogger("sdready")``, or a command's own stderr log.

Importing ``logging`` costs milliseconds (it loads traceback, string, weakref, threading):
more than ``sdready notify`` spends sending one message, and more than ``sdready
wait-listen`` may spend on its whole work. Every core module logs through :data:`logger`
(the plugins, which only run inside an app, use ``logging`` itself). In a library (the
plugins, an app calling sdready), it is ``logging.getLogger("sdready")``, imported on its
first use. While a ``sdready`` command runs (:class:`stderr_log`), the
process is the command's own: records at the command's level or above go straight to
stderr as ``sdready COMMAND: message``, and ``logging`` is never imported. The level
constants are the values ``logging`` defines, named here without importing it.
"""

import sys

from ._cstd import TYPE_CHECKING, allocate_lock

__all__ = [
    "DEBUG",
    "ERROR",
    "INFO",
    "WARNING",
    "WarnOnce",
    "logger",
    "report_error",
    "stderr_log",
]

DEBUG = 10
INFO = 20
WARNING = 30
ERROR = 40
CRITICAL = 50

_LEVELS = {
    "debug": DEBUG,
    "info": INFO,
    "warning": WARNING,
    "error": ERROR,
    "exception": ERROR,
    "critical": CRITICAL,
}

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable

    logger: logging.Logger
else:

    class _Logger:
        """The command's stderr log while one runs, else the real logger (found once)."""

        __slots__ = ()

        def __getattr__(self, name):
            sink = _sink
            if sink is not None:
                method = sink.method(name)
                if method is not None:
                    return method
            return getattr(_real(), name)

    logger = _Logger()

_sink: "stderr_log | None" = None  # the running command's log
_real_logger: "logging.Logger | None" = None


def _real() -> "logging.Logger":
    global _real_logger  # noqa: PLW0603  (found once, on the first record outside a command)
    if _real_logger is None:
        import logging

        _real_logger = logging.getLogger("sdready")
    return _real_logger


class stderr_log:
    """sdready's log on stderr, ``sdready COMMAND: message``, while a command runs.

    Only records at *level* or above are written; a record with ``exc_info`` (as
    ``logger.exception`` gives) is followed by its traceback, as ``logging`` would print it.
    A plain class, not contextlib's decorator: the commands' fast paths must not pay for
    contextlib.
    """

    def __init__(self, command: str, level: int) -> None:
        self.command = command
        self.level = level
        self._lock = allocate_lock()  # one line at a time, whichever thread logs it
        self._previous: stderr_log | None = None

    def __enter__(self) -> None:
        global _sink  # noqa: PLW0603  (one command per process: its log is the process's)
        self._previous = _sink
        _sink = self

    def __exit__(self, *exc_info: object) -> None:
        global _sink  # noqa: PLW0603
        _sink = self._previous

    def method(self, name: str) -> "Callable[..., object] | None":
        """The logger method *name* writing to this log; None for one it does not replace."""
        level = _LEVELS.get(name)
        if level is not None:
            exception = name == "exception"

            def emit(msg: object, *args: object, exc_info: object = exception, **_: object) -> None:
                self.emit(level, msg, args, exc_info)

            return emit
        if name == "log":
            return lambda level, msg, *args, exc_info=False, **_: self.emit(
                level, msg, args, exc_info
            )
        if name == "isEnabledFor":
            return lambda level: level >= self.level
        return None

    def emit(self, level: int, msg: object, args: tuple[object, ...], exc_info: object) -> None:
        """Write one record, if *level* is enabled."""
        if level < self.level:
            return
        text = str(msg)
        if args:
            try:
                text %= args
            except (TypeError, ValueError):  # logging prints such a call rather than fail
                text = f"{text} {args!r}"
        trace = _traceback(exc_info)
        if trace:
            text = f"{text}\n{trace}"
        with self._lock:
            sys.stderr.write(f"sdready {self.command}: {text}\n")
            sys.stderr.flush()


def _traceback(exc_info: object) -> str:
    """The traceback ``logging`` appends for *exc_info*: True (the one being handled), an
    exception, or a ``sys.exc_info()`` tuple; empty for none."""
    if not exc_info:
        return ""
    if isinstance(exc_info, BaseException):
        error: BaseException | None = exc_info
    elif isinstance(exc_info, tuple):
        error = exc_info[1]
    else:
        error = sys.exc_info()[1]
    if error is None:
        return ""
    import traceback

    return "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()


class WarnOnce:
    """Log each distinct problem once: ``warn_once(key, msg, *args, level=WARNING)``, where
    *key* names the problem (``("send", errno)``), so that a fault repeated on every call
    is said once and a different one is still said."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: set[object] = set()

    def __call__(self, key: object, msg: str, *args: object, level: int = WARNING) -> None:
        if key not in self._seen:
            self._seen.add(key)
            logger.log(level, msg, *args)


def report_error(command: str, message: str) -> None:
    """Log *message* as an error of *command*, as the full command line would."""
    with stderr_log(command, ERROR):
        logger.error("%s", message)
