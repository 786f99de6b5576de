"""The sd_notify sender: one persistent datagram socket to the manager, no surprises.

What may be sent and how it is encoded is :mod:`._protocol`'s job; this module delivers it.
Policy, in one place:

* No ``NOTIFY_SOCKET``: every call is a silent no-op returning ``False``.
* Environment faults (bad address, missing socket, permission denied, refused, a full
  receiver queue) log one warning per distinct problem and return ``False``; with
  ``strict=True`` they raise :class:`~sdready.NotifyError` instead.
* Programming errors (a malformed field, a message that cannot fit the manager's buffer)
  raise :class:`ValueError` at the call, from :func:`._protocol.encode`.
* State changes (READY, RELOADING, STOPPING, ERRNO, EXIT_STATUS, FDSTORE, ...) are never
  lost to a momentarily full queue: :mod:`._transport` keeps them in order and
  :mod:`._retry` delivers them off the caller's path.
"""

import os
import time

# The C modules where the Python ones would load more (logging, dataclasses and typing are
# not loaded either): `sdready notify` sends in a few ms (benchmarks/cli_startup.py).
from .._cstd import TYPE_CHECKING, allocate_lock, socket, weakref
from .._env import main_pid, notify_socket, oci_container
from ._protocol import (
    NOTIFY_BUFFER_MAX,
    READY_ALONE,
    SCM_MAX_FD,
    WATCHDOG_PING,
    Fields,
    FieldValue,
    Message,
    NotifyAddress,
    encode,
    fd_list,
    is_full,
    is_state,
    ready_apart,
    timeout_usec,
)
from ._transport import Delivery

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import ClassVar

    from .._log import WarnOnce


# The protocol names are re-exported: the CLI and the test kit import them from here.
__all__ = [
    "NOTIFY_BUFFER_MAX",
    "PROGRESS_EXTEND",
    "SCM_MAX_FD",
    "FieldValue",
    "Fields",
    "Notifier",
    "NotifyAddress",
    "encode",
    "notify",
    "ready",
    "reloading",
    "status",
    "stopping",
    "watchdog",
]

#: Seconds a ``progress()`` call keeps the unit's start or stop alive: its one default.
PROGRESS_EXTEND = 30.0

# Every notifier, weakly: a WeakSet's own mechanism, without loading weakref.
_live: "set[weakref.ReferenceType[Notifier]]" = set()


