"""The ``/proc/net`` tables of a network namespace: another process's sockets, by inode.

``/proc/PID/net/{tcp,tcp6,unix}`` list every socket of the namespace PID is in, with its
inode, state and address (``LISTEN``: state ``0A`` for TCP, ``__SO_ACCEPTCON`` for unix).
The slowest way sdready has to see another process's listeners (the tables are as large as
the namespace's socket count), and the one that needs least: ptrace-*read* rights over
the process (same uid, or ``CAP_SYS_PTRACE``). :mod:`sdready._listen._proctree` uses it last.
"""

from __future__ import annotations

import errno
import re
import sys

from .._cstd import TYPE_CHECKING, socket
from .._log import logger
from ._sockets import Listener, describe, listener

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["TableEntry", "listener_from_entry", "read_tables", "unix_inodes_named", "unix_listens"]

_TCP_LISTEN = "0A"
_TCP_CLOSE = "07"  # created, maybe bound, not yet listening: may still listen later
_UNIX_ACCEPTCON = 0x10000
_UNIX_STREAM_TYPES = frozenset({"0001", "0005"})  # SOCK_STREAM, SOCK_SEQPACKET
# unix_seq_show(): "%pK: %08X %08X %08X %04X %02X %5lu", then " " and the name if bound.
_UNIX_LINE = re.compile(
    r"[0-9a-f]+: [0-9A-F]{8} [0-9A-F]{8} ([0-9A-F]{8}) ([0-9A-F]{4}) ([0-9A-F]{2}) +([0-9]+)"
    r"(?: (.*))?",
    re.DOTALL,
)


class TableEntry:
    """One socket's line in a table: what the watcher needs of it."""

    __slots__ = ("family", "final", "host", "listening", "path", "port")

    def __init__(  # noqa: PLR0913, PLR0917  (one line's columns, in the table's order)
        self, listening: bool, final: bool, family: int, host: str, port: int, path: str
    ) -> None:
        self.listening = listening
        self.final = final  # can never start listening (connected, or not a stream socket)
        self.family = family
        self.host = host
        self.port = port
        self.path = path


def _ipv4(hex_address: str) -> str:
    # The kernel prints the __be32 as a host-order integer.
    return socket.inet_ntop(socket.AF_INET, int(hex_address, 16).to_bytes(4, sys.byteorder))


