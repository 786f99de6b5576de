"""A server's drain after ``STOPPING=1``: more stop time while it demonstrably goes on.

gunicorn lets its workers finish their requests for ``graceful_timeout``; systemd's
``TimeoutStopSec=`` may be shorter. While the front end's *remaining* count stays above 0,
the drain asks for :attr:`Drain.STEP` seconds more every :attr:`Drain.TICK` seconds, never
past the server's own budget plus :attr:`Drain.MARGIN` after the stop began: a drain that
hangs is still killed. The engine decides whether a drain may start; this object only runs
it, tells the engine each extension, and when it is over.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import ClassVar

from .. import texts
from .._log import logger

__all__ = ["Drain"]


class Drain:
    """One drain, run in a daemon thread by :meth:`start`; :meth:`end` stops it."""

    #: Every TICK s while the server drains, STEP s more, within budget + MARGIN.
    TICK: ClassVar[float] = 1.0
    STEP: ClassVar[float] = 3.0
    MARGIN: ClassVar[float] = 2.0

    def __init__(
        self,
        remaining: Callable[[], int],
        budget: float,
        stop_started: float,
        extend: Callable[[str, float], object],
        over: Callable[[], object],
    ) -> None:
        self.remaining = remaining
        self.budget = budget
        #: No extension reaches past this monotonic time.
        self.limit = stop_started + budget + self.MARGIN
        self._extend = extend
        self._on_over = over
        self._over = threading.Event()

    @property
    def over(self) -> bool:
        """True once the drain ended (nothing left, budget spent, or :meth:`end`)."""
        return self._over.is_set()

    def start(self) -> Drain:
        threading.Thread(target=self._run, name="sdready-drain", daemon=True).start()
        return self

    def end(self) -> None:
        """The drain (or the app's own shutdown) is over: no extension from now on."""
        self._over.set()

    def _run(self) -> None:
        while not self._over.is_set():
            try:
                count = self.remaining()
            except Exception:  # the front end's fact is unknown: no more time on credit
                logger.exception("sdready: cannot tell whether the server still drains")
                break
            left = self.limit - time.monotonic()
            if count <= 0 or left <= 0:
                logger.debug("drain over: %d still draining, %.1f s of budget left", count, left)
                break
            text = texts.DRAINING.format(count=count, budget=self.budget)
            self._extend(text, min(self.STEP, left))
            self._over.wait(self.TICK)
        self._over.set()
        self._on_over()
