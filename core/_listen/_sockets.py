"""What one socket descriptor is: the questions every listener walker asks the kernel.

The in-process walk (:mod:`sdready._listen._listeners`), the snapshot's look at unlistened sockets
and the walk over another process tree (:mod:`sdready._listen._proctree`, through duplicates made
with ``pidfd_getfd``) all ask the same things of a descriptor: its family and type
(``SO_DOMAIN``, ``socket.SO_TYPE``), whether it listens (``SO_ACCEPTCONN``), where
(``getsockname``) and, for one that does not, whether it is connected (``getpeername``).
They are asked here, once, on the C socket type, which wraps a descriptor without closing
it: the descriptor always belongs to someone else.
"""

import os

from .._cstd import TYPE_CHECKING, socket
from .._record import Record

# Light on purpose (the commands' start-up): no socket module, whose enums load enum and
# more; Listener.family makes its AddressFamily only when asked for.
if TYPE_CHECKING:
    import socket
    from typing import TypeAlias

__all__ = [
    "ConnectAddress",
    "Listener",
    "SocketState",
    "describe",
    "inspect_socket",
    "same_inode",
]

# Linux values as fallbacks, so that importing never fails on other systems.
_SO_ACCEPTCONN: int = getattr(socket, "SO_ACCEPTCONN", 30)
_SO_DOMAIN: int = getattr(socket, "SO_DOMAIN", 39)
# Passing SOCK_NONBLOCK when wrapping a descriptor keeps CPython from calling
# setblocking(False) on it when socket.setdefaulttimeout() is in effect: O_NONBLOCK lives
# on the open file, so that would change the app's own listening socket.
_SOCK_NONBLOCK: int = getattr(socket, "SOCK_NONBLOCK", 0)
AF_UNIX: int = getattr(socket, "AF_UNIX", 1)
FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6, AF_UNIX})
# The C socket type wraps a descriptor without the Python-level bookkeeping of
# socket.socket, and detach() hands the descriptor back without closing it.
_RawSocket = socket.socket

ConnectAddress: "TypeAlias" = str | bytes | tuple[str, int] | tuple[str, int, int, int]
#: ``(readable address, connect address, port)``, as :func:`describe` returns it.
Address: "TypeAlias" = tuple[str, ConnectAddress, "int | None"]


class Listener(Record):
    """A socket in the listening state (immutable).

    ``address`` is readable: ``127.0.0.1:8000``, ``[::]:8000``, ``/run/app.sock`` or
    ``@abstract``; ``str(listener)`` is the same. ``connect_address`` can be passed to
    ``socket.connect`` on a socket of ``family`` (a :class:`socket.AddressFamily`): a
    wildcard bind maps to loopback (``0.0.0.0`` to ``127.0.0.1``, ``::`` to ``::1``), an
    abstract name is the raw ``bytes`` with its leading NUL. ``port`` is ``None`` for unix
    sockets. ``inode`` names the socket itself: two descriptors for one socket share it.
    """

    __slots__ = ("_family", "address", "connect_address", "fd", "inode", "port")
    __match_args__ = ("fd", "family", "address", "connect_address", "port", "inode")

    fd: int
    _family: int
    address: str
    connect_address: ConnectAddress
    port: int | None
    inode: int

    def __init__(  # noqa: PLR0913, PLR0917  (the fields in order, as the dataclass it was)
        self,
        fd: int,
        family: int,
        address: str,
        connect_address: ConnectAddress,
        port: int | None,
        inode: int,
    ) -> None:
        self._set(
            fd=fd,
            _family=int(family),
            address=address,
            connect_address=connect_address,
            port=port,
            inode=inode,
        )

    @property
    def family(self) -> "socket.AddressFamily":
        """``socket.AF_INET``, ``socket.AF_INET6`` or ``AF_UNIX``."""
        import socket  # here, not at import: see the module's imports

        return socket.AddressFamily(self._family)

    def _values(self) -> tuple[object, ...]:
        return (self.fd, self._family, self.address, self.connect_address, self.port, self.inode)

    def __str__(self) -> str:
        return self.address


