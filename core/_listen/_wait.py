"""The one wait loop: until the expected listeners exist (and pass the probe), or time runs out.

Every waiter drives a :class:`_Wait` over a listener source: this process's own sockets
(:mod:`sdready._listen._listeners`, for the plugins and the public waiters), another process tree
(:mod:`sdready._listen._proctree`, for ``sdready exec`` and ``wait-listen --pid``) or a network
namespace (``wait-listen``). The blocking and the asyncio drivers only sleep and probe.

Default selection, when no ``expect`` is given (``B`` is the baseline snapshot, taken by
plugins before the app's startup code runs; without one, ``B`` is what listens when
waiting begins):

1. Listeners that are in ``B`` and still listen are the server's (inherited from systemd,
   ``--fd``, a pre-fork master): they are selected at once.
2. Otherwise, listeners that appeared between ``B`` and the start of the wait were opened by
   the app's own startup code (a metrics or debug port): they are auxiliary and ignored.
3. The first poll that sees any other listener selects every such listener it sees.

An ``expect`` replaces the rule: every entry must match a listener, wherever it came from.
"""

import time

from .._cstd import TYPE_CHECKING, Callable
from .._exceptions import NotifyError
from .._log import logger
from .._record import Record
from ._expect import parse_expectations
from ._probe import Probe, parse_probe, probe_blocking
from ._sockets import Listener

__all__ = [
    "MAX_DUTY",
    "ListenTimeoutError",
    "ListenerSnapshot",
    "ListenerSource",
    "validate_expect",
    "validate_wait_options",
]

# Annotations only: typing and collections are not loaded at run time (the commands).
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from threading import Event

    from ._expect import Expect

# Polling schedule of the waiters: a burst while the listener most likely appears (uvicorn
# listens right after lifespan startup), then doubling up to a cap that bounds latency.
_FAST_PHASE = 0.002
_FAST_INTERVAL = 0.0001
_MAX_INTERVAL = 0.005
#: With thousands of descriptors a walk costs ~1 ms: never spend more than ~5% of a core.
MAX_DUTY = 0.05
_PROBE_RETRY_MIN = 0.01
#: Probes reach into the app (a GET each, see docs/reference.md): after a few quick
#: retries, no listener gets more than about one a second.
_PROBE_RETRY_MAX = 1.0


class ListenerSnapshot(Record):
    """The listeners that existed at one moment, to tell the server's sockets from the app's.

    Plugins take one with :func:`snapshot_listeners` *before* the app's startup code runs
    and pass it as ``baseline=`` to :func:`wait_until_listening`: listeners in it are the
    server's (inherited or pre-forked), listeners opened after it but before the wait
    began are the app's auxiliary ones. ``listener in snapshot`` compares sockets, not
    descriptor numbers. Immutable, compared by value.
    """

    __slots__ = ("_inodes", "listeners", "pending", "taken_at")
    __match_args__ = ("listeners", "taken_at", "pending")

    listeners: tuple[Listener, ...]
    taken_at: float  # time.monotonic()
    #: Stream sockets that existed then, neither listening nor connected: a server's socket
    #: bound before the app started (uvicorn ``--workers`` binds in the parent, and a worker
    #: listens only after its lifespan). They count as the server's once they listen.
    pending: frozenset[int]
    _inodes: frozenset[int]

    def __init__(
        self,
        listeners: tuple[Listener, ...],
        taken_at: float,
        pending: frozenset[int] = frozenset(),
    ) -> None:
        self._set(
            listeners=listeners,
            taken_at=taken_at,
            pending=pending,
            _inodes=frozenset(item.inode for item in listeners),
        )

    def __contains__(self, item: object) -> bool:
        return isinstance(item, Listener) and item.inode in self._inodes

    def __iter__(self) -> "Iterator[Listener]":
        return iter(self.listeners)

    def __len__(self) -> int:
        return len(self.listeners)


