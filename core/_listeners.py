"""Find this process's own listening sockets, and wait until the app's ones accept connections.

How readiness is detected
-------------------------
The kernel is asked, never guessed at: the process's file descriptors are walked and
``getsockopt(SO_ACCEPTCONN)`` tells whether a stream socket is listening, ``getsockname``
where. The host-wide ``/proc/net/*`` tables are never read, so the cost depends only on
this process's own descriptors (see ``benchmarks/listener_bench.py``).

Default selection, when no ``expect`` is given (``B`` is the baseline snapshot, taken by
plugins before the app's startup code runs; without one, ``B`` is what listens when
waiting begins):

1. Listeners that are in ``B`` and still listen are the server's (inherited from systemd,
   ``--fd``, a pre-fork master): they are selected at once.
2. Otherwise, listeners that appeared between ``B`` and the start of the wait were opened by
   the app's own startup code (a metrics or debug port): they are auxiliary and ignored.
3. The first poll that sees any other listener selects every such listener it sees.

An ``expect`` replaces the rule: every entry must match a listener, wherever it came from.

Why the walk is cheap
---------------------
A listening socket is never writable, so one ``poll(POLLOUT)`` over every descriptor,
with zero timeout, rejects regular files, pipes' write ends, connected and datagram
sockets and unlistened TCP sockets at once; only the few descriptors it does not
reject are looked at one by one (``fstat``, then ``getsockopt``). What cannot change is
kept between walks: the poll set, and per socket inode its family and, once it listens,
its address. On Linux 6.2+ ``stat`` of the fd directory counts open descriptors, so the
directory is listed again only when the descriptor table changed.
"""

from __future__ import annotations

import logging
import os
import select
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from ._exceptions import NotifyError
from ._expect import parse_expectations
from ._options import Expect
from ._probe import Probe, parse_probe, probe_async, probe_blocking
from ._sockets import (
    Address,
    ConnectAddress,
    Listener,
    inspect_socket,
    listener,
    same_inode,
)

__all__ = [
    "ConnectAddress",
    "Expect",
    "ListenTimeoutError",
    "Listener",
    "ListenerSnapshot",
    "ListenerSource",
    "async_wait_until_listening",
    "listening_sockets",
    "snapshot_listeners",
    "validate_expect",
    "validate_wait_options",
    "wait_until_listening",
]

logger = logging.getLogger("sdready")

_POLLOUT: int = getattr(select, "POLLOUT", 4)
_POLLNVAL: int = getattr(select, "POLLNVAL", 32)
_FD_DIRS = ("/proc/thread-self/fd", "/proc/self/fd")
_UNSUPPORTED = "listener discovery needs Linux's /proc/thread-self/fd or /proc/self/fd"

# Polling schedule of the waiters: a burst while the listener most likely appears (uvicorn
# listens right after lifespan startup), then doubling up to a cap that bounds latency.
_FAST_PHASE = 0.002
_FAST_INTERVAL = 0.0001
_MAX_INTERVAL = 0.005
# With thousands of descriptors a walk costs ~1 ms: never spend more than ~5% of a core.
_MAX_DUTY = 0.05
_PROBE_RETRY_MIN = 0.01
_PROBE_RETRY_MAX = 0.1


def listening_sockets() -> list[Listener]:
    """Return the listening sockets of this process, one per socket, ordered by fd.

    Only stream sockets (TCP over IPv4 or IPv6, unix stream) in the listening state count;
    bound-but-not-listening, connected, accepted, UDP and unix datagram sockets never do.
    A socket reachable through several descriptors (``dup``) is reported once, with its
    lowest fd. Descriptors opened or closed by other threads during the walk are either
    seen or not, but never crash the walk or get another socket's address.

    Raises :class:`NotImplementedError` where ``/proc/thread-self/fd`` and
    ``/proc/self/fd`` are both missing (not Linux, or /proc not mounted).

    Example::

        >>> [str(listener) for listener in sdready.listening_sockets()]
        ['0.0.0.0:8000', '/run/app/metrics.sock']
    """
    walker = _shared_walker
    if not walker.lock.acquire(blocking=False):
        # Another thread is walking with the shared caches; a fresh walker is correct,
        # merely slower, and cannot deadlock.
        return _Walker().walk()
    try:
        return walker.walk()
    finally:
        walker.lock.release()


