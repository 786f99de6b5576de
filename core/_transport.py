"""The socket to the service manager: connect, send one message, wait for room.

One connected, non-blocking datagram socket (like sdnotify: a send then skips the path
lookup, and POLLOUT reflects the receiver's queue); a vsock manager without datagrams gets
a seqpacket connection per message, as libsystemd does. What is sent and when is the
notifier's business (:mod:`._notifier`); this only moves bytes and reports errors.
"""

import errno as _errno
import os
import sys
import time

from ._cstd import TYPE_CHECKING, socket
from ._protocol import Message, NotifyAddress, is_full

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Transport"]

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

    def _open(self, address: NotifyAddress) -> "socket.socket":
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

    def _sendmsg(self, sock: "socket.socket", message: Message) -> None:
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
                from ._log import DEBUG  # a rare path: notify's start-up does not load the log

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
