"""The listening sockets of this network namespace, straight from the kernel (sock_diag).

``NETLINK_SOCK_DIAG`` is what ``ss -l`` speaks: one dump per family (TCP over IPv4 and
IPv6, unix), filtered by the kernel to the ``LISTEN`` state, answers with each listener's
inode and address. No descriptor and no ``/proc/net`` table is read, and sockets in other
states are never even copied out, so a dump costs tens of microseconds on a quiet host and
grows only with the number of *listeners* in the namespace, not with its connections.

Unprivileged: no capability is needed to dump, but the answer is always the namespace of
the netlink socket's creator (ours): a process in another network namespace is not seen,
which :func:`same_network_namespace` tells. Where netlink is refused (a seccomp filter, no
``AF_NETLINK``, an old kernel without ``unix_diag``) :class:`SockDiag` raises
:class:`OSError` and the caller uses another method.

Only listeners are reported: a socket that listens has its final address, so the answer
needs no follow-up question to the socket's owner.
"""

import errno
import os

from .._cstd import TYPE_CHECKING, Callable, socket, struct
from ._sockets import Address, describe

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["SockDiag", "SocketCounts", "same_network_namespace"]

_NETLINK_SOCK_DIAG = 4  # NETLINK_INET_DIAG, as <linux/netlink.h> numbers it
_SOCK_DIAG_BY_FAMILY = 20
# The original inet_diag request: its dump covers IPv4 and IPv6 at once (one round trip
# fewer per poll); kept by the kernel for ss and friends since 2.6.
_TCPDIAG_GETSOCK = 18
_DUMP = 0x1 | 0x300  # NLM_F_REQUEST | NLM_F_ROOT | NLM_F_MATCH
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_TCP_LISTEN = 10  # also the state of a listening unix socket
_UDIAG_SHOW_NAME = 0x1
_UNIX_DIAG_NAME = 0

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_LISTENING = 1 << _TCP_LISTEN
# inet_diag_req: (family, src_len, dst_len, ext, sockid[48]), states, (dbs)
_COMPAT_REQUEST = struct.pack("=52xI4x", _LISTENING)
# inet_diag_req_v2: family, protocol, (ext, pad), states, (sockid[48])
_INET_REQUESTS = {
    family: struct.pack("=BBxxI48x", family, socket.IPPROTO_TCP, _LISTENING)
    for family in (socket.AF_INET, socket.AF_INET6)
}
# inet_diag_msg: family, (state, timer, retrans); sockid: sport (be16), (dport), src[16],
# (dst[16]), if, cookie[2]; (expires, rqueue, wqueue, uid), inode. Read in two steps: the
# socket's cookie (unique per boot) and inode first, the address only for a new socket.
_INET_KEY = struct.Struct("=44x8s16xI")
_INET_ADDRESS = struct.Struct("=B3x2s2x16s16xI")
# unix_diag_req: family, (protocol, pad), states, (ino), show, (cookie[2])
_UNIX_REQUEST = struct.pack("=BxxxI4xI8x", socket.AF_UNIX, _LISTENING, _UDIAG_SHOW_NAME)
_UNIX_MESSAGE = struct.Struct("=xBxxI8s")  # (family), type, (state, pad), ino, cookie[2]
_ATTRIBUTE = struct.Struct("=HH")  # rtattr: len, type
_ERROR = struct.Struct("=i")  # nlmsgerr: a negative errno first
_BUFFER = 65536
_TIMEOUT = 1.0  # seconds

#: socket cookie -> (inode, (family, address))
#: A socket's inode and (family, address), by the kernel's cookie for it.
_Entry = tuple[int, tuple[int, Address]]
_Seen = dict[bytes, _Entry]
#: Reads one reply payload: (cookie, entry), or None for a socket that never counts.
_Parse = Callable[[memoryview, _Seen], tuple[bytes, _Entry] | None]


def same_network_namespace(pid: int) -> bool:
    """True when *pid* shares our network namespace (a dump shows only our namespace).

    False too when it cannot be told (the process is gone, or its ``ns/net`` unreadable).
    """
    try:
        theirs = os.stat(f"/proc/{pid}/ns/net")
        ours = os.stat("/proc/self/ns/net")
    except OSError:
        return False
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)


