"""sdready's logger, ``logging.getLogger("sdready")``, with ``logging`` imported on first use.

Importing ``logging`` costs milliseconds (it loads traceback, string, weakref, threading):
more than ``sdready notify`` spends sending one message. The modules on that path
(:mod:`._protocol`, :mod:`._notifier`, :mod:`._retry`) log through :data:`logger`, which
imports ``logging`` at its first call; the rest of sdready may use ``logging`` directly.
The level constants are the values ``logging`` defines, named here without importing it.
"""

from __future__ import annotations

__all__ = ["DEBUG", "ERROR", "INFO", "WARNING", "logger", "report_error", "stderr_log"]

DEBUG = 10
INFO = 20
WARNING = 30
ERROR = 40

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

    logger: logging.Logger
else:

    class _Logger:
        """Forwards every attribute to the real logger, found on the first use."""

        __slots__ = ()

        def __getattr__(self, name):
            import logging

            return getattr(logging.getLogger("sdready"), name)

    logger = _Logger()


class stderr_log:
    """sdready's log on stderr, ``sdready COMMAND: message``, while a command runs.

    A plain class, not contextlib's decorator: the fast ``sdready notify`` path imports this
    module and must not pay for contextlib.
    """

    def __init__(self, command: str, level: int) -> None:
        self.command = command
        self.level = level

    def __enter__(self) -> None:
        import logging
        import sys

        self._real = real = logging.getLogger("sdready")
        self._handler = handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"sdready {self.command}: %(message)s"))
        handler.setLevel(self.level)
        self._saved_level = real.level
        real.addHandler(handler)
        if real.getEffectiveLevel() > self.level:
            real.setLevel(self.level)

    def __exit__(self, *exc_info: object) -> None:
        self._real.removeHandler(self._handler)
        self._real.setLevel(self._saved_level)


def report_error(command: str, message: str) -> None:
    """Log *message* as an error of *command*, as the full command line would."""
    with stderr_log(command, ERROR):
        logger.error("%s", message)