def _ipv6(hex_address: str) -> str:
    raw = b"".join(
        int(hex_address[i : i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, 32, 8)
    )
    return socket.inet_ntop(socket.AF_INET6, raw)


def read_tables(netdir: str, inodes: set[int] | None) -> dict[int, TableEntry]:
    """Parse tcp, tcp6 and unix tables under *netdir*; only *inodes* (None: listeners only).

    Defensive: a line that does not parse is skipped, and so is every inode that more than
    one line claims. Any local user can bind a unix socket whose name holds a newline and
    the text of a whole forged line after it (the kernel prints names as they are), but
    only the real line of a socket carries its inode first: a forgery naming a real
    socket's inode is a second claim, and is not believed. An inode no real line claims
    must be confirmed elsewhere (see :func:`unix_listens` and :mod:`sdready._listen._proctree`).
    """
    entries: dict[int, TableEntry] = {}
    claimed: set[int] = set()
    doubtful: set[int] = set()
    for name, family, parse in (
        ("tcp", socket.AF_INET, _tcp_line),
        ("tcp6", socket.AF_INET6, _tcp_line),
        ("unix", socket.AF_UNIX, _unix_line),
    ):
        for inode, entry in _lines(f"{netdir}/{name}", family, parse, claimed, doubtful):
            if entry.listening if inodes is None else inode in inodes:
                entries[inode] = entry
    for inode in doubtful:
        if entries.pop(inode, None) is not None:
            _warn_doubtful(netdir, inode)
    return entries


def _tcp_line(line: str, family: int) -> tuple[int, TableEntry] | None:
    fields = line.split()
    if len(fields) < 10:
        return None
    try:
        inode = int(fields[9])
        listening = fields[3] == _TCP_LISTEN
        host_hex, _, port_hex = fields[1].partition(":")
        if len(host_hex) != (8 if family == socket.AF_INET else 32):
            return None
        host = _ipv4(host_hex) if family == socket.AF_INET else _ipv6(host_hex)
        port = int(port_hex, 16)
    except (ValueError, OverflowError, OSError):  # not hex, not an address's length
        return None
    final = not listening and fields[3] != _TCP_CLOSE
    return inode, TableEntry(listening, final, family, host, port, "")


def _unix_line(line: str, family: int) -> tuple[int, TableEntry] | None:
    match = _UNIX_LINE.fullmatch(line.rstrip("\n"))
    if match is None:
        return None
    flags, kind, state, inode_text, path = match.groups()
    stream = kind in _UNIX_STREAM_TYPES
    listening = stream and bool(int(flags, 16) & _UNIX_ACCEPTCON)
    # St 01 is SS_UNCONNECTED: the only state that can still become a listener.
    final = not listening and (not stream or state != "01")
    return int(inode_text), TableEntry(listening, final, family, "", 0, path or "")


_warned: set[tuple[str, int]] = set()


def _warn_doubtful(netdir: str, inode: int) -> None:
    if (netdir, inode) in _warned:
        return
    _warned.add((netdir, inode))
    logger.warning(
        "%s lists socket %d on more than one line (a unix socket's name with a newline "
        "can forge a line): its state there is not believed",
        netdir,
        inode,
    )


def unix_inodes_named(netdir: str, path: str) -> set[int]:
    """The inodes of the unix sockets bound to *path* (``@name``: abstract), by the same
    defensive reading as :func:`read_tables`: an inode two lines claim is left out."""
    claimed: set[int] = set()
    doubtful: set[int] = set()
    found = {
        inode
        for inode, entry in _lines(f"{netdir}/unix", socket.AF_UNIX, _unix_line, claimed, doubtful)
        if entry.path == path
    }
    return found - doubtful


def _lines(
    path: str,
    family: int,
    parse: Callable[[str, int], tuple[int, TableEntry] | None],
    claimed: set[int],
    doubtful: set[int],
) -> Iterator[tuple[int, TableEntry]]:
    """``(inode, entry)`` for each line of the table at *path* that parses; an inode seen
    before (in *claimed*) goes into *doubtful*. Nothing where the table cannot be read (no
    IPv6 in this kernel, no /proc/net)."""
    try:
        with open(path, errors="replace") as table:
            next(table, None)
            for line in table:
                parsed = parse(line, family)
                if parsed is None:
                    continue
                if parsed[0] in claimed:
                    doubtful.add(parsed[0])
                claimed.add(parsed[0])
                yield parsed
    except OSError:
        return


def unix_listens(path: str) -> bool:
    """True when a unix socket listens at *path* (``@name``: abstract), asked by connecting.

    For a listener read from ``/proc/net/unix`` with no descriptor to check its inode
    against: the name there may be forged. A successful connect is closed at once (the
    server accepts a connection that sends nothing, as after a plain connect probe).
    """
    address: str | bytes = b"\0" + path[1:].encode() if path.startswith("@") else path
    for kind in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET):
        sock = socket.socket(socket.AF_UNIX, kind)
        try:
            sock.setblocking(False)
            sock.connect(address)
        except BlockingIOError:
            return True  # listening, with its backlog full
        except OSError as exc:
            if exc.errno != errno.EPROTOTYPE:
                return False  # refused: bound, not listening; or no such socket
            continue  # a listener of the other type
        finally:
            sock.close()
        return True
    return False


def listener_from_entry(fd: int, inode: int, entry: TableEntry) -> Listener:
    sockname: object
    if entry.family == socket.AF_UNIX:
        # The table shows an abstract name as "@name"; getsockname() gives b"\0name".
        path = entry.path
        sockname = b"\0" + path[1:].encode() if path.startswith("@") else path
    elif entry.family == socket.AF_INET6:
        sockname = (entry.host, entry.port, 0, 0)
    else:
        sockname = (entry.host, entry.port)
    return listener(fd, inode, entry.family, describe(entry.family, sockname))