def _after_fork_in_child() -> None:
    for ref in list(_live):
        notifier = ref()
        if notifier is not None:
            notifier._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Notifier:
    """Send sd_notify messages to the service manager.

    ``address`` defaults to ``$NOTIFY_SOCKET``, read once here. Without one, every
    method is a cheap no-op returning ``False``. Each method returns ``True`` when the
    datagram was sent, or, for a state change that met a full queue, handed to the
    in-order background retry; ``False`` when disabled or when sending failed (logged
    once per distinct problem). ``strict=True`` raises :class:`~sdready.NotifyError`
    instead. ``unset_environment=True`` removes ``NOTIFY_SOCKET`` from ``os.environ`` so
    child processes do not inherit it.

    Example::

        notifier = Notifier()
        notifier.status("Loading models…")
        notifier.ready("Serving on :8000")
    """

    #: How long a state change that met a full queue is retried before giving up.
    RETRY_DEADLINE: "ClassVar[float]" = 90.0
    #: How long a STATUS or WATCHDOG stuck behind a pending state change is kept.
    LOSSY_DEADLINE: "ClassVar[float]" = 5.0
    #: The longest a caller waits for room in a full queue before failing fast.
    FULL_QUEUE_WAIT: "ClassVar[float]" = 0.05
    #: Messages waiting for the background retry, at most (oldest STATUS dropped first).
    MAX_PENDING: "ClassVar[int]" = 256

    def __init__(
        self, address: str | None = None, *, strict: bool = False, unset_environment: bool = False
    ) -> None:
        if address is None:
            address = notify_socket()
        if unset_environment:
            os.environ.pop("NOTIFY_SOCKET", None)
        self._raw_address = address
        self._strict = strict
        self._warn_once = _warn_once_lazily()
        self._delivery: Delivery | None = None  # None: disabled
        self._invalid: str | None = None
        if address is not None:
            try:
                parsed = NotifyAddress.parse(address)
            except ValueError as exc:
                if strict:
                    from .._exceptions import NotifyError  # a failure's import: see _failed

                    raise NotifyError(str(exc)) from exc
                self._invalid = str(exc)
            else:
                self._delivery = Delivery(parsed, address, self._warn_once)
        self._exec_pid_checked = False
        #: In an OCI container (podman, runc): READY=1 goes in a datagram of its own.
        self.container = oci_container() if address is not None else None
        _live.add(weakref.ref(self, _live.discard))

    def __repr__(self) -> str:
        return f"<Notifier address={self._raw_address!r} enabled={self.enabled}>"

    def __enter__(self) -> "Notifier":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A notifier dropped without close() must not leak its socket (or warn about it).
        delivery = getattr(self, "_delivery", None)  # None: __init__ raised before it
        if delivery is not None:
            delivery.transport.closer()

    @property
    def enabled(self) -> bool:
        """True when there is a valid notify socket address to send to."""
        return self._delivery is not None

    @property
    def address(self) -> str | None:
        """The notify socket address as given (``None`` when there is none)."""
        return self._raw_address

    # -- the protocol -------------------------------------------------------------------

    def send(self, fields: Fields, *, fds: "Iterable[object]" = (), pid: int | None = None) -> bool:
        """Send one message: a mapping of fields or a preformatted ``"A=1\\nB=2"`` string.

        :param fds: file descriptors (ints or objects with ``fileno()``) passed with
            SCM_RIGHTS, e.g. for ``FDSTORE=1``. At most 253.
        :param pid: send on behalf of another process (sd_pid_notify); if the kernel
            refuses the credentials, the message is sent with our own, as libsystemd does.
        """
        if self._delivery is None:
            return self._disabled()
        data, state = encode(fields)
        fd_numbers = fd_list(fds) if fds else []
        rest = ready_apart(data) if self.container is not None else None
        if rest is None:
            return self._submit(Message(data, state, fd_numbers, pid))
        # READY first and alone, then the rest: both in order through the same queue.
        sent = self._submit(Message(READY_ALONE, True, [], pid))
        return self._submit(Message(rest, is_state(rest), fd_numbers, pid)) and sent

    def ready(self, status: str | None = None) -> bool:
        """Tell the manager start-up (or a reload) finished: ``READY=1``."""
        return self.send(_with_status({"READY": 1}, status))

    def status(self, text: str) -> bool:
        """Set the one-line status shown by ``systemctl status`` (truncated to fit)."""
        fast = self._delivery.fast_send if self._delivery is not None else None
        if fast is not None:
            try:
                # One C-level check: newline and NUL are not printable. Tabs, other control
                # characters, non-str values and errors all take the full path below.
                if text.isprintable():
                    data = b"STATUS=" + text.encode()
                    if len(data) <= 4096:  # NOTIFY_BUFFER_MAX
                        fast(data)
                        return True
            except (AttributeError, OSError, UnicodeError):
                pass
        if self._delivery is None:
            return self._disabled()
        return self.send({"STATUS": text})

    def stopping(self, status: str | None = None) -> bool:
        """Tell the manager the service is shutting down: ``STOPPING=1``."""
        return self.send(_with_status({"STOPPING": 1}, status))

    def reloading(self, status: str | None = None) -> bool:
        """Announce a reload: ``RELOADING=1`` with ``MONOTONIC_USEC`` (Type=notify-reload)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(_with_status({"RELOADING": 1, "MONOTONIC_USEC": usec}, status))

    def watchdog(self) -> bool:
        """Ping the watchdog: ``WATCHDOG=1``. A lost ping is acceptable; it is not retried."""
        fast = self._delivery.fast_send if self._delivery is not None else None
        if fast is not None:
            try:
                fast(WATCHDOG_PING)
                return True
            except OSError:
                pass
        if self._delivery is None:
            return self._disabled()
        return self._submit(Message(WATCHDOG_PING, False, [], None))

    def watchdog_trigger(self) -> bool:
        """Ask the manager to act as if the watchdog expired: ``WATCHDOG=trigger``."""
        return self.send({"WATCHDOG": "trigger"})

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for *seconds* more before the current start/stop/reload times out."""
        return self.send({"EXTEND_TIMEOUT_USEC": timeout_usec(seconds, "extend_timeout")})

    def progress(self, text: str, *, extend: float = PROGRESS_EXTEND) -> bool:
        """Say what the service is doing and that it is getting on with it: ``STATUS=text``
        plus ``EXTEND_TIMEOUT_USEC=`` in one datagram.

        During a start, reload or stop, systemd then waits at least *extend* seconds from
        now (never less than its configured timeout); call it again before that runs out.
        A start that stops calling it is killed by ``TimeoutStartSec=`` as before. Sent
        like ``STATUS``: a full manager queue costs at most :attr:`FULL_QUEUE_WAIT` once,
        and a progress that cannot be sent is dropped, not retried from a thread: delivered
        late it would buy time nobody earned. Raises :class:`ValueError` unless *extend* is
        a positive, finite number of seconds.

        Example::

            for i, shard in enumerate(shards, 1):
                notifier.progress(f"Loading shard {i}/{len(shards)}", extend=60)
                load(shard)
        """
        usec = timeout_usec(extend)
        if self._delivery is None:
            return self._disabled()
        data, _state = encode({"STATUS": text, "EXTEND_TIMEOUT_USEC": usec})
        return self._submit(Message(data, False, [], None))

    def errno(self, code: int) -> bool:
        """Report a failure as an errno value: ``ERRNO=code``."""
        if isinstance(code, bool) or not isinstance(code, int) or code < 0:
            raise ValueError(f"errno must be a non-negative int, got {code!r}")
        return self.send({"ERRNO": code})

    def mainpid(self, pid: int) -> bool:
        """Tell the manager which process is the service's main process: ``MAINPID=pid``."""
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise ValueError(f"mainpid needs a positive pid, got {pid!r}")
        return self.send({"MAINPID": pid})

    def barrier(self, timeout: float = 5.0) -> bool:
        """Wait until the manager has processed every message sent so far (sd_notify_barrier).

        Sends ``BARRIER=1`` with one end of a socket pair and waits for the manager to close
        it. Returns ``True`` when it did, ``False`` when disabled, on failure or on timeout.
        """
        if self._delivery is None:
            return self._disabled()
        deadline = time.monotonic() + timeout
        if not self.flush(timeout):
            return False
        # libsystemd sends a pipe; the manager closes whatever descriptor comes with BARRIER=1,
        # and a socket's own timeout waits for that without loading select (notify's start-up).
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            message = Message(b"BARRIER=1", False, [theirs.fileno()], None)
            try:
                error = self._delivery.send_now(message, deadline, self)
            finally:
                theirs.close()  # only the manager's copy may keep the pair open
            if error is not None:
                return self._failed(message, error)
            ours.settimeout(max(0.0, deadline - time.monotonic()))
            try:
                return ours.recv(1) == b""  # end of file: the manager closed its copy
            except OSError:  # TimeoutError, or nothing yet with no time left
                return False
        finally:
            ours.close()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to *timeout* seconds for retried state changes to be delivered."""
        return True if self._delivery is None else self._delivery.flush(timeout)

    def close(self) -> None:
        """Close the socket (it is reopened on the next send)."""
        if self._delivery is not None:
            self._delivery.close()

    # -- the error policy -----------------------------------------------------------------

    def report_invalid(self) -> bool:
        """True (and one WARNING) when ``NOTIFY_SOCKET`` is set but no address systemd
        would use (a relative path): for a front end that stays inert and sends nothing,
        so that the misconfiguration is said anyway."""
        self._disabled()
        return self._invalid is not None

    def _disabled(self) -> bool:
        if self._invalid is not None:
            self._warn_once(
                ("address",),
                "%s; sd_notify messages from this process are not delivered",
                self._invalid,
            )
        return False

    def _submit(self, message: Message) -> bool:
        if not self._exec_pid_checked:
            self._check_exec_pid(message.pid)
        assert self._delivery is not None  # callers checked enabled
        error = self._delivery.submit(message, self)
        return True if error is None else self._failed(message, error)

    def _failed(self, message: Message, error: OSError) -> bool:
        # The error class and the log are imported by a failure, not by every sender:
        # `sdready notify` starts faster without them (benchmarks/cli_startup.py).
        if self._strict:
            from .._exceptions import NotifyError

            raise NotifyError(f"cannot notify {self._raw_address!r}: {error}") from error
        if is_full(error):
            self._warn_once(
                ("full",),
                "the notify queue of %s is full: dropped %s (the manager is not keeping up; "
                "later messages fail fast until one gets through)",
                self._raw_address,
                message.describe(),
            )
        else:
            self._warn_once(
                ("send", error.errno),
                "sd_notify to %s failed: %s",
                self._raw_address,
                error.strerror or error,
            )
        return False

    def _check_exec_pid(self, pid: int | None) -> None:
        self._exec_pid_checked = True
        exec_pid = main_pid()
        sender = pid if pid is not None else os.getpid()
        if exec_pid is not None and exec_pid != sender:
            from .._log import logger

            logger.info(
                "pid %d is not the unit's main process (SYSTEMD_EXEC_PID=%s): systemd ignores "
                "its notifications unless the unit sets NotifyAccess=all",
                sender,
                exec_pid,
            )

    def _after_fork(self) -> None:
        self._exec_pid_checked = False
        if self._delivery is not None:
            self._delivery.after_fork()


def _with_status(fields: dict[str, FieldValue], status: str | None) -> dict[str, FieldValue]:
    if status is not None:
        fields["STATUS"] = status
    return fields


# -- the process-wide notifier ---------------------------------------------------------

_default: Notifier | None = None
_default_lock = allocate_lock()


def _process_notifier() -> Notifier:
    # Follow NOTIFY_SOCKET as it is now: a test recorder, or a plugin that took the
    # variable away from workers, must be honoured by the module-level helpers too.
    global _default  # noqa: PLW0603  (the process-wide default notifier, made on first use)
    address = notify_socket()
    current = _default
    if current is None or current._raw_address != address:
        with _default_lock:
            current = _default
            if current is None or current._raw_address != address:
                current = _default = Notifier(address)
    return current


def notify(fields: Fields, *, fds: "Iterable[object]" = (), pid: int | None = None) -> bool:
    """Send *fields* with the process-wide notifier (see :meth:`Notifier.send`)."""
    return _process_notifier().send(fields, fds=fds, pid=pid)


def ready(status: str | None = None) -> bool:
    """Send ``READY=1`` (and STATUS) with the process-wide notifier."""
    return _process_notifier().ready(status)


def status(text: str) -> bool:
    """Send ``STATUS=text`` with the process-wide notifier."""
    return _process_notifier().status(text)


def stopping(status: str | None = None) -> bool:
    """Send ``STOPPING=1`` (and STATUS) with the process-wide notifier."""
    return _process_notifier().stopping(status)


def reloading(status: str | None = None) -> bool:
    """Send ``RELOADING=1`` with ``MONOTONIC_USEC`` (and STATUS) with the process-wide notifier."""
    return _process_notifier().reloading(status)


def watchdog() -> bool:
    """Send ``WATCHDOG=1`` with the process-wide notifier."""
    return _process_notifier().watchdog()


def _warn_once_lazily() -> "Callable[..., None]":
    """A :class:`~sdready._log.WarnOnce` made at the first warning (`sdready notify`'s
    start-up does not load the log); holds no reference to its notifier."""
    made: list[WarnOnce] = []

    def warn_once(key: object, msg: str, *args: object, level: "int | None" = None) -> None:
        if not made:
            from .._log import WarnOnce

            made.append(WarnOnce())
        if level is None:
            made[0](key, msg, *args)
        else:
            made[0](key, msg, *args, level=level)

    return warn_once