@dataclass(frozen=True, slots=True)
class ListenerSnapshot:
    """The listeners that existed at one moment, to tell the server's sockets from the app's.

    Plugins take one with :func:`snapshot_listeners` *before* the app's startup code runs
    and pass it as ``baseline=`` to :func:`wait_until_listening`: listeners in it are the
    server's (inherited or pre-forked), listeners opened after it but before the wait
    began are the app's auxiliary ones. ``listener in snapshot`` compares sockets, not
    descriptor numbers.
    """

    listeners: tuple[Listener, ...]
    taken_at: float  # time.monotonic()
    #: Stream sockets that existed then, neither listening nor connected: a server's socket
    #: bound before the app started (uvicorn ``--workers`` binds in the parent, and a worker
    #: listens only after its lifespan). They count as the server's once they listen.
    pending: frozenset[int] = frozenset()
    _inodes: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_inodes", frozenset(item.inode for item in self.listeners))

    def __contains__(self, item: object) -> bool:
        return isinstance(item, Listener) and item.inode in self._inodes

    def __iter__(self) -> Iterator[Listener]:
        return iter(self.listeners)

    def __len__(self) -> int:
        return len(self.listeners)


def snapshot_listeners() -> ListenerSnapshot:
    """Record the listeners that exist now; see :class:`ListenerSnapshot`.

    Raises like :func:`listening_sockets`.

    Example::

        baseline = sdready.snapshot_listeners()  # before the app's startup code
        run_app_startup()
        sdready.wait_until_listening(30, baseline=baseline)
    """
    return ListenerSnapshot(
        tuple(listening_sockets()), time.monotonic(), frozenset(_unlistened_stream_sockets())
    )


def _unlistened_stream_sockets() -> Iterator[int]:
    """Inodes of our TCP/unix stream sockets that neither listen nor are connected.

    Taken once per snapshot, so a plain fstat walk is fine here (the poll trick of the
    waiters rejects exactly these sockets, so it cannot find them).
    """
    for name in _Walker()._listdir():
        fd = int(name)
        try:
            inode = os.fstat(fd).st_ino
        except OSError:
            continue
        state = inspect_socket(fd, peer=True)
        if (
            state is not None
            and state.family is not None
            and not (state.listening or state.connected)
            and same_inode(fd, inode)
        ):
            yield inode


class ListenTimeoutError(NotifyError, TimeoutError):
    """The expected listening sockets did not appear, or did not pass the probe, in time.

    ``found`` holds the listeners present at the end, ``missing`` describes what was
    expected but not found, ``probe_failure`` says why the last probe failed (or is None).
    """

    def __init__(
        self,
        message: str,
        *,
        found: Sequence[Listener] = (),
        missing: Sequence[str] = (),
        probe_failure: str | None = None,
    ) -> None:
        super().__init__(message)
        self.found = tuple(found)
        self.missing = tuple(missing)
        self.probe_failure = probe_failure


def validate_wait_options(expect: Expect | None = None, probe: str | None = None) -> None:
    """Raise :class:`ValueError` now for an ``expect`` or ``probe`` the waiters would refuse."""
    if expect is not None:
        validate_expect(expect)
    parse_probe(probe)


def validate_expect(expect: Expect) -> None:
    """Raise :class:`ValueError` now for an ``expect`` the waiters would refuse."""
    parse_expectations(expect)


