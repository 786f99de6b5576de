"""Find this process's own listening sockets, and wait until the app's ones accept connections.

How readiness is detected
-------------------------
The kernel is asked, never guessed at: the process's file descriptors are walked and
``getsockopt(SO_ACCEPTCONN)`` tells whether a stream socket is listening, ``getsockname``
where. The host-wide ``/proc/net/*`` tables are never read, so the cost depends only on
this process's own descriptors (see ``benchmarks/listener_bench.py``).

The default selection rule and every other part of waiting are :mod:`sdready._listen._wait`'s.

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

import os
import time
from stat import S_ISSOCK
from threading import Lock as allocate_lock
from typing import TYPE_CHECKING

from ._expect import Expect
from ._probe import DEFAULT_PROBE_TIMEOUT
from ._sockets import (
    Address,
    ConnectAddress,
    Listener,
    inspect_socket,
    listener,
    same_inode,
)
from ._wait import (
    ListenerSnapshot,
    ListenerSource,
    ListenTimeoutError,
    _Wait,
    validate_expect,
    validate_wait_options,
)

if TYPE_CHECKING:
    import select
    import threading
    from collections.abc import Iterator

__all__ = [
    "ConnectAddress",
    "Expect",
    "ListenTimeoutError",
    "Listener",
    "ListenerSnapshot",
    "ListenerSource",
    "async_wait_until_listening",
    "listening_sockets",
    "own_listeners",
    "snapshot_listeners",
    "validate_expect",
    "validate_wait_options",
    "wait_until_listening",
]

# select's values on Linux; the module itself (a shared library) loads only for a walk of
# this process's descriptors, which sdready's commands never need.
_POLLOUT = 4
_POLLNVAL = 32
_FD_DIRS = ("/proc/thread-self/fd", "/proc/self/fd")
_UNSUPPORTED = "listener discovery needs Linux's /proc/thread-self/fd or /proc/self/fd"


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


def wait_until_listening(  # noqa: PLR0913  (public API: keyword-only options, documented)
    timeout: float | None,
    expect: Expect | None = None,
    *,
    baseline: ListenerSnapshot | None = None,
    probe: str | None = None,
    probe_timeout: float = DEFAULT_PROBE_TIMEOUT,
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
    waiter = _own_wait(timeout, expect, baseline, probe, probe_timeout, wait_started)
    return waiter.run_blocking(stop) or []


async def async_wait_until_listening(  # noqa: PLR0913  (public API: keyword-only options, documented)
    timeout: float | None,
    expect: Expect | None = None,
    *,
    baseline: ListenerSnapshot | None = None,
    probe: str | None = None,
    probe_timeout: float = DEFAULT_PROBE_TIMEOUT,
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
    waiter = _own_wait(timeout, expect, baseline, probe, probe_timeout, wait_started)
    return await waiter.run_async()


def _own_wait(  # noqa: PLR0913, PLR0917  (the public waiters' options, passed through)
    timeout: float | None,
    expect: Expect | None,
    baseline: ListenerSnapshot | None,
    probe: str | None,
    probe_timeout: float,
    wait_started: ListenerSnapshot | None,
) -> _Wait:
    return _Wait(
        timeout,
        expect,
        baseline,
        probe,
        probe_timeout,
        wait_started=wait_started,
        source=own_listeners(),
    )


def own_listeners() -> ListenerSource:
    """This process's listening sockets as a wait's source, with a walker (and caches) of
    its own: a wait never contends for the shared one."""
    return _Walker().walk


# --- the walk ----------------------------------------------------------------------------


class _SocketFacts:
    """What one socket inode cannot change: its family, and its address once it listens."""

    __slots__ = ("address", "family")

    def __init__(self, family: int | None, address: Address | None = None) -> None:
        self.family = family  # None: cannot ever listen (datagram, another family)
        self.address = address


class _Walker:
    """Walks the fd table; keeps the poll set and per-inode socket facts between walks.

    Not thread-safe: one walker per wait, and the shared one behind ``lock``.
    """

    def __init__(self) -> None:
        self.lock = allocate_lock()
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
            import select

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
        if not S_ISSOCK(info.st_mode):
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
