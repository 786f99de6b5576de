"""The way to the service manager: the socket, and sending over it in order.

:class:`Transport` moves bytes: one connected, non-blocking datagram socket (like
sdnotify: a send then skips the path lookup, and POLLOUT reflects the receiver's queue); a
vsock manager without datagrams gets a seqpacket connection per message, as libsystemd
does. It reports errors and decides nothing.

:class:`Delivery` keeps the order, between the notifier (what to send, what a failure
means: :mod:`._notifier`) and the transport: one lock, so a send and a retry never
interleave; the fast path for STATUS and WATCHDOG while nothing waits; one bounded wait for
room, then failing fast ("congested") until a send gets through again; state changes that
met a full queue handed to the background retry (:mod:`._retry`), with every later message
queued behind them, so that nothing overtakes a READY or a STOPPING.

One module for both: ``sdready notify`` loads every module on its path, and a module costs
more start-up than these two classes' code.
"""

import errno as _errno
import os
import sys
import time

from .._cstd import TYPE_CHECKING, allocate_lock, socket, weakref
from ._protocol import Message, NotifyAddress, is_full

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import ClassVar, Protocol

    from ._retry import RetryQueue

    class Limits(Protocol):
        """The notifier's bounds (:class:`~sdready.Notifier`'s class attributes)."""

        RETRY_DEADLINE: ClassVar[float]
        LOSSY_DEADLINE: ClassVar[float]
        FULL_QUEUE_WAIT: ClassVar[float]
        MAX_PENDING: ClassVar[int]


__all__ = ["Delivery", "Transport"]

_PEER_GONE = frozenset(
    {_errno.ECONNREFUSED, _errno.ENOTCONN, _errno.ECONNRESET, _errno.EPIPE, _errno.EDESTADDRREQ}
)
_NO_VSOCK_DGRAM = frozenset(
    {_errno.ENODEV, _errno.EOPNOTSUPP, _errno.ESOCKTNOSUPPORT, _errno.EPROTONOSUPPORT}
)


def _nothing() -> None:
    pass


class Transport:
    """The connection to one notify address. Not locked: the notifier's lock guards it.

    *changed* is called when the socket is connected or dropped (the notifier's fast path);
    *warn_once* ``(key, msg, *args, level=)`` reports a problem once.
    """

    def __init__(
        self,
        address: NotifyAddress,
        changed: "Callable[[], None]",
        warn_once: "Callable[..., None]",
    ) -> None:
        self.address = address
        self.sock: socket.socket | None = None
        #: Closes the socket; a notifier dropped without close() calls it, so as not to
        #: leak the socket (or warn about it).
        self.closer: Callable[[], object] = _nothing
        self._changed = changed
        self._warn_once = warn_once

    def discard(self) -> None:
        self.sock = None
        self.closer()
        self.closer = _nothing
        self._changed()

    def attempt(self, message: Message, stream_timeout: float) -> OSError | None:
        """One non-blocking send; return the error instead of raising it."""
        address = self.address
        if address.type not in (socket.SOCK_DGRAM, None):
            return self._send_connected(message, address, stream_timeout)
        fresh = self.sock is None
        while True:
            try:
                sock = self.sock if self.sock is not None else self._open(address)
                if not message.fds and message.pid is None:
                    sock.send(message.data)
                else:
                    self._sendmsg(sock, message)
            except OSError as exc:
                if address.type is None and exc.errno in _NO_VSOCK_DGRAM:
                    # libsystemd: hypervisors without vsock datagrams get seqpacket.
                    self.address = address.with_type(socket.SOCK_SEQPACKET)
                    return self._send_connected(message, self.address, stream_timeout)
                if is_full(exc):
                    return exc
                self.discard()
                if fresh or exc.errno not in _PEER_GONE:
                    return exc
                # The manager was replaced (a new socket at the same path): reconnect once.
                # A daemon-reexec keeps the old socket, so this is rare.
                fresh = True
                continue
            return None

    def wait_for_room(self, message: Message, deadline: float) -> OSError | None:
        """Send *message* once the receiver's queue has room, until *deadline*.

        On a connected datagram socket POLLOUT means the receiver's queue has room again:
        the kernel wakes us, no sleeping and guessing.
        """
        import select  # only a full queue waits: `sdready notify` does not load it

        poller = select.poll()
        registered: socket.socket | None = None
        while True:
            remaining = deadline - time.monotonic()
            sock = self.sock
            if remaining <= 0 or sock is None:
                return OSError(_errno.EAGAIN, "notify queue is full")
            if sock is not registered:
                if registered is not None:
                    poller.unregister(registered)
                poller.register(sock, select.POLLOUT)
                registered = sock
            poller.poll(max(1, -int(remaining * -1000)))  # rounded up
            error = self.attempt(message, remaining)
            if error is None or not is_full(error):
                return error

    def _open(self, address: NotifyAddress) -> socket.socket:
        flags = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
        sock = socket.socket(address.family, flags)
        try:
            sock.connect(address.sockaddr)
        except OSError:
            sock.close()
            raise
        self.closer = sock.close
        self.sock = sock
        self._changed()
        return sock

    def _sendmsg(self, sock: socket.socket, message: Message) -> None:
        ancillary = []
        if message.fds:
            fds = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in message.fds)
            ancillary.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, fds))
        credentials = getattr(socket, "SCM_CREDENTIALS", None)
        if message.pid is not None and credentials is not None:
            ucred = b"".join(  # struct ucred: pid_t pid, uid_t uid, gid_t gid
                value.to_bytes(4, sys.byteorder, signed=signed)
                for value, signed in (
                    (message.pid, True),
                    (os.getuid(), False),
                    (os.getgid(), False),
                )
            )
            try:
                sock.sendmsg([message.data], [*ancillary, (socket.SOL_SOCKET, credentials, ucred)])
                return
            except OSError as exc:
                if exc.errno not in (_errno.EPERM, _errno.ESRCH, _errno.EINVAL):
                    raise
                from .._log import DEBUG  # a rare path: notify's start-up does not load the log

                self._warn_once(
                    ("credentials", exc.errno),
                    "the kernel refused to send credentials of pid %d (%s); sending as pid %d",
                    message.pid,
                    exc.strerror,
                    os.getpid(),
                    level=DEBUG,
                )
        sock.sendmsg([message.data], ancillary)

    def _send_connected(
        self, message: Message, address: NotifyAddress, timeout: float
    ) -> OSError | None:
        assert address.type is not None
        try:
            sock = socket.socket(address.family, address.type | socket.SOCK_CLOEXEC)
            try:
                sock.settimeout(timeout)
                sock.connect(address.sockaddr)
                sock.sendall(message.data)
            finally:
                sock.close()
        except OSError as exc:
            return exc
        return None