def wait_until_listening(  # noqa: PLR0913  (public API: keyword-only options, documented)
    timeout: float | None,
    expect: Expect | None = None,
    *,
    baseline: ListenerSnapshot | None = None,
    probe: str | None = None,
    probe_timeout: float = 1.0,
    stop: threading.Event | None = None,
    wait_started: ListenerSnapshot | None = None,
) -> list[Listener]:
    """Block until the app's listening sockets accept connections; return them.

    Without ``expect`` the selection follows the module's rule: listeners of ``baseline``
    (default: those listening when the call starts) that still listen are selected at
    once; failing that, listeners that appeared after ``baseline`` but before the call are
    the app's auxiliary ones, and the first poll that sees any other listener selects it.
    ``expect`` instead names what must be there, all of it: a port (``8000``), a
    ``"host:port"`` (``"127.0.0.1:8000"``, ``"[::1]:8000"``, ``"*:8000"`` or ``":8000"`` for
    any address, ``"localhost:8000"`` for 127.0.0.1 or ::1), a unix path (``"/run/a.sock"``)
    or abstract name (``"@name"``), a predicate on :class:`Listener`, or an iterable of
    those. Hosts match the bound address exactly: a ``0.0.0.0`` bind is ``"0.0.0.0:8000"``.

    ``probe="connect"`` also opens and closes one connection to each selected listener;
    ``probe="http:/path"`` sends ``GET /path`` and wants a status below 500. A failed probe
    is retried until ``timeout``; each attempt is bounded by ``probe_timeout``.

    ``baseline`` also covers sockets that existed then without listening yet (a server
    that binds before the app starts and listens after): they are the server's too.
    ``wait_started`` is a snapshot taken where the wait logically begins, when the call
    itself may come later (from a thread or task that starts after the server could
    listen); by default the call's first poll is that moment.

    Polls immediately, every 0.1 ms for the first 2 ms, then with a doubling interval capped
    at 5 ms. ``timeout=None`` waits forever. When ``stop`` is set the wait ends early and
    returns an empty list (a successful wait never returns one).

    Raises :class:`ListenTimeoutError` (a :class:`TimeoutError`) naming what was found and
    what was expected but missing; :class:`ValueError` at once for a malformed ``expect``
    or ``probe``; :class:`NotImplementedError` without /proc.

    Example::

        baseline = sdready.snapshot_listeners()
        app = create_app()  # may open a metrics port: ignored, it is not in the baseline
        threading.Thread(target=serve, args=(app,)).start()
        listeners = sdready.wait_until_listening(30, baseline=baseline, probe="http:/health")
        sdready.ready(f"listening on {', '.join(map(str, listeners))}")
    """
    waiter = _Wait(timeout, expect, baseline, probe, probe_timeout, wait_started=wait_started)
    delay = 0.0
    while True:
        if delay:
            if stop is not None:
                if stop.wait(delay):
                    return []
            else:
                time.sleep(delay)
        elif stop is not None and stop.is_set():
            return []
        selected = waiter.step_blocking()
        if selected is not None:
            return selected
        delay = waiter.next_delay()


