"""gunicorn's listening sockets into systemd's fd store, so that restarts refuse nothing.

gunicorn reads ``LISTEN_FDS`` itself and serves every socket it is passed, so all this
module does is hand the arbiter's listeners to the store once READY is sent (the next
start gets them back), through the core's :func:`sdready._listen._activation.keep_sockets`. On
with ``sdready_keep_sockets = True`` or ``SDREADY_KEEP_SOCKETS=1`` (the environment wins),
and by default when systemd (>= 254) sets ``$FDSTORE``. A listener that is no longer in
``bind`` leaves the store; a ``.socket`` unit's socket stays with its unit.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING

from sdready import texts
from sdready.integration import (
    fdname_for,
    forget_sockets,
    keep_sockets,
    keep_wanted,
    listen_fdnames,
    listen_fds,
    socket_address,
    unset_listen_fds,
)

from . import _compat

if TYPE_CHECKING:
    from gunicorn.arbiter import Arbiter
    from sdready import Notifier, ReadyOptions

__all__ = ["bind_what_the_store_lost", "keep_listeners", "stopping"]

logger = logging.getLogger("sdready")

_kept: set[int] = set()  # the arbiters (by id) whose sockets are in the store


def keep_listeners(server: Arbiter, notifier: Notifier, options: ReadyOptions) -> None:
    """Keep the arbiter's configured listeners in the fd store (once READY is sent), as
    ``keep_sockets`` says (None: when ``$FDSTORE`` says the unit has a store)."""
    if not keep_wanted(options.keep_sockets):
        return
    configured = {_key(address) for address in _compat.bind_addresses(server)}
    passed = listen_fdnames()
    kept: list[tuple[int, str]] = []
    stale: list[str] = []
    for sock in _compat.listening_sockets(server):
        address = socket_address(sock.family, sock.getsockname())
        name = fdname_for(address)
        if _key(sock.getsockname()) not in configured:
            stale.append(passed.get(sock.fileno(), name))  # bind changed: not next time
        elif passed.get(sock.fileno(), name) == name:  # not a .socket unit's: that keeps it
            kept.append((sock.fileno(), name))
    forget_sockets(stale, notifier)
    if keep_sockets(kept, notifier):
        _kept.add(id(server))


def bind_what_the_store_lost(server: Arbiter, options: ReadyOptions) -> None:
    """A start given back fewer of the sockets sdready kept than ``bind`` names (a
    ``FileDescriptorStoreMax=`` below the sockets kept): gunicorn serves only what it is
    passed once ``LISTEN_FDS`` is set and would never bind the rest again. Bind it here,
    and say how many came back. Sockets passed otherwise (socket activation) are gunicorn's
    business as before."""
    if not keep_wanted(options.keep_sockets):
        return
    passed, have, ours = [], set(), 0
    for fd, name in listen_fds():
        with socket.socket(fileno=os.dup(fd)) as sock:
            address = sock.getsockname()
            ours += name == fdname_for(socket_address(sock.family, address))
        passed.append(fd)
        have.add(_key(address))
    if not ours:
        return  # none came from sdready's store
    configured = _compat.bind_addresses(server)
    missing = [address for address in configured if _key(address) not in have]
    if not missing:
        return
    shown = ", ".join(_shown(address) for address in missing)
    logger.warning(texts.KEEP_STORE_SHORT, len(passed), len(configured), shown, len(configured))
    _compat.listen_on(server, passed, missing)
    unset_listen_fds()  # as gunicorn does once it took them


def _shown(address: object) -> str:
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return str(address)


def stopping(server: Arbiter) -> None:
    """A stop signal: the kept sockets outlive this arbiter, so gunicorn must not unlink a
    unix socket's file when it exits, as it does not for sockets systemd passed.

    Only now: gunicorn's USR2 re-exec hands sockets over as fds 3… when ``systemd`` is set,
    which holds only for sockets it got from systemd.
    """
    if id(server) in _kept:
        _compat.keep_unix_socket_files(server)


def _key(address: object) -> object:
    """A port or a unix path: hosts are compared by the port alone (``bind`` may name a
    host that getsockname() shows as an IP)."""
    if isinstance(address, tuple):
        return int(address[1])
    if isinstance(address, bytes):
        return address
    return str(address)
