"""What the arbiter knows of its workers: which generation each belongs to, which booted
(and where they listen), when each was forked, which are gone.

Kept by worker *age* (gunicorn's counter, which never repeats), fed by the hooks and the
workers' reports, read under the arbiter's lock. It decides nothing about systemd.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Booted", "WorkerTable", "plural"]


@dataclass
class Booted:
    """A worker that can serve: its pid and the addresses its sockets listen on."""

    pid: int
    addresses: tuple[str, ...]


class WorkerTable:
    """The workers of the current generation and their state (see the module docstring)."""

    def __init__(self) -> None:
        self.generation_age = 0  # workers not younger than this belong to an older generation
        self.booted: dict[int, Booted] = {}
        self.spawned: dict[int, float] = {}  # age: when forked (the watchdog's boot clock)
        self.exited: set[int] = set()

    def new_generation(self, age: int) -> None:
        """A SIGHUP: workers spawned from now on (younger than *age*) are the new ones."""
        self.generation_age = age

    def forked(self, age: int) -> None:
        self.spawned[age] = time.monotonic()

    def gone(self, age: int) -> None:
        self.exited.add(age)
        self.booted.pop(age, None)
        self.spawned.pop(age, None)
        if len(self.exited) > 4096:  # ages only grow: forget the oldest
            self.exited = set(sorted(self.exited)[-1024:])

    def boot(self, age: int, pid: int, addresses: Sequence[str]) -> None:
        self.booted[age] = Booted(pid, tuple(addresses))

    def current(self) -> list[Booted]:
        """The workers of this generation that serve on some address."""
        return [b for age, b in self.booted.items() if age > self.generation_age and b.addresses]

    def of_this_generation(self, age: int) -> bool:
        return age > self.generation_age

    def has_booted(self, age: int) -> bool:
        return age in self.booted

    def alive(self, workers: Sequence[tuple[int, Callable[[], float]]], limit: float) -> bool:
        """True when one of *workers* (age, its last heartbeat) is alive and not stuck: a
        booted one heartbeated within *limit* (gunicorn's own rule, its ``timeout``), or one
        still booting was forked within it (a reload or a respawn takes that long at most
        before gunicorn's own test applies). A heartbeat raises OSError or ValueError for a
        worker reaped meanwhile."""
        now = time.monotonic()
        for age, heartbeat in workers:
            if age not in self.booted:
                if now - self.spawned.get(age, -math.inf) <= limit:
                    return True
                continue
            try:
                if now - heartbeat() <= limit:
                    return True
            except (OSError, ValueError):
                continue
        return False


def plural(count: int) -> str:
    """``1 worker``, ``2 workers``."""
    return f"{count} worker" if count == 1 else f"{count} workers"
