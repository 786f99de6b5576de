"""A notify socket for ``sdready exec``'s command: its own ``READY=1`` is heard, not passed on.

With ``--listen`` the command serves a socket that accepted connections before the app
could answer, so READY must come from the app. An HTTP probe says so from outside; a
command that runs a sdready plugin (or any sd_notify code) says so itself. The command
gets ``NOTIFY_SOCKET`` pointing here and the supervisor asks :meth:`NotifyRelay.ready`
between its steps: whatever else the command sends (STATUS, WATCHDOG, fds) is dropped, so
only the supervisor speaks to systemd.

The socket is abstract (nothing on disk to leave behind when sdready is killed) under a
random name, which any local user can still find (``/proc/net/unix``), so only datagrams
whose kernel-checked credentials (``SO_PASSCRED``) show our own uid *and* a process of
the command's tree count. A sender that exited before its message was read cannot be
placed in the tree, and is not believed either (``sdready notify`` waits for its answer).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct

from .._log import logger

__all__ = ["NotifyRelay"]

_DATAGRAM_MAX = 4096
_UCRED = struct.Struct("3i")  # pid, uid, gid


class NotifyRelay:
    """An abstract datagram socket; :attr:`address` is the child's ``NOTIFY_SOCKET``."""

    def __init__(self) -> None:
        name = f"sdready-exec-{os.getpid()}-{os.urandom(8).hex()}"
        self.address = "@" + name
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._sock.bind("\0" + name)
        self._uid = os.getuid()
        #: The command's pid, once it runs: only its process tree is heard.
        self.root = 0

    def ready(self) -> bool:
        """True once a datagram with ``READY=1`` arrived from our uid; reads all queued."""
        heard = False
        while True:
            try:
                # No room for SCM_RIGHTS: the kernel closes any fds sent along.
                data, ancillary, _flags, _address = self._sock.recvmsg(
                    _DATAGRAM_MAX, socket.CMSG_SPACE(_UCRED.size)
                )
            except (BlockingIOError, InterruptedError):
                return heard
            except OSError:
                return heard
            if self._ours(ancillary) and b"READY=1" in data.split(b"\n"):
                heard = True

    def _ours(self, ancillary: list[tuple[int, int, bytes]]) -> bool:
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, uid, _gid = _UCRED.unpack(payload[: _UCRED.size])
                from .._listen._proctree import descends_from  # only once a message came

                if uid == self._uid and self.root > 0 and descends_from(pid, self.root):
                    return True
                logger.debug("ignored a notify message from pid %d: not the command's", pid)
                return False
        return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
