"""What the readiness engine tells systemd, once its phase has moved: the words and the sender.

The engine (:mod:`sdready._engine._readiness`) decides *whether* (its phase table); this module
says it, the same way for every front end:

- ``STATUS=`` one line (:data:`sdready.texts.STATUS_BUDGET`), never twice the same, with
  ``ERRNO=`` for a failure, and the last one remembered (a failing health check puts it
  back once it passes);
- ``READY=1``, with ``MAINPID=`` from a process that took over as the unit's main one
  (gunicorn's USR2 successor), and the STATUS texts of the ``on_timeout`` policy;
- ``STOPPING=1`` only from the unit's main process, with a shutdown delay's extension;
- ``RELOADING=1``, and a progress's ``EXTEND_TIMEOUT_USEC=``.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from .. import texts
from .._env import is_main_process
from .._log import logger
from .._notify._notifier import Notifier
from .._notify._protocol import timeout_usec

__all__ = [
    "DELAY_MARGIN",
    "EXPECTED_TIMEOUTS",
    "LISTENER_TIMEOUTS",
    "Messenger",
    "TimeoutTexts",
    "timeout_status",
]


class TimeoutTexts(NamedTuple):
    """What the timeout policy says: STATUS texts ``warn`` (``.format(timeout=, pid=)``)
    and ``fail`` (``.format(timeout=)``), and ``awaited``, for the log: what was not seen."""

    warn: str
    fail: str
    awaited: str


LISTENER_TIMEOUTS = TimeoutTexts(texts.TIMEOUT_WARN, texts.TIMEOUT_FAIL, "listening socket")
#: With ``expect``: another socket may listen, so "none seen" would be untrue.
EXPECTED_TIMEOUTS = TimeoutTexts(
    texts.TIMEOUT_WARN_EXPECTED, texts.TIMEOUT_FAIL_EXPECTED, "listener matching expect="
)

#: Seconds beyond a shutdown delay that its stop timeout extension leaves the server's own
#: graceful shutdown (systemd only ever lengthens a timeout with EXTEND_TIMEOUT_USEC=).
DELAY_MARGIN = 5.0


def timeout_status(
    policy: str, said: TimeoutTexts, timeout: float, pid: int, reason: object
) -> str:
    """The STATUS the ``on_timeout`` *policy* gives a wait that timed out (READY's, unless
    ``"fail"``), logged as the policy says: an error unless ``"ready"``."""
    if policy == "fail":
        logger.error("not sending READY: %s", reason)
        return said.fail.format(timeout=timeout)
    if policy == "warn":
        logger.error(
            "sending READY although no %s was seen (on_timeout='warn'): %s", said.awaited, reason
        )
        return said.warn.format(timeout=timeout, pid=pid)
    logger.debug("sending READY after the wait timed out (on_timeout='ready'): %s", reason)
    return texts.READY_UNCHECKED.format(pid=pid)


class Messenger:
    """Sends one engine's messages with *notifier* (see the module docstring), and knows
    which process speaks for the unit. Decides nothing about the phase."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        #: The last STATUS text sent (READY's included).
        self.last_status = ""
        #: The main pid this process replaced (``MAINPID=`` goes with its first READY).
        self.took_over_from: int | None = None
        self._main: bool | None = None  # None: as SYSTEMD_EXEC_PID says

    @property
    def is_main(self) -> bool:
        """True when this process speaks for the unit (its main pid, or took over as such)."""
        return is_main_process() if self._main is None else self._main

    def took_over(self, previous_main: int) -> None:
        """This process replaces main pid *previous_main* (its first READY says so)."""
        self.took_over_from = previous_main

    def handed_over(self) -> None:
        """Another process is the unit's main one now."""
        self._main = False

    def status(self, text: str, *, errno: int | None = None) -> bool:
        """``STATUS=text`` on one line (``ERRNO=`` for a failure's positive *errno*), unless
        it says what the last one said."""
        text = texts.one_line(text)
        if not self.notifier.enabled or text == self.last_status:
            return False
        self.last_status = text
        if errno is not None and errno > 0:
            return self.notifier.send({"STATUS": text, "ERRNO": errno})
        return self.notifier.status(text)

    def startup_failed(self, message: str | BaseException, errno: int | None) -> bool:
        """``STATUS=Startup failed: …`` with ``ERRNO=``; *message* may be the exception
        (:func:`sdready.texts.failure`: its one-line text, an :class:`OSError` cause's errno)."""
        if isinstance(message, BaseException):
            message, found = texts.failure(message)
            errno = errno or found
        line = texts.one_line(message) or "(no message)"
        return self.status(texts.STARTUP_FAILED.format(message=line), errno=errno)

    def progress(self, text: str, extend: float | None) -> bool:
        """``STATUS=text``, with ``EXTEND_TIMEOUT_USEC=`` for *extend* seconds if any."""
        self.last_status = text
        if extend is None:
            return self.notifier.status(text)
        return self.notifier.progress(text, extend=extend)

    def ready(self, status: str, *, first: bool) -> None:
        """``READY=1`` with *status*; with ``MAINPID=`` as the *first* READY of a process
        that took over."""
        self.last_status = status
        if not self.notifier.enabled:
            return  # no systemd (Kubernetes): the phase alone answers the probes
        if first and self.took_over_from is not None:
            # This process replaces the unit's main one (gunicorn's USR2 master): systemd
            # must track it from now on (accepted only with NotifyAccess=all).
            self.notifier.send({"MAINPID": os.getpid(), "READY": 1, "STATUS": status})
            self._main = True
        else:
            self.notifier.ready(status)

    def reloading(self, status: str) -> None:
        """``RELOADING=1`` (with ``MONOTONIC_USEC``) and *status*."""
        self.last_status = status
        self.notifier.reloading(status)

    def stopping(self, delay: float) -> bool:
        """``STOPPING=1`` from the unit's main process; with a shutdown *delay*, the stop
        timeout extended by the delay plus :data:`DELAY_MARGIN`."""
        if not self.notifier.enabled:
            return False
        if not self.is_main:
            logger.debug(
                "pid %d is a worker, not the unit's main process: no STOPPING=1", os.getpid()
            )
            return False
        if delay > 0:
            self.last_status = texts.STOPPING_DELAYED.format(delay=delay)
            return self.notifier.send(
                {
                    "STOPPING": 1,
                    "STATUS": self.last_status,
                    "EXTEND_TIMEOUT_USEC": timeout_usec(delay + DELAY_MARGIN),
                }
            )
        self.last_status = texts.STOPPING
        return self.notifier.stopping(texts.STOPPING)