class ListenTimeoutError(NotifyError, TimeoutError):
    """The expected listening sockets did not appear, or did not pass the probe, in time.

    ``found`` holds the listeners present at the end, ``missing`` describes what was
    expected but not found, ``probe_failure`` says why the last probe failed (or is None).
    """

    def __init__(
        self,
        message: str,
        *,
        found: "Sequence[Listener]" = (),
        missing: "Sequence[str]" = (),
        probe_failure: str | None = None,
    ) -> None:
        super().__init__(message)
        self.found = tuple(found)
        self.missing = tuple(missing)
        self.probe_failure = probe_failure


def validate_wait_options(expect: "Expect | None" = None, probe: str | None = None) -> None:
    """Raise :class:`ValueError` now for an ``expect`` or ``probe`` the waiters would refuse."""
    if expect is not None:
        validate_expect(expect)
    parse_probe(probe)


def validate_expect(expect: "Expect") -> None:
    """Raise :class:`ValueError` now for an ``expect`` the waiters would refuse."""
    parse_expectations(expect)


#: Where a wait looks for listeners: this process's own descriptors (the default),
#: another process tree (``sdready exec``), or a network namespace (``wait-listen``).
#: A source may carry ``max_interval``, the longest spacing between polls its cost allows
#: (seconds, or None), to replace the wait's cap (``_MAX_INTERVAL``): a cheap source polled
#: often makes READY follow ``listen()`` closely. The duty cap (``MAX_DUTY``) still holds.
ListenerSource = Callable[[], list[Listener]]