class Delivery:
    """Delivers a notifier's messages to one address, in order (see the module docstring).

    Each call gets the notifier's *limits*; errors are returned, for the notifier's policy
    to report. *warn_once* ``(key, msg, *args, level=)`` reports a problem once.
    """

    def __init__(
        self, address: NotifyAddress, target: str, warn_once: "Callable[..., None]"
    ) -> None:
        self.lock = allocate_lock()
        self.transport = _transport_for(self, address, warn_once)
        #: ``sock.send`` while STATUS and WATCHDOG may take it directly, else None.
        self.fast_send: Callable[[bytes], int] | None = None
        self._target = target
        self._warn_once = warn_once
        self._retry: RetryQueue | None = None  # made when a message first has to wait
        self._congested = False

    def submit(self, message: Message, limits: "Limits") -> OSError | None:
        """Send *message*, or queue it (None); the error of a message that could not go."""
        with self.lock:
            if self._waiting():  # a state change is waiting: nothing may overtake it
                self._enqueue(message, limits)
                return None
            error = self.transport.attempt(message, limits.FULL_QUEUE_WAIT)
            if error is None:
                self._congested = False
                self._update_fast_path()
                return None
            if is_full(error):
                if not self._congested:
                    deadline = time.monotonic() + limits.FULL_QUEUE_WAIT
                    error = self.transport.wait_for_room(message, deadline)
                    if error is None:
                        self._update_fast_path()
                        return None
                    self._congested = True  # fail fast until a send succeeds again
                    self._update_fast_path()
                if message.state:
                    self._enqueue(message, limits)
                    return None
        return error

    def send_now(self, message: Message, deadline: float, limits: "Limits") -> OSError | None:
        """Send bypassing the retry queue, waiting for room until *deadline* (the barrier)."""
        with self.lock:
            error = self.transport.attempt(message, limits.FULL_QUEUE_WAIT)
            if error is not None and is_full(error):
                error = self.transport.wait_for_room(message, deadline)
        return error

    def flush(self, timeout: float) -> bool:
        """Wait up to *timeout* seconds for retried state changes to be delivered."""
        return True if self._retry is None else self._retry.flush(timeout)

    def close(self) -> None:
        """Close the socket (the next send reopens it)."""
        with self.lock:
            self.transport.discard()

    def after_fork(self) -> None:
        """Start afresh in a forked child: the parent's lock may have been held by another
        thread at fork time, and its waiting messages are the parent's to deliver."""
        self.lock = allocate_lock()
        self._retry = None
        self._congested = False
        self.transport.discard()

    def _update_fast_path(self) -> None:
        # The hot path (STATUS, WATCHDOG) is one check of this cached bound method, set
        # only while the socket is open, nothing is queued and the queue is not congested.
        # A call racing a concurrent state change has no defined order anyway; a socket
        # closed under it raises, and the caller then takes the full path.
        sock = self.transport.sock
        usable = sock is not None and not self._waiting() and not self._congested
        self.fast_send = sock.send if usable and sock is not None else None

    def _waiting(self) -> bool:
        """Whether messages wait in the retry queue (nothing may overtake them)."""
        return self._retry is not None and bool(self._retry.messages)

    def _enqueue(self, message: Message, limits: "Limits") -> None:
        # Called with the lock held.
        wait = limits.RETRY_DEADLINE if message.state else limits.LOSSY_DEADLINE
        self.fast_send = None
        if self._retry is None:
            from ._retry import RetryQueue  # only a full queue needs it (and its thread)

            self._retry = RetryQueue(self.lock, self._target)
        stream_timeout = limits.FULL_QUEUE_WAIT
        self._retry.add(
            message,
            time.monotonic() + wait,
            limit=limits.MAX_PENDING,
            attempt=lambda queued: self.transport.attempt(queued, stream_timeout),
            idle=self._retry_idle,
        )
        if message.state:
            self._warn_once(
                ("retrying",),
                "the notify queue of %s is full; delivering %s (and what follows) "
                "in order from a background thread",
                self._target,
                message.describe(),
            )

    def _retry_idle(self, delivered: bool) -> None:
        # Called with the lock held, once the retry queue is empty again.
        if delivered:
            self._congested = False
        self._update_fast_path()


def _transport_for(
    delivery: Delivery, address: NotifyAddress, warn_once: "Callable[..., None]"
) -> Transport:
    # Weakly: a notifier dropped without close() is freed (and its socket closed) at once,
    # not when a cycle collection finds it.
    ref = weakref.ref(delivery)

    def changed() -> None:
        alive = ref()
        if alive is not None:
            alive._update_fast_path()

    return Transport(address, changed, warn_once)
