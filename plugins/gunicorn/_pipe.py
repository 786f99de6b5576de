"""The workers' reports to the arbiter: a pipe created before the first fork.

Every worker inherits the write end and writes one JSON line per report (under
``PIPE_BUF``, so each write is atomic); the arbiter's thread waits on the read end and on a
second pipe that wakes it (a stop signal, a reload, the exit). Both ends are non-blocking:
a worker never waits for the arbiter.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
from typing import Any

__all__ = ["ReportPipe"]

logger = logging.getLogger("sdready")


class ReportPipe:
    """The report pipe and the wake-up pipe (see the module docstring)."""

    def __init__(self) -> None:
        self._event_r = self._event_w = self._wake_r = self._wake_w = -1
        self._pending = b""
        self._poller: Any = None

    @property
    def opened(self) -> bool:
        return self._event_w >= 0

    def open(self) -> None:
        """Create both pipes: before the first fork, so every worker inherits the write end."""
        self._event_r, self._event_w = os.pipe()
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._event_r, self._event_w, self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        self._poller = select.poll()
        self._poller.register(self._event_r, select.POLLIN)
        self._poller.register(self._wake_r, select.POLLIN)

    def in_child(self) -> int:
        """After fork, in a worker: close the arbiter's ends; the write end for its reports
        (-1 when the pipe was never opened)."""
        for fd in (self._event_r, self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._event_r = self._wake_r = self._wake_w = -1
        self._poller = None
        return self._event_w

    def wake(self) -> None:
        """Wake the arbiter's thread (safe in a signal handler: one non-blocking write)."""
        if self._wake_w >= 0:
            with contextlib.suppress(BlockingIOError):  # already full of wake-ups
                os.write(self._wake_w, b"!")

    def wait(self, timeout_ms: int | None) -> list[dict[str, Any]]:
        """Wait up to *timeout_ms* (None: until something comes) for reports or a wake-up;
        the reports read, in order (garbled lines skipped)."""
        events: list[dict[str, Any]] = []
        for fd, _ in self._poller.poll(timeout_ms):
            if fd == self._event_r:
                events += self._read()
            else:
                _drain(self._wake_r)
        return events

    def _read(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while True:
            try:
                chunk = os.read(self._event_r, 65536)
            except BlockingIOError:
                return events
            if not chunk:
                return events
            *lines, self._pending = (self._pending + chunk).split(b"\n")
            for line in lines:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    logger.debug("ignoring a garbled worker report: %r", line)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