class _Wait:
    """The state of one wait, shared by the blocking and the asyncio loops."""

    def __init__(  # noqa: PLR0913  (the public waiters' options, passed through)
        self,
        timeout: float | None,
        expect: "Expect | None",
        baseline: ListenerSnapshot | None,
        probe: str | None,
        probe_timeout: float,
        *,
        wait_started: ListenerSnapshot | None = None,
        source: ListenerSource,
    ) -> None:
        if timeout is not None and not timeout >= 0:  # also refuses NaN
            raise ValueError(f"timeout must be >= 0 or None, not {timeout!r}")
        if not probe_timeout > 0:
            raise ValueError(f"probe_timeout must be > 0, not {probe_timeout!r}")
        self.expectations = None if expect is None else parse_expectations(expect)
        self.probe: Probe | None = parse_probe(probe)
        self.probe_timeout = probe_timeout
        self.started = time.monotonic()
        self.deadline = float("inf") if timeout is None else self.started + timeout
        self.timeout = timeout
        self.source = source
        self.polls = 0
        self.last_poll = self.started
        self.interval = _FAST_INTERVAL
        self.walk_costs: list[float] = []
        self.current: list[Listener] = []
        self.probe_failure: str | None = None
        self.probe_delay = 0.0  # for the next sleep only
        self.probe_backoff = 0.0
        self.probe_passed: set[int] = set()  # inodes that answered: not asked again
        # Default rule: decided on the first walk (see the module docstring).
        self.baseline = baseline
        self.wait_started = wait_started
        self.server_inodes: frozenset[int] = frozenset()
        self.auxiliary: frozenset[int] = frozenset()

    def walk(self) -> list[Listener]:
        self.last_poll = time.monotonic()
        began = time.perf_counter()
        self.current = self.source()
        self.polls += 1
        if self.polls > 1:  # the first walk fills the caches: it says nothing about the rest
            # The cheapest of the last three: a walk preempted midway is not a costly one.
            self.walk_costs = [*self.walk_costs[-2:], time.perf_counter() - began]
        return self.current

    def poll(self) -> list[Listener] | None:
        """Walk once; return the complete selection, else None; raise once past the deadline."""
        current = self.walk()
        if self.polls == 1 and self.expectations is None:
            # When the wait began: the caller's own look if it took one (a task or thread
            # may start polling later, when the server may already listen), else now.
            began = current if self.wait_started is None else self.wait_started.listeners
            if self.baseline is None:
                self.server_inodes = frozenset(item.inode for item in began)
            else:
                self.server_inodes = self.baseline.pending.union(
                    item.inode for item in self.baseline
                )
                self.auxiliary = frozenset(
                    item.inode for item in began if item.inode not in self.server_inodes
                )
        selected = self.select(current)
        if selected is not None:
            if self.probe is None:
                self.log_selected(selected)
            return selected
        self.check_deadline()
        return None

    def wanted(self, item: Listener) -> bool:
        """Whether an ``expect`` entry names *item* (any listener does, without one)."""
        return self.expectations is None or any(e.matches(item) for e in self.expectations)

    def select(self, current: list[Listener]) -> list[Listener] | None:
        if self.expectations is not None:
            chosen: dict[int, Listener] = {}
            for expectation in self.expectations:
                found = [item for item in current if expectation.matches(item)]
                if not found:
                    return None
                for item in found:
                    chosen.setdefault(item.inode, item)
            return sorted(chosen.values(), key=lambda item: item.fd)
        server = [item for item in current if item.inode in self.server_inodes]
        if server:
            return server
        new = [item for item in current if item.inode not in self.auxiliary]
        return new or None

    def probe_budget(self) -> float:
        return max(0.0, min(self.probe_timeout, self.deadline - time.monotonic()))

    def step_blocking(
        self, inspect: Callable[[list[Listener]], None] | None = None
    ) -> list[Listener] | None:
        """One poll, and the blocking probes of what it selected: the selection, or None.

        *inspect* sees a selection before it is probed, and may set :attr:`probe`.
        """
        selected = self.poll()
        if selected is not None and inspect is not None:
            inspect(selected)
        if selected is None or self.probe is None:
            return selected
        probes = self.probe_round(selected)
        while (target := probes.next()) is not None:
            probes.record(probe_blocking(target, self.probe, probes.budget))
        return probes.result()

    def run_blocking(
        self,
        stop: "Event | None" = None,
        *,
        inspect: Callable[[list[Listener]], None] | None = None,
        proceed: Callable[[], bool] | None = None,
    ) -> list[Listener] | None:
        """The blocking driver: poll (and probe) until a selection; None once *stop* is set
        or *proceed* says False (asked between polls: a watched process exited, READY was
        abandoned). Raises :class:`ListenTimeoutError` at the deadline."""
        delay = 0.0
        while True:
            if stop is not None and (stop.wait(delay) if delay else stop.is_set()):
                return None
            if stop is None and delay:
                time.sleep(delay)
            if proceed is not None and not proceed():
                return None
            selected = self.step_blocking(inspect)
            if selected is not None:
                return selected
            delay = self.next_delay()

    async def run_async(self) -> list[Listener]:
        """The asyncio driver: the same polls and probes, never blocking the event loop.

        Polls every 0.1 ms for the first 2 ms while yielding to the loop in between
        (``asyncio.sleep(0)``: its timers have a 1 ms granularity), then sleeps.
        """
        import asyncio  # never at module level: `import sdready` must not import asyncio

        from ._probe import probe_async

        delay = 0.0
        while True:
            if delay and self.in_fast_phase():
                # A listener opened by another task right after startup (uvicorn) is seen
                # within ~0.1 ms this way.
                due = time.monotonic() + delay
                while time.monotonic() < due:
                    await asyncio.sleep(0)
            elif delay:
                await asyncio.sleep(delay)
            selected = self.poll()
            if selected is not None and self.probe is not None:
                probes = self.probe_round(selected)
                while (target := probes.next()) is not None:
                    probes.record(await probe_async(target, self.probe, probes.budget))
                selected = probes.result()
            if selected is not None:
                return selected
            delay = self.next_delay()

    def probe_round(self, selected: list[Listener]) -> "_ProbeRound":
        return _ProbeRound(self, selected)

    def probe_result(
        self, selected: list[Listener], failure: str | None, budget: float
    ) -> list[Listener] | None:
        if failure is None:
            self.log_selected(selected)
            return selected
        if failure != self.probe_failure:
            logger.debug("probe %s not passed yet: %s", self.probe, failure)
        # An attempt cut short by the deadline must not hide why the full ones failed.
        if self.probe_failure is None or budget >= self.probe_timeout:
            self.probe_failure = failure
        # Probes reach into the app: retry them gently, the walks keep their own pace.
        self.probe_backoff = min(max(self.probe_backoff * 2, _PROBE_RETRY_MIN), _PROBE_RETRY_MAX)
        self.probe_delay = self.probe_backoff
        self.check_deadline()
        return None

    def in_fast_phase(self) -> bool:
        return time.monotonic() - self.started < _FAST_PHASE

    def next_delay(self) -> float:
        """Seconds until the next poll; polls are spaced start to start, so walks and probes
        do not stretch the interval."""
        spacing = self.interval
        if not self.in_fast_phase():  # the burst is short: no duty cap there
            cap = getattr(self.source, "max_interval", None) or _MAX_INTERVAL
            self.interval = spacing = min(self.interval * 2, cap)
            spacing = max(spacing, min(self.walk_costs, default=0.0) / MAX_DUTY)
        spacing = max(spacing, self.probe_delay)
        self.probe_delay = 0.0
        # Wake for one last poll at the deadline rather than overshooting it.
        due = min(self.last_poll + spacing, self.deadline)
        return max(0.0, due - time.monotonic())

    def check_deadline(self) -> None:
        if time.monotonic() >= self.deadline:
            raise self.timeout_error()

    def log_selected(self, selected: list[Listener]) -> None:
        logger.debug(
            "listening on %s after %.1f ms (%d polls)",
            ", ".join(map(str, selected)),
            (time.monotonic() - self.started) * 1000,
            self.polls,
        )

    def timeout_error(self) -> ListenTimeoutError:
        current = self.current
        missing: list[str]
        if self.expectations is not None:
            missing = [e.text for e in self.expectations if not any(map(e.matches, current))]
        elif self.select(current) is None:
            # "not opened by the startup code" only where a snapshot saw some (the plugins):
            # sdready exec takes none, and its command has no startup code of ours to name.
            opened = " not opened by the app's startup code" if self.auxiliary else ""
            missing = [f"a listening socket{opened}"]
        else:
            missing = []
        found = ", ".join(
            f"{item} (opened during startup: auxiliary)"
            if item.inode in self.auxiliary
            else str(item)
            for item in current
        )
        message = f"timed out after {self.timeout:g} s waiting for listening sockets: "
        if missing:
            message += f"expected but not found: {'; '.join(missing)}; "
            message += f"found: {found or 'no listening socket'}"
        else:
            message += f"found {found}, but probe {self.probe} failed: {self.probe_failure}"
        return ListenTimeoutError(
            message,
            found=current,
            missing=missing,
            probe_failure=None if missing else self.probe_failure,
        )


