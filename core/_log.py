"""sdready's logger, ``logging.getLogger("sdready")``, with ``logging`` imported on first use.

Importing ``logging`` costs milliseconds (it loads traceback, string, weakref, threading):
more than ``sdready notify`` spends sending one message. The modules on that path
(:mod:`._protocol`, :mod:`._notifier`, :mod:`._retry`) log through :data:`logger`, which
imports ``logging`` at its first call; the rest of sdready may use ``logging`` directly.
The level constants are the values ``logging`` defines, named here without importing it.
"""

from __future__ import annotations

__all__ = ["DEBUG", "ERROR", "INFO", "WARNING", "logger"]

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
