"""Ordered delivery to the manager: at once while its queue has room, in order when it has not.

Between the notifier (what to send, what a failure means) and the transport (bytes on a
socket): one lock, so a send and a retry never interleave; the fast path for STATUS and
WATCHDOG while nothing waits; one bounded wait for room, then failing fast ("congested")
until a send gets through again; state changes that met a full queue handed to the
background retry (:mod:`._retry`), with every later message queued behind them, so that
nothing overtakes a READY or a STOPPING.
"""

from __future__ import annotations

import time

from ._cstd import TYPE_CHECKING, allocate_lock, weakref
from ._protocol import Message, NotifyAddress, is_full
from ._transport import Transport

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


__all__ = ["Delivery"]


class Delivery:
    """Delivers a notifier's messages to one address, in order (see the module docstring).

    Each call gets the notifier's *limits*; errors are returned, for the notifier's policy
    to report. *warn_once* ``(key, msg, *args, level=)`` reports a problem once.
    """

    def __init__(self, address: NotifyAddress, target: str, warn_once: Callable[..., None]) -> None:
        self.lock = allocate_lock()
        self.transport = _transport_for(self, address, warn_once)
        #: ``sock.send`` while STATUS and WATCHDOG may take it directly, else None.
        self.fast_send: Callable[[bytes], int] | None = None
        self._target = target
        self._warn_once = warn_once
        self._retry: RetryQueue | None = None  # made when a message first has to wait
        self._congested = False

    def submit(self, message: Message, limits: Limits) -> OSError | None:
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

    def send_now(self, message: Message, deadline: float, limits: Limits) -> OSError | None:
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

    def _enqueue(self, message: Message, limits: Limits) -> None:
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
    delivery: Delivery, address: NotifyAddress, warn_once: Callable[..., None]
) -> Transport:
    # Weakly: a notifier dropped without close() is freed (and its socket closed) at once,
    # not when a cycle collection finds it.
    ref = weakref.ref(delivery)

    def changed() -> None:
        alive = ref()
        if alive is not None:
            alive._update_fast_path()

    return Transport(address, changed, warn_once)
