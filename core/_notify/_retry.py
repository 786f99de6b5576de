"""In-order redelivery of notify messages that met a full queue, off the caller's path.

A notifier hands a message here when the manager's receive queue is full. One daemon
thread per notifier retries the oldest message until it goes out, gives up on it at its
deadline, and ends as soon as nothing waits. While anything waits, the notifier queues
every later message behind it too, so nothing overtakes a READY or a STOPPING. Daemon
threads die with the interpreter, so at exit waiting messages get a last, bounded chance.
"""

from __future__ import annotations

import time

from .._cstd import TYPE_CHECKING, deque
from .._log import DEBUG, ERROR, logger
from ._protocol import Message, is_full

# threading and weakref are imported when a message first has to wait: a notifier that
# never meets a full queue (`sdready notify`, most services) never loads them.
if TYPE_CHECKING:
    import threading
    import weakref
    from collections.abc import Callable

__all__ = ["RetryQueue"]


class RetryQueue:
    """Messages waiting for room in the manager's queue, delivered in order by one thread.

    :param lock: the notifier's send lock. :meth:`add` is called with it held and the
        thread takes it for each attempt, so a send and a retry never interleave.
    :param target: the address, for log lines.
    """

    def __init__(self, lock: threading.Lock, target: str | None) -> None:
        self.messages: deque[tuple[Message, float]] = deque()  # with their deadlines
        self._lock = lock
        self._condition: threading.Condition | None = None
        self._target = target
        self._worker: threading.Thread | None = None

    def add(
        self,
        message: Message,
        deadline: float,
        *,
        limit: int,
        attempt: Callable[[Message], OSError | None],
        idle: Callable[[bool], None],
    ) -> None:
        """Queue *message* until *deadline* (monotonic); past *limit*, drop the oldest lossy one.

        :param attempt: one non-blocking send, returning the error instead of raising it.
        :param idle: called with the lock held once nothing waits, with whether anything
            was delivered (the notifier then re-enables its fast path).
        """
        self._drained  # noqa: B018  (made here, under the lock, before any thread can need it)
        self.messages.append((message, deadline))
        if len(self.messages) > limit:
            for index, (queued, _) in enumerate(self.messages):
                if not queued.state:
                    del self.messages[index]
                    break
        if self._worker is None:
            import threading

            # Only the running thread holds the callbacks: an idle queue keeps no reference
            # to its notifier, which is then freed (and its socket closed) when dropped.
            self._worker = threading.Thread(
                target=self._drain, args=(attempt, idle), name="sdready-notify-retry", daemon=True
            )
            self._worker.start()
            _register_exit_flush(self)

    def flush(self, timeout: float) -> bool:
        """Wait up to *timeout* seconds until nothing waits; ``False`` if something still does."""
        if not self.messages:  # nothing ever waited, or nothing waits now
            return True
        deadline = time.monotonic() + timeout
        with self._drained:
            while self.messages:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._drained.wait(remaining)
        return True

    @property
    def _drained(self) -> threading.Condition:
        """Notified, with the notifier's lock, once nothing waits."""
        if self._condition is None:
            import threading

            self._condition = threading.Condition(self._lock)
        return self._condition

    def _drain(
        self, attempt: Callable[[Message], OSError | None], idle: Callable[[bool], None]
    ) -> None:
        delay = 0.002
        delivered = False
        while True:
            with self._drained:
                while self.messages:
                    message, deadline = self.messages[0]
                    if time.monotonic() > deadline:
                        self.messages.popleft()
                        self._gave_up(message, "the manager did not read its queue in time")
                        continue
                    error = attempt(message)
                    if error is not None and is_full(error):
                        break
                    self.messages.popleft()
                    if error is None:
                        delivered = True
                        delay = 0.002
                    else:
                        self._gave_up(message, str(error))
                if not self.messages:
                    self._worker = None
                    idle(delivered)
                    self._drained.notify_all()
                    return
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _gave_up(self, message: Message, reason: str) -> None:
        level = ERROR if message.state else DEBUG
        logger.log(
            level, "gave up delivering %s to %s: %s", message.describe(), self._target, reason
        )

    def _working(self) -> bool:
        worker = self._worker
        return worker is not None and worker.is_alive()


# Queues that ever started a thread. A forked child replaces its notifier's queue; the
# parent's copy has no live thread there, and the exit flush passes over it.
_started: weakref.WeakSet[RetryQueue] | None = None


def _register_exit_flush(queue: RetryQueue) -> None:
    global _started  # noqa: PLW0603  (one set and one atexit registration per process)
    if _started is None:
        import atexit
        import weakref

        _started = weakref.WeakSet()
        atexit.register(_flush_at_exit)
    _started.add(queue)


def _flush_at_exit() -> None:
    # Daemon threads die with the interpreter: give queued state changes a last chance.
    deadline = time.monotonic() + 2.0
    for queue in list(_started or ()):
        if queue._working():
            queue.flush(max(0.0, deadline - time.monotonic()))
