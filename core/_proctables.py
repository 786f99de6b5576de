"""The ``/proc/net`` tables of a network namespace: another process's sockets, by inode.

``/proc/PID/net/{tcp,tcp6,unix}`` list every socket of the namespace PID is in, with its
inode, state and address (``LISTEN``: state ``0A`` for TCP, ``__SO_ACCEPTCON`` for unix).
The slowest way sdready has to see another process's listeners (the tables are as large as
the namespace's socket count), and the one that needs least: ptrace-*read* rights over
the process (same uid, or ``CAP_SYS_PTRACE``). :mod:`sdready._proctree` uses it last.
"""

from __future__ import annotations

import _socket as socket  # the C module: the socket module's enums would load enum and more
import sys

from ._sockets import Listener, describe, listener

__all__ = ["TableEntry", "listener_from_entry", "read_tables"]

_TCP_LISTEN = "0A"
_TCP_CLOSE = "07"  # created, maybe bound, not yet listening: may still listen later
_UNIX_ACCEPTCON = 0x10000
_UNIX_STREAM_TYPES = frozenset({"0001", "0005"})  # SOCK_STREAM, SOCK_SEQPACKET


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
    """Parse tcp, tcp6 and unix tables under *netdir*; only *inodes* (None: listeners only)."""
    entries: dict[int, TableEntry] = {}
    for name, family, parse in (
        ("tcp", socket.AF_INET, _ipv4),
        ("tcp6", socket.AF_INET6, _ipv6),
    ):
        try:
            with open(f"{netdir}/{name}") as table:
                next(table, None)
                for line in table:
                    fields = line.split()
                    if len(fields) < 10:
                        continue
                    inode = int(fields[9])
                    listening = fields[3] == _TCP_LISTEN
                    if not (listening if inodes is None else inode in inodes):
                        continue
                    host_hex, _, port_hex = fields[1].partition(":")
                    entries[inode] = TableEntry(
                        listening,
                        not listening and fields[3] != _TCP_CLOSE,
                        family,
                        parse(host_hex),
                        int(port_hex, 16),
                        "",
                    )
        except OSError:
            continue  # no IPv6 in this kernel, or no /proc/net
    try:
        with open(f"{netdir}/unix", errors="replace") as table:
            next(table, None)
            for line in table:
                fields = line.split(None, 7)
                if len(fields) < 7:
                    continue
                inode = int(fields[6])
                stream = fields[4] in _UNIX_STREAM_TYPES
                listening = stream and bool(int(fields[3], 16) & _UNIX_ACCEPTCON)
                if not (listening if inodes is None else inode in inodes):
                    continue
                path = fields[7].rstrip("\n") if len(fields) > 7 else ""
                # St 01 is SS_UNCONNECTED: the only state that can still become a listener.
                final = not listening and (not stream or fields[5] != "01")
                entries[inode] = TableEntry(listening, final, socket.AF_UNIX, "", 0, path)
    except OSError:
        pass
    return entries


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
