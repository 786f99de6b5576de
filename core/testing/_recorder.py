"""A real notify socket that records what a service would tell systemd."""

from __future__ import annotations

import array
import contextlib
import os
import select
import shutil
import socket
import struct
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from .._notify._notifier import NOTIFY_BUFFER_MAX, SCM_MAX_FD

__all__ = ["NotifyMessage", "NotifyRecorder", "RecorderTimeout"]

_UCRED = struct.Struct("iII")
_ANCILLARY_SIZE = socket.CMSG_SPACE(SCM_MAX_FD * 4) + socket.CMSG_SPACE(_UCRED.size)
_SCM_CREDENTIALS = getattr(socket, "SCM_CREDENTIALS", None)
_SO_PASSCRED = getattr(socket, "SO_PASSCRED", None)


@dataclass(frozen=True)
class NotifyMessage:
    """One datagram as the manager would see it.

    ``fields`` maps each assignment (the last one wins when a name repeats); ``time``
    is ``time.monotonic()`` at reception; ``pid``/``uid``/``gid`` come from the
    kernel (SO_PASSCRED), so they are the real sender unless it sent credentials for
    another pid; ``fds`` are received descriptors, owned by the recorder.
    """

    raw: bytes
    fields: Mapping[str, str]
    time: float
    pid: int | None = None
    uid: int | None = None
    gid: int | None = None
    fds: tuple[int, ...] = ()

    def __contains__(self, name: object) -> bool:
        return name in self.fields

    def __getitem__(self, name: str) -> str:
        return self.fields[name]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of field *name*, or *default*."""
        return self.fields.get(name, default)

    @property
    def text(self) -> str:
        """The datagram as text."""
        return self.raw.decode("utf-8", "replace")

    def __str__(self) -> str:
        return self.text.replace("\n", " | ")


Match = str | Callable[[NotifyMessage], bool]


class RecorderTimeout(AssertionError, TimeoutError):
    """Raised by :meth:`NotifyRecorder.wait_for` when no message matched in time."""


class NotifyRecorder:
    """A real ``AF_UNIX`` datagram notify socket standing in for systemd in tests.

    Records every message with its parsed fields, reception time, sender credentials and
    passed file descriptors; answers ``BARRIER=1`` as the manager does (by closing the
    passed pipe); drops datagrams over 4096 bytes as the manager does (see ``dropped``).
    As a context manager it sets ``NOTIFY_SOCKET`` for the block and restores it after;
    child processes see the address through their environment (``recorder.env``).

    Example::

        with NotifyRecorder() as recorder:
            sdready.ready("up")
            message = recorder.wait_for("READY=1", timeout=2)
            assert message["STATUS"] == "up"

    :param path: filesystem path of the socket; default a fresh private directory.
    :param abstract: bind in the abstract namespace (``@name``) instead of a path.
    :param set_environment: set ``NOTIFY_SOCKET`` while used as a context manager.
    :param answer_barrier: close BARRIER fds like systemd (turn off to test timeouts).
    """

    def __init__(
        self,
        path: str | None = None,
        *,
        abstract: bool = False,
        set_environment: bool = True,
        answer_barrier: bool = True,
    ) -> None:
        self._tmpdir: str | None = None
        if abstract:
            name = f"sdready-recorder-{os.getpid()}-{uuid.uuid4().hex[:12]}"
            self.address = "@" + name
            self._bind_to: str = "\0" + name
        else:
            if path is None:
                self._tmpdir = tempfile.mkdtemp(prefix="sdready-notify-")
                path = os.path.join(self._tmpdir, "notify.sock")
            self.address = path
            self._bind_to = path
        self._set_environment = set_environment
        self._answer_barrier = answer_barrier
        self._messages: list[NotifyMessage] = []
        self._dropped: list[int] = []
        self._cond = threading.Condition()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._paused = False
        self._closing = False
        self._saved_env: str | None = None
        self._env_set = False

    def __repr__(self) -> str:
        return f"<NotifyRecorder {self.address!r} messages={len(self._messages)}>"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> NotifyRecorder:
        """Bind the socket and start receiving. Returns ``self``."""
        if self._sock is not None:
            return self
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            if _SO_PASSCRED is not None:
                sock.setsockopt(socket.SOL_SOCKET, _SO_PASSCRED, 1)
            sock.bind(self._bind_to)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(
            target=self._receive_loop, name="sdready-recorder", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop receiving, close received fds and remove the socket file."""
        if self._sock is None:
            return
        self._closing = True
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(5)
        self._sock.close()
        self._sock = None
        os.close(self._wake_r)
        os.close(self._wake_w)
        with self._cond:
            for message in self._messages:
                for fd in message.fds:
                    with contextlib.suppress(OSError):  # the test may have closed it
                        os.close(fd)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        elif not self.address.startswith("@"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)

    def __enter__(self) -> NotifyRecorder:
        self.start()
        if self._set_environment:
            self._saved_env = os.environ.get("NOTIFY_SOCKET")
            os.environ["NOTIFY_SOCKET"] = self.address
            self._env_set = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._env_set:
            if self._saved_env is None:
                os.environ.pop("NOTIFY_SOCKET", None)
            else:
                os.environ["NOTIFY_SOCKET"] = self._saved_env
            self._env_set = False
        self.close()

    @property
    def env(self) -> dict[str, str]:
        """``os.environ`` plus ``NOTIFY_SOCKET`` pointing here: pass it to a child process."""
        return {**os.environ, "NOTIFY_SOCKET": self.address}

    # -- flow control ---------------------------------------------------------------------

    def pause(self) -> None:
        """Stop reading, as a stalled manager does: the kernel queue then fills up."""
        self._paused = True
        os.write(self._wake_w, b"p")

    def resume(self) -> None:
        """Read again after :meth:`pause`."""
        self._paused = False
        os.write(self._wake_w, b"r")

    # -- what arrived ---------------------------------------------------------------------

    @property
    def messages(self) -> list[NotifyMessage]:
        """Every message received so far, oldest first (a copy)."""
        with self._cond:
            return list(self._messages)

    @property
    def dropped(self) -> list[int]:
        """Sizes of datagrams the manager would have dropped (over 4096 bytes)."""
        with self._cond:
            return list(self._dropped)

    def values(self, name: str) -> list[str]:
        """Every value field *name* was sent with, oldest first."""
        return [m.fields[name] for m in self.messages if name in m.fields]

    @property
    def statuses(self) -> list[str]:
        """Every STATUS text, oldest first."""
        return self.values("STATUS")

    def clear(self) -> None:
        """Forget the messages received so far (their fds are closed)."""
        with self._cond:
            for message in self._messages:
                for fd in message.fds:
                    os.close(fd)
            self._messages.clear()
            self._dropped.clear()

    def wait_for(self, match: Match, timeout: float = 5.0, *, since: int = 0) -> NotifyMessage:
        """Return the first message from index *since* on that matches, waiting up to *timeout*.

        *match* is a field name (``"READY"``), an assignment (``"READY=1"``) or a
        predicate on :class:`NotifyMessage`. Raises :class:`RecorderTimeout` listing what did
        arrive.
        """
        predicate = _predicate(match)
        deadline = time.monotonic() + timeout
        index = since
        with self._cond:
            while True:
                while index < len(self._messages):
                    message = self._messages[index]
                    index += 1
                    if predicate(message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            arrived = [str(m) for m in self._messages[since:]]
        listing = "\n  ".join(arrived) if arrived else "(nothing)"
        raise RecorderTimeout(
            f"no notify message matching {_describe(match)} within {timeout:g}s on "
            f"{self.address}; received:\n  {listing}"
        )

    def wait_for_count(self, count: int, timeout: float = 5.0) -> list[NotifyMessage]:
        """Wait until at least *count* messages arrived; return them all (a copy).

        Raises :class:`RecorderTimeout` listing what did arrive.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    arrived = "\n  ".join(str(m) for m in self._messages) or "(nothing)"
                    raise RecorderTimeout(
                        f"expected {count} notify messages within {timeout:g}s on "
                        f"{self.address}, got {len(self._messages)}:\n  {arrived}"
                    )
                self._cond.wait(remaining)
            return list(self._messages)

    def barrier(self, timeout: float = 5.0) -> None:
        """Return once every message sent to the recorder before this call is recorded.

        Sends ``BARRIER=1`` (sd_notify_barrier) and waits for the recorder to answer it, as
        the manager would: the way to assert that something was *not* sent, instead of
        sleeping. Raises :class:`RecorderTimeout` when no answer comes within *timeout*.
        """
        from sdready import Notifier

        if not Notifier(self.address).barrier(timeout):
            raise RecorderTimeout(f"BARRIER=1 not answered within {timeout:g}s on {self.address}")

    def __iter__(self) -> Iterator[NotifyMessage]:
        return iter(self.messages)

    def __len__(self) -> int:
        with self._cond:
            return len(self._messages)

    # -- receiving --------------------------------------------------------------------------

    def _receive_loop(self) -> None:
        assert self._sock is not None
        sock = self._sock
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        reading = False
        while not self._closing:
            if self._paused == reading:  # (un)register the socket as pause/resume asks
                if reading:
                    poller.unregister(sock)
                else:
                    poller.register(sock, select.POLLIN)
                reading = not reading
            for fd, _ in poller.poll():
                if fd == self._wake_r:
                    os.read(self._wake_r, 64)
                elif not self._paused:
                    self._receive_one(sock)

    def _receive_one(self, sock: socket.socket) -> None:
        try:
            data, ancillary, flags, _ = sock.recvmsg(65536, _ANCILLARY_SIZE, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        now = time.monotonic()
        fds: list[int] = []
        pid = uid = gid = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                received = array.array("i")
                received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
                fds.extend(received)
            elif level == socket.SOL_SOCKET and kind == _SCM_CREDENTIALS:
                pid, uid, gid = _UCRED.unpack(payload[: _UCRED.size])
        if len(data) > NOTIFY_BUFFER_MAX or flags & socket.MSG_CTRUNC:
            for fd in fds:  # systemd drops such a datagram whole, fds included
                os.close(fd)
            with self._cond:
                self._dropped.append(len(data))
                self._cond.notify_all()
            return
        fields = _parse(data)
        barrier = self._answer_barrier and fields.get("BARRIER") == "1"
        message = NotifyMessage(data, fields, now, pid, uid, gid, () if barrier else tuple(fds))
        with self._cond:
            self._messages.append(message)
            self._cond.notify_all()
        if barrier:
            # Closing the pipe's write end is the manager's answer; recorded first, so a
            # sender returning from barrier() finds everything it sent in `messages`.
            for fd in fds:
                os.close(fd)


def _parse(data: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        name, sep, value = line.partition("=")
        if sep:
            fields[name] = value
    return fields


def _predicate(match: Match) -> Callable[[NotifyMessage], bool]:
    if callable(match):
        return match
    name, sep, value = match.partition("=")
    if sep:
        return lambda message: message.fields.get(name) == value
    return lambda message: name in message.fields


def _describe(match: Match) -> str:
    if callable(match):
        return getattr(match, "__name__", repr(match))
    return repr(match)