async def async_wait_until_listening(  # noqa: PLR0913  (public API: keyword-only options, documented)
    timeout: float | None,
    expect: Expect | None = None,
    *,
    baseline: ListenerSnapshot | None = None,
    probe: str | None = None,
    probe_timeout: float = 1.0,
    wait_started: ListenerSnapshot | None = None,
) -> list[Listener]:
    """Await the app's listening sockets without blocking the event loop; return them.

    Same selection, probes and errors as :func:`wait_until_listening`; cancel the task to
    stop waiting. The walk itself runs on the loop: it costs ~10-50 µs for a typical
    process (about 0.3 ms with 1,000 descriptors), far less than a hop to a thread would.
    For the first 2 ms it polls every 0.1 ms while yielding to the loop in between
    (``asyncio.sleep(0)``); afterwards it sleeps with :func:`asyncio.sleep`, whose timers
    have a 1 ms granularity.

    Example::

        listeners = await sdready.async_wait_until_listening(30, expect=8000, probe="connect")
    """
    import asyncio  # never at module level: `import sdready` must not import asyncio

    waiter = _Wait(timeout, expect, baseline, probe, probe_timeout, wait_started=wait_started)
    delay = 0.0
    while True:
        if delay and waiter.in_fast_phase():
            # asyncio's timers have a 1 ms granularity: for the first 2 ms, yield to the loop
            # until the next poll is due instead, so a listener opened by another task right
            # after startup (uvicorn) is seen within ~0.1 ms.
            due = time.monotonic() + delay
            while time.monotonic() < due:
                await asyncio.sleep(0)
        elif delay:
            await asyncio.sleep(delay)
        selected = waiter.poll()
        if selected is not None and waiter.probe is not None:
            probes = waiter.probe_round(selected)
            while (target := probes.next()) is not None:
                probes.record(await probe_async(target, waiter.probe, probes.budget))
            selected = probes.result()
        if selected is not None:
            return selected
        delay = waiter.next_delay()


# --- waiting ---------------------------------------------------------------------------

#: Where a wait looks for listeners: this process's own descriptors (the default),
#: another process tree (``sdready exec``), or a network namespace (``wait-listen``).
#: A source may carry ``max_interval``, the longest spacing between polls its cost allows
#: (seconds, or None), to replace the wait's cap (``_MAX_INTERVAL``): a cheap source polled
#: often makes READY follow ``listen()`` closely. The duty cap (``_MAX_DUTY``) still holds.
ListenerSource = Callable[[], list[Listener]]


