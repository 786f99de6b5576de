"""Exceptions raised by sdready.

Hierarchy::

    NotifyError                      a notification could not be delivered (strict mode)
    └── ListenTimeoutError           the expected listening sockets did not appear in time
        (also a TimeoutError)

Environment faults (no socket, a full queue, a manager that went away) never raise by
default: they are logged once and the call returns ``False``. Programming errors (a newline
inside STATUS, an unknown field name) raise :class:`ValueError` at the call.
"""

__all__ = ["NotifyError", "missing_framework", "require_framework"]


class NotifyError(Exception):
    """A notification could not be delivered to the service manager.

    Raised only by notifiers created with ``strict=True``; the default policy logs one
    warning per distinct problem and returns ``False`` instead.
    """


def missing_framework(plugin: str, package: str) -> ImportError:
    """The one error a plugin raises when its framework is not installed: what to install."""
    return ImportError(f"sdready.plugins.{plugin} needs {package}: pip install 'sdready[{plugin}]'")


def require_framework(plugin: str, package: str, module: str) -> None:
    """Fail early, with :func:`missing_framework`'s message, when *module* is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise missing_framework(plugin, package)
