"""The engine's phase in shared memory, for the processes that answer probes for it.

gunicorn's arbiter runs the engine, its workers serve the requests: a worker answering
``GET <ready_path>`` must answer from the arbiter's phase, not from a copy of its own. A
:class:`PhaseCell` is one byte of an anonymous shared mapping, made before the workers
fork (they inherit the mapping); the engine writes its phase there on every move
(``readiness.publish_phase(cell.publish)``), and a worker reads it for each probe. One byte is
written and read whole: no lock, no torn value.
"""

from __future__ import annotations

import mmap

from ._phase import Phase

__all__ = ["PhaseCell"]

_PHASES = tuple(Phase)


class PhaseCell:
    """One phase shared with the processes forked after it was made; starts as ``new``."""

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, 1, flags=mmap.MAP_SHARED)
        self.publish(Phase.NEW)

    def publish(self, phase: Phase) -> None:
        """Write *phase*: every process sharing the cell reads it from now on."""
        self._map[0] = _PHASES.index(phase)

    @property
    def phase(self) -> Phase:
        """The phase last published (by any process sharing the cell)."""
        return _PHASES[self._map[0]]

    def __repr__(self) -> str:
        return f"<PhaseCell {self.phase.value}>"