class _Wait:
    """The state of one wait, shared by the blocking and the asyncio loops."""

    def __init__(  # noqa: PLR0913  (the public waiters' options, passed through)
        self,
        timeout: float | None,
        expect: Expect | None,
        baseline: ListenerSnapshot | None,
        probe: str | None,
        probe_timeout: float,
        *,
        wait_started: ListenerSnapshot | None = None,
        source: ListenerSource | None = None,
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
        # Its own walker and caches: a wait never contends for the shared one.
        self.source: ListenerSource = _Walker().walk if source is None else source
        self.polls = 0
        self.last_poll = self.started
        self.interval = _FAST_INTERVAL
        self.walk_costs: list[float] = []
        self.current: list[Listener] = []
        self.probe_failure: str | None = None
        self.probe_delay = 0.0  # for the next sleep only
        self.probe_backoff = 0.0
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

    def probe_round(self, selected: list[Listener]) -> _ProbeRound:
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
            spacing = max(spacing, min(self.walk_costs, default=0.0) / _MAX_DUTY)
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
            missing = ["a listening socket not opened by the app's startup code"]
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
    """Probing every selected listener in turn, within the wait's deadline; shared by the
    blocking and the asyncio drivers, which only run the probe itself."""

    def __init__(self, wait: _Wait, selected: list[Listener]) -> None:
        self.wait = wait
        self.selected = selected
        self.budget = wait.probe_budget()
        self.failure: str | None = None
        self._next = 0

    def next(self) -> Listener | None:
        """The next listener to probe (``budget`` is set for it), or None: the round is over."""
        if self.failure is not None or self._next >= len(self.selected):
            return None
        self.budget = self.wait.probe_budget()
        if self.budget <= 0:
            self.failure = "no time left to probe"
            return None
        self._next += 1
        return self.selected[self._next - 1]

    def record(self, failure: str | None) -> None:
        self.failure = failure

    def result(self) -> list[Listener] | None:
        """The selection if every listener passed, else None (the wait retries later)."""
        return self.wait.probe_result(self.selected, self.failure, self.budget)


# --- the walk ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SocketFacts:
    """What one socket inode cannot change: its family, and its address once it listens."""

    family: int | None  # None: cannot ever listen (datagram, another family)
    address: Address | None = None


class _Walker:
    """Walks the fd table; keeps the poll set and per-inode socket facts between walks.

    Not thread-safe: one walker per wait, and the shared one behind ``lock``.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._poll: select.poll | None = None
        self._fds: set[int] = set()
        self._facts: dict[int, _SocketFacts] = {}
        self._fd_dir = ""

    def walk(self) -> list[Listener]:
        candidates = self._candidates()
        listeners: list[Listener] = []
        inodes: set[int] = set()
        seen: dict[int, _SocketFacts] = {}
        for fd in sorted(candidates):  # lowest fd first: it represents a dup'ed socket
            listener = self._inspect(fd, seen)
            if listener is not None and listener.inode not in inodes:
                inodes.add(listener.inode)
                listeners.append(listener)
        self._facts = seen  # forget sockets that were closed (or stopped being candidates)
        return listeners

    def _candidates(self) -> set[int]:
        """Descriptors that may be listening sockets: those poll(POLLOUT) does not rule out."""
        if self._poll is None:
            if not hasattr(select, "poll"):  # Windows
                raise NotImplementedError(_UNSUPPORTED)
            self._poll = select.poll()
        if self._fds:
            events = self._poll.poll(0)
            if not any(revents & _POLLNVAL for _, revents in events) and self._open_count() == len(
                self._fds
            ):
                return self._fds.difference(fd for fd, _ in events)
        self._resync()
        events = self._poll.poll(0)
        closed = [fd for fd, revents in events if revents & _POLLNVAL]
        for fd in closed:  # listdir's own descriptor, or closed meanwhile
            self._poll.unregister(fd)
            self._fds.discard(fd)
        return self._fds.difference(fd for fd, _ in events)

    def _resync(self) -> None:
        assert self._poll is not None
        fds = {int(name) for name in self._listdir()}
        for fd in fds - self._fds:
            # Only POLLOUT is asked for: a listening socket never reports it, and asking for
            # POLLIN could make some devices start reading (V4L2 read emulation).
            self._poll.register(fd, _POLLOUT)
        for fd in self._fds - fds:
            self._poll.unregister(fd)
        self._fds = fds

    def _listdir(self) -> list[str]:
        if self._fd_dir:
            return os.listdir(self._fd_dir)
        for path in _FD_DIRS:  # thread-self: /proc/self/fd is empty once the main thread exits
            try:
                names = os.listdir(path)
            except FileNotFoundError:
                continue
            self._fd_dir = path
            return names
        raise NotImplementedError(_UNSUPPORTED)

    def _open_count(self) -> int:
        # Linux 6.2+ reports the number of open descriptors as the directory's size; older
        # kernels report 0, which never matches, so the directory is simply listed again.
        try:
            return os.stat(self._fd_dir).st_size
        except OSError:
            return -1

    def _inspect(self, fd: int, seen: dict[int, _SocketFacts]) -> Listener | None:
        try:
            info = os.fstat(fd)
        except OSError:  # closed since the poll
            return None
        if not stat.S_ISSOCK(info.st_mode):
            return None
        inode = info.st_ino
        facts = self._facts.get(inode) or seen.get(inode)
        if facts is not None and facts.family is None:  # can never listen: ask nothing
            seen[inode] = facts
            return None
        state = inspect_socket(
            fd,
            None if facts is None else facts.family,
            address=None if facts is None else facts.address,
        )
        # Cache nothing when the descriptor was reused for another socket meanwhile.
        if state is None or not same_inode(fd, inode):
            return None
        if facts is None or (state.address is not None and facts.address is None):
            facts = _SocketFacts(state.family, state.address)
        seen[inode] = facts
        if state.family is None or state.address is None:
            return None
        return listener(fd, inode, state.family, state.address)


_shared_walker = _Walker()


def _reset_after_fork() -> None:
    # A fork while another thread held the shared walker's lock would leave it held forever.
    global _shared_walker  # noqa: PLW0603  (the shared walker is per process: a fork replaces it)
    _shared_walker = _Walker()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