class SocketState(Record):
    """What :func:`inspect_socket` learnt about one descriptor.

    ``family`` is None for a socket that can never listen (datagram, another family);
    ``address`` is set once it listens; ``connected`` is only asked of a stream socket
    that does not listen, and only when the caller wants to know.
    """

    __slots__ = ("address", "connected", "family", "listening")
    __match_args__ = ("family", "listening", "address", "connected")

    family: int | None
    listening: bool
    address: Address | None
    connected: bool

    def __init__(
        self,
        family: int | None,
        listening: bool = False,
        address: Address | None = None,
        connected: bool = False,
    ) -> None:
        self._set(family=family, listening=listening, address=address, connected=connected)


def inspect_socket(  # noqa: PLR0911  (each early return is one answer the kernel gave)
    fd: int, family: int | None = None, *, address: Address | None = None, peer: bool = False
) -> SocketState | None:
    """Ask the kernel about socket descriptor *fd*; None if it is gone or no longer a socket.

    *family* (and the listening *address*) may come from an earlier look at the same inode:
    a socket never changes family, nor address once it listens, so those questions are
    skipped. With ``peer=True`` a stream socket that does not listen is asked whether it
    is connected (it may still ``listen()`` only if not).
    """
    if family is None:
        raw = _wrap(fd, AF_UNIX)  # a placeholder family: getsockopt does not use it
        if raw is None:
            return None
        try:
            family = raw.getsockopt(socket.SOL_SOCKET, _SO_DOMAIN)
            kind = raw.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        except OSError:
            return None
        finally:
            raw.detach()
        if kind != socket.SOCK_STREAM or family not in FAMILIES:
            return SocketState(None)
    # getsockname() decodes addresses by the wrapper's family: wrap with the real one.
    sock = _wrap(fd, family)
    if sock is None:
        return None
    try:
        if sock.getsockopt(socket.SOL_SOCKET, _SO_ACCEPTCONN):
            return SocketState(family, True, address or describe(family, sock.getsockname()))
        if not peer:
            return SocketState(family)
        try:
            sock.getpeername()
        except OSError:  # ENOTCONN: free to listen later
            return SocketState(family)
        return SocketState(family, connected=True)
    except OSError:  # closed, or reused for something that is not a socket
        return None
    finally:
        sock.detach()  # never close: the descriptor belongs to the app


def _wrap(fd: int, family: int) -> "socket.socket | None":
    try:
        # CPython checks the descriptor with getsockname(): it may be gone by now.
        return _RawSocket(family, socket.SOCK_STREAM | _SOCK_NONBLOCK, 0, fd)
    except OSError:
        return None


def same_inode(fd: int, inode: int) -> bool:
    """True while *fd* still refers to socket *inode* (descriptors are reused at once)."""
    try:
        return os.fstat(fd).st_ino == inode
    except OSError:
        return False


def listener(fd: int, inode: int, family: int, address: Address) -> Listener:
    """A :class:`Listener` from what :func:`inspect_socket` or a kernel table said."""
    text, connect_address, port = address
    return Listener(fd, family, text, connect_address, port, inode)


def describe(family: int, sockname: object) -> Address:
    """Return (readable address, connect address, port) for a getsockname() result."""
    if family == socket.AF_INET:
        assert isinstance(sockname, tuple)
        host, port = sockname[0], sockname[1]
        target = "127.0.0.1" if host == "0.0.0.0" else host
        return f"{host}:{port}", (target, port), port
    if family == socket.AF_INET6:
        assert isinstance(sockname, tuple)
        host, port, flowinfo, scope_id = sockname
        if host == "::":
            return f"[::]:{port}", ("::1", port, 0, 0), port
        return f"[{host}]:{port}", (host, port, flowinfo, scope_id), port
    if isinstance(sockname, bytes):  # Linux abstract namespace: a leading NUL
        name = sockname[1:].decode("utf-8", "backslashreplace")
        return f"@{name}", sockname, None
    assert isinstance(sockname, str)
    return sockname or "(unnamed)", sockname, None