class _ProbeRound:
    """Probing the selected listeners in turn, within the wait's deadline; shared by the
    blocking and the asyncio drivers, which only run the probe itself.

    Only what was asked for is probed: every listener an ``expect`` entry matched, else
    the first one selected (the lowest fd: the server's first socket), never another port
    of the tree that may not speak HTTP at all; and a listener that answered once is not
    asked again.
    """

    def __init__(self, wait: _Wait, selected: list[Listener]) -> None:
        self.wait = wait
        self.selected = selected
        targets = selected if wait.expectations is not None else selected[:1]
        self.targets = [item for item in targets if item.inode not in wait.probe_passed]
        self.budget = wait.probe_budget()
        self.failure: str | None = None
        self._next = 0

    def next(self) -> Listener | None:
        """The next listener to probe (``budget`` is set for it), or None: the round is over."""
        if self.failure is not None or self._next >= len(self.targets):
            return None
        self.budget = self.wait.probe_budget()
        if self.budget <= 0:
            self.failure = "no time left to probe"
            return None
        self._next += 1
        return self.targets[self._next - 1]

    def record(self, failure: str | None) -> None:
        self.failure = failure
        if failure is None:
            self.wait.probe_passed.add(self.targets[self._next - 1].inode)

    def result(self) -> list[Listener] | None:
        """The selection if every listener passed, else None (the wait retries later)."""
        return self.wait.probe_result(self.selected, self.failure, self.budget)