class SocketCounts:
    """A cheap sign that a listener may have appeared: the namespace's socket counts.

    ``listen()`` puts a TCP socket into the kernel's hash, which moves the namespace's count
    of TCP (``/proc/net/sockstat``) or TCPv6 (``sockstat6``) sockets in use; any new socket,
    a unix one too, moves its count of sockets. One ``pread`` of each file costs a few
    microseconds, a tenth of a dump: a watch reads them often and dumps when they moved.
    Counts can cancel out (a listener opened as a connection closed), so the sign is a hint:
    the watch still dumps now and then. Not thread-safe.

    Raises :class:`OSError` when ``/proc/self/net/sockstat`` cannot be read, or is not in
    the format known here.
    """

    def __init__(self) -> None:
        self._fds: list[int] = []
        for name in ("sockstat", "sockstat6"):
            try:
                self._fds.append(os.open(f"/proc/self/net/{name}", os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                if not self._fds:  # sockstat6 alone may be absent: a kernel without IPv6
                    raise
        head = self._head()
        if head[:2] != [b"sockets:", b"used"] or head[3:5] != [b"TCP:", b"inuse"]:
            self.close()
            raise OSError(errno.EPROTO, "/proc/net/sockstat: a format not known here")
        self._last = self._counts(head)

    def _head(self) -> list[bytes]:
        # "sockets: used N\nTCP: inuse N orphan ...": pread at 0 makes the kernel write
        # the file afresh.
        return os.pread(self._fds[0], 128, 0).split(None, 6)

    def _counts(self, head: list[bytes]) -> list[bytes]:
        # The counts of sockets and of hashed TCP sockets (sockstat's *head*, and
        # "TCP6: inuse N\n..."); the rest (time-wait, memory) moves with traffic, not
        # with listeners.
        counts = head[2:6:3]
        if len(self._fds) > 1:
            counts.append(os.pread(self._fds[1], 64, 0).split(None, 3)[2])
        return counts

    def changed(self) -> bool:
        """True when a count moved since the last call (or since creation)."""
        counts = self._counts(self._head())
        if counts == self._last:
            return False
        self._last = counts
        return True

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()


class SockDiag:
    """One netlink socket that dumps the namespace's listeners on demand. Not thread-safe.

    Example::

        with SockDiag() as diag:
            for inode, (family, address) in diag.listeners().items():
                print(inode, address[0])

    Raises :class:`OSError` when netlink is refused, at creation or by a dump.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, _NETLINK_SOCK_DIAG
        )
        # A dump is answered at once; should one ever not be, the caller falls back rather
        # than hang (sdready exec's supervisor would stop forwarding signals).
        self._sock.settimeout(_TIMEOUT)
        self._seqs: dict[bytes, int] = {}  # request -> its sequence number
        # The last reply to each request, read by read, with its entries.
        self._replies: dict[bytes, tuple[list[bytes], _Seen]] = {}
        self._buffer = bytearray(_BUFFER)
        self._view = memoryview(self._buffer)
        self._compat = True  # one dump for IPv4 and IPv6, until the kernel refuses it
        self._ipv6 = True  # until the kernel says it has none
        # What the last dump said, by socket cookie: a listener's address never changes,
        # so a poll parses only the sockets that are new since.
        self._known: _Seen = {}

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "SockDiag":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def listeners(self, *, unix: bool = True) -> dict[int, tuple[int, Address]]:
        """``{inode: (family, address)}`` of every listening TCP and unix stream socket;
        ``unix=False`` skips the unix dump and reports the unix listeners of the last one."""
        seen: _Seen = {}
        if self._compat:
            try:
                self._dump_inet(_TCPDIAG_GETSOCK, _COMPAT_REQUEST, seen)
            except OSError:  # a kernel without the old interface: one dump per family
                self._compat = False
        if not self._compat:
            self._dump_inet(_SOCK_DIAG_BY_FAMILY, _INET_REQUESTS[socket.AF_INET], seen)
            if self._ipv6:
                try:
                    self._dump_inet(_SOCK_DIAG_BY_FAMILY, _INET_REQUESTS[socket.AF_INET6], seen)
                except OSError as exc:  # a kernel without IPv6 has no such listeners
                    if exc.errno not in (errno.ENOENT, errno.EAFNOSUPPORT):
                        raise
                    self._ipv6 = False
        if unix:
            self._dump_unix(seen)
        else:
            seen.update(self._replies.get(_UNIX_REQUEST, ((), {}))[1])
        self._known = seen
        return dict(seen.values())

    def _dump_inet(self, kind: int, request: bytes, seen: _Seen) -> None:
        self._dump(kind, request, seen, _inet_entry)

    def _dump_unix(self, seen: _Seen) -> None:
        self._dump(_SOCK_DIAG_BY_FAMILY, _UNIX_REQUEST, seen, _unix_entry)

    def _dump(self, kind: int, request: bytes, seen: _Seen, parse: _Parse) -> None:
        """One dump into *seen*; an entry known by its cookie is not parsed again."""
        chunks = self._reply(kind, request, seen)
        if chunks is None:
            return
        known = self._known
        entries: _Seen = {}
        for payload in self._payloads(chunks, request):
            parsed = parse(payload, known)
            if parsed is not None:
                cookie, entry = parsed
                entries[cookie] = entry
        self._replies[request] = (chunks, entries)
        seen.update(entries)

    def _reply(self, kind: int, request: bytes, seen: _Seen) -> list[bytes] | None:
        """Send one dump request and read its reply as long as it repeats the last reply,
        read by read. None: it did, to its end (``NLMSG_DONE``), and its entries went into
        *seen*: a quiet namespace costs comparisons, no parse. Else the reads so far, the
        first that differs last; :meth:`_payloads` reads the rest."""
        # Each request has its own fixed sequence number, so that an unchanged namespace
        # gives byte for byte the same reply.
        seq = self._seqs.setdefault(request, len(self._seqs) + 1)
        self._sock.send(_HEADER.pack(_HEADER.size + len(request), kind, _DUMP, seq, 0) + request)
        last, entries = self._replies.get(request, ((), {}))
        chunks: list[bytes] = []
        while True:
            data = self._view[: self._sock.recv_into(self._buffer)]
            index = len(chunks)
            if index >= len(last) or data != last[index]:  # compares, copies nothing
                chunks.append(bytes(data))
                return chunks
            chunks.append(last[index])
            if len(chunks) == len(last):  # the last read held NLMSG_DONE
                seen.update(entries)
                return None

    def _payloads(self, chunks: list[bytes], request: bytes) -> "Iterator[memoryview]":
        """The payloads of a dump's reply up to ``NLMSG_DONE``: those in *chunks*, then in
        further reads, which are appended to *chunks*."""
        seq = self._seqs[request]
        index = 0
        while True:
            if index == len(chunks):
                chunks.append(self._sock.recv(_BUFFER))
            data = memoryview(chunks[index])
            index += 1
            size = len(data)
            if size == 0:
                raise OSError(errno.EPROTO, "netlink dump ended without NLMSG_DONE")
            offset = 0
            while offset + _HEADER.size <= size:
                length, reply, _flags, msg_seq, _pid = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    raise OSError(errno.EPROTO, "malformed netlink message")
                body = data[offset + _HEADER.size : offset + length]
                offset += (length + 3) & ~3
                if msg_seq != seq:
                    continue  # the end of an earlier, interrupted dump
                if reply == _NLMSG_DONE:
                    return
                if reply == _NLMSG_ERROR:
                    code = -_ERROR.unpack_from(body)[0]
                    raise OSError(code, os.strerror(code))
                yield body


def _inet_address(family: int, raw: bytes, port: bytes, scope: int) -> Address:
    number = int.from_bytes(port, "big")
    if family == socket.AF_INET:
        return describe(family, (socket.inet_ntop(family, raw[:4]), number))
    # getsockname() reports the bound device as the scope of a link-local address only.
    link_local = raw[0] == 0xFE and raw[1] & 0xC0 == 0x80
    host = socket.inet_ntop(family, raw)
    return describe(family, (host, number, 0, scope if link_local else 0))


def _unix_address(name: bytes | None) -> Address:
    if name and name[:1] == b"\0":
        return describe(socket.AF_UNIX, name)  # abstract: the raw bytes, as getsockname()
    # A path's name is counted with its terminating NUL; getsockname() drops it.
    return describe(socket.AF_UNIX, os.fsdecode((name or b"").split(b"\0", 1)[0]))


def _attribute(payload: memoryview, offset: int, wanted: int) -> bytes | None:
    """The value of the first ``rtattr`` of type *wanted* after *offset*, or None."""
    while offset + _ATTRIBUTE.size <= len(payload):
        length, kind = _ATTRIBUTE.unpack_from(payload, offset)
        if length < _ATTRIBUTE.size:
            return None
        if kind == wanted:
            return bytes(payload[offset + _ATTRIBUTE.size : offset + length])
        offset += (length + 3) & ~3
    return None


def _inet_entry(payload: memoryview, known: _Seen) -> tuple[bytes, _Entry] | None:
    cookie, inode = _INET_KEY.unpack_from(payload)
    entry = known.get(cookie)
    if entry is None:
        family, port, raw, scope = _INET_ADDRESS.unpack_from(payload)
        entry = (inode, (family, _inet_address(family, raw, port, scope)))
    return cookie, entry


def _unix_entry(payload: memoryview, known: _Seen) -> tuple[bytes, _Entry] | None:
    kind, inode, cookie = _UNIX_MESSAGE.unpack_from(payload)
    if kind != socket.SOCK_STREAM:  # as the descriptor walk: stream sockets only
        return None
    entry = known.get(cookie)
    if entry is None:
        name = _attribute(payload, _UNIX_MESSAGE.size, _UNIX_DIAG_NAME)
        entry = (inode, (socket.AF_UNIX, _unix_address(name)))
    return cookie, entry
