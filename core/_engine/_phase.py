"""The readiness engine's phase: where one service's story stands, and its legal moves.

Everything a front end can report is an :class:`Event`; the engine applies it with
:meth:`PhaseMachine.move`, which looks the move up in :data:`TRANSITIONS` and changes the
phase only if the table allows it. What systemd is told (READY, STOPPING, RELOADING, the
extensions of a start or a drain) and what a readiness endpoint answers follow from the
phase, never from flags kept beside it::

    new ──start──▶ starting ──wait──▶ waiting ──ready──▶ ready ──reload──▶ reloading
                      │                  │  ╲                ▲                 │
                      │                  │   overdue ──ready─┘                 │
                      ├──fail──▶ failed  ├──abandon──▶ abandoned               │
                      └──────────────────┴──stop──▶ stopping ──drain──▶ draining
                                                        └───────drained──▶ stopped

A move the table does not allow is refused (``move`` returns False): a front end that
reports READY after a failed start, or a worker's late report after STOPPING, changes
nothing. That is the engine's guarantee, not an error of the caller's.
"""

from __future__ import annotations

import enum

__all__ = ["TRANSITIONS", "Event", "Phase", "PhaseMachine"]


class Phase(str, enum.Enum):
    """Where the service stands. The values are the words a readiness endpoint answers."""

    NEW = "new"  #: made, nothing reported yet
    STARTING = "starting"  #: the app's own startup code runs
    WAITING = "waiting"  #: the app started; waiting for its listening socket
    OVERDUE = "overdue"  #: the wait timed out with on_timeout="fail": READY may still come
    READY = "ready"  #: READY=1 sent for this generation
    RELOADING = "reloading"  #: a new generation starts; READY may be sent once more
    FAILED = "failed"  #: the startup failed: never READY in this generation
    ABANDONED = "abandoned"  #: READY would be a lie: this process will never serve
    STOPPING = "stopping"  #: STOPPING=1 sent (or due)
    DRAINING = "draining"  #: the server finishes in-flight work within its own budget
    STOPPED = "stopped"  #: the drain or the app's own shutdown is over

    def __str__(self) -> str:
        return self.value

    @property
    def pending(self) -> bool:
        """True while READY is still to come in this generation."""
        return self in PENDING


class Event(str, enum.Enum):
    """What a front end reports; each is a column of :data:`TRANSITIONS`."""

    START = "start"
    WAIT = "wait"
    READY = "ready"
    TIME_OUT = "time_out"  # the on_timeout="fail" policy applied
    FAIL = "fail"
    ABANDON = "abandon"
    RELOAD = "reload"
    STOP = "stop"
    DRAIN = "drain"
    DRAINED = "drained"


P = Phase
_BEFORE_READY = frozenset({P.NEW, P.STARTING, P.WAITING, P.OVERDUE, P.RELOADING})
_STOPPED = frozenset({P.STOPPING, P.DRAINING, P.STOPPED})
_ALL = frozenset(Phase)

#: event → (the phases it may be applied in, the phase it leads to). One table: the engine
#: asks nothing else whether a move is legal.
TRANSITIONS: dict[Event, tuple[frozenset[Phase], Phase]] = {
    Event.START: (frozenset({P.NEW, P.STARTING}), P.STARTING),
    Event.WAIT: (frozenset({P.NEW, P.STARTING, P.RELOADING}), P.WAITING),
    Event.READY: (_BEFORE_READY, P.READY),
    Event.TIME_OUT: (_BEFORE_READY - {P.OVERDUE}, P.OVERDUE),
    # An abandoned start that then exits unserved failed: say so (Flask at exit).
    Event.FAIL: (_BEFORE_READY | {P.ABANDONED}, P.FAILED),
    Event.ABANDON: (_BEFORE_READY | {P.READY}, P.ABANDONED),
    Event.RELOAD: (_ALL - _STOPPED, P.RELOADING),
    Event.STOP: (_ALL - _STOPPED, P.STOPPING),
    Event.DRAIN: (frozenset({P.STOPPING}), P.DRAINING),
    Event.DRAINED: (frozenset({P.STOPPING, P.DRAINING}), P.STOPPED),
}

#: Phases in which READY is still to come in this generation.
PENDING = _BEFORE_READY
#: Phases in which the wait for READY runs: pending, the timeout policy not applied yet.
AWAITING = PENDING - {P.OVERDUE}
#: Phases from STOPPING=1 on.
STOPPED_PHASES = _STOPPED


class PhaseMachine:
    """The current phase and the generation (1, plus one per :attr:`Event.RELOAD`).

    Not locked: the engine holds its own lock around a move and what follows from it.
    """

    __slots__ = ("generation", "phase", "ready_count")

    def __init__(self) -> None:
        self.phase = Phase.NEW
        self.generation = 1
        #: How many generations reached READY: a drain only follows a service that served.
        self.ready_count = 0

    def allows(self, event: Event) -> bool:
        """True when *event* is a legal move from the current phase."""
        return self.phase in TRANSITIONS[event][0]

    def move(self, event: Event) -> bool:
        """Apply *event*; False (and no change) when the table does not allow it."""
        sources, target = TRANSITIONS[event]
        if self.phase not in sources:
            return False
        self.phase = target
        if event is Event.RELOAD:
            self.generation += 1
        elif event is Event.READY:
            self.ready_count += 1
        return True

    def __repr__(self) -> str:
        return f"<PhaseMachine {self.phase.value} generation={self.generation}>"
