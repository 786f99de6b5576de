"""How much time the engine may ask systemd for (``EXTEND_TIMEOUT_USEC=``), and when.

Only while the service demonstrably gets on with something systemd times: a start or a
reload generation (until its READY), or a drain after ``STOPPING=1`` within the server's
own budget. Never while running (systemd would stretch ``RuntimeMaxSec=`` and the
watchdog), after a failed or abandoned start, once the drain is over, nor from a process
that is not the unit's main one.
"""

from __future__ import annotations

import time
from typing import ClassVar

from ._phase import PENDING, STOPPED_PHASES, Phase

__all__ = ["GenerationClock"]


class GenerationClock:
    """When this start or reload generation began, its ``ready_timeout`` deadline, and the
    extension a progress report may ask for."""

    #: A milestone extends a start by twice as long as it has taken so far, at least this.
    MILESTONE_MIN: ClassVar[float] = 1.0

    def __init__(self, ready_timeout: float) -> None:
        self.ready_timeout = ready_timeout
        self.started = self.deadline = 0.0
        self.begin(ready_timeout)

    def begin(self, ready_timeout: float) -> None:
        """A start or a reload generation begins: ``ready_timeout`` counts from now."""
        self.ready_timeout = ready_timeout
        self.started = now = time.monotonic()
        self.deadline = now + ready_timeout

    def time_left(self) -> float:
        """Seconds until ``ready_timeout`` runs out (0 once it has)."""
        return max(0.0, self.deadline - time.monotonic())

    def extension(
        self, phase: Phase, asked: float | None, *, main: bool, drain_limit: float | None
    ) -> float | None:
        """The seconds to ask for now in *phase*, or None.

        *asked*: what the app asked for (:func:`sdready.progress`); None for a front end's
        milestone, which gets twice as long as this generation has taken so far (at least
        :attr:`MILESTONE_MIN`, at most ``ready_timeout``): a start that got this far may take
        that long again. *drain_limit*: the monotonic time no drain extension reaches past.
        """
        if not main:
            return None  # a worker: its restart is no start, its exit no stop
        if phase in STOPPED_PHASES:
            if asked is None or phase is Phase.STOPPED:
                return None
            if drain_limit is not None:
                asked = min(asked, drain_limit - time.monotonic())
            return asked if asked > 0 else None
        if phase not in PENDING:
            return None  # running, failed or abandoned
        if asked is None:
            taken = time.monotonic() - self.started
            asked = min(max(self.MILESTONE_MIN, 2 * taken), self.ready_timeout)
        return asked
