"""A notify socket for ``sdready exec``'s command: its own ``READY=1`` is heard, not passed on.

With ``--listen`` the command serves a socket that accepted connections before the app
could answer, so READY must come from the app. An HTTP probe says so from outside; a
command that runs a sdready plugin (or any sd_notify code) says so itself. The command
gets ``NOTIFY_SOCKET`` pointing here, in a directory only this user can enter, and the
supervisor asks :meth:`NotifyRelay.ready` between its steps: whatever else the command
sends (STATUS, WATCHDOG, fds) is dropped, so only the supervisor speaks to systemd.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile

__all__ = ["NotifyRelay"]

_DATAGRAM_MAX = 4096


class NotifyRelay:
    """A datagram socket in a private directory; :attr:`address` is the child's NOTIFY_SOCKET."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="sdready-exec-")  # mode 0700: ours alone
        self.address = os.path.join(self._dir, "notify")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._sock.bind(self.address)

    def ready(self) -> bool:
        """True once a datagram with ``READY=1`` arrived; reads all that are queued."""
        heard = False
        while True:
            try:
                # recv() takes no ancillary data: the kernel closes any fds sent along.
                data = self._sock.recv(_DATAGRAM_MAX)
            except (BlockingIOError, InterruptedError):
                return heard
            except OSError:
                return heard
            if b"READY=1" in data.split(b"\n"):
                heard = True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)
