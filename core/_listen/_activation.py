"""Listening sockets that outlive the process: taken from systemd, kept in its fd store.

While a service restarts, nobody holds its listening socket and the kernel refuses every
connection. systemd can hold it instead: a socket handed over with ``FDSTORE=1`` (and the
unit's ``FileDescriptorStoreMax=``) stays open in the manager and comes back on the next
start in ``LISTEN_FDS``/``LISTEN_FDNAMES``, and so do a ``.socket`` unit's. Connections
that arrive meanwhile wait in the socket's backlog for the next process.

:func:`listen_socket` is that lifecycle in one call: the socket systemd passed for the
address (by ``FDNAME``, else by address), else a newly bound one; stored under its name
when asked to, or when ``$FDSTORE`` (systemd >= 254) says the unit has a store. The passed
descriptors are taken from the environment once, on first use, and the variables removed
so that children do not take them too. ``sdready exec --listen`` and the gunicorn plugin
keep their sockets through :func:`keep_sockets`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from .. import texts
from .._env import fdstore_max, listen_fds, unset_listen_fds
from .._log import WarnOnce, logger
from .._notify._notifier import Notifier
from ._expect import Expectation, parse_expectations
from ._sockets import AF_UNIX, Listener, inspect_socket, listener

__all__ = [
    "BindAddress",
    "fdname_for",
    "forget_sockets",
    "keep_sockets",
    "keep_wanted",
    "listen_socket",
    "open_socket",
    "parse_address",
    "release_stale",
    "unclaimed_fds",
]

_BACKLOG = socket.SOMAXCONN


@dataclass(frozen=True, slots=True)
class BindAddress:
    """Where to listen: ``text`` as given, and what ``bind()`` takes."""

    text: str
    family: int
    sockaddr: str | bytes | tuple[str, int] | tuple[str, int, int, int]
    expectation: Expectation

    def matches(self, item: Listener) -> bool:
        return self.expectation.matches(item)


def parse_address(text: str) -> BindAddress:
    """``"127.0.0.1:8000"``, ``"[::1]:8000"``, ``"/run/app.sock"`` or ``"@abstract"``.

    Hosts are IP addresses (names are never resolved); raises ValueError otherwise.
    """
    if text.startswith("/"):
        return BindAddress(text, AF_UNIX, text, parse_expectations(text)[0])
    if text.startswith("@") and len(text) > 1:
        return BindAddress(text, AF_UNIX, b"\0" + text[1:].encode(), parse_expectations(text)[0])
    host, sep, port_text = text.rpartition(":")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port_text.isdigit() or bare in ("", "*", "localhost"):
        raise ValueError(
            f"listen address {text!r} is not 'IP:PORT', '[IPv6]:PORT', an absolute unix "
            "path or '@abstract'"
        )
    expectation = parse_expectations(text)[0]  # checks the IP and the port's range
    port = int(port_text)
    if ":" in bare:
        return BindAddress(text, socket.AF_INET6, (bare, port, 0, 0), expectation)
    return BindAddress(text, socket.AF_INET, (bare, port), expectation)


def fdname_for(address: str) -> str:
    """The default ``FDNAME`` of *address*: the address, ``:`` (LISTEN_FDNAMES' separator)
    made ``_``; ``"127.0.0.1:8000"`` is stored as ``127.0.0.1_8000``.

    Reversible, so that two addresses never share a name: a literal ``_`` or ``%``, and
    anything but printable ASCII, is written ``%XX`` (each UTF-8 byte), as in a URL
    (``/run/my_app.sock`` is ``/run/my%5Fapp.sock``). Past FDNAME's 255 characters, the
    name ends in a hash of the address.
    """
    name = "".join(
        "_" if c == ":" else c if c.isascii() and c.isprintable() and c not in "_%" else _escaped(c)
        for c in address
    )
    if len(name) > _FDNAME_MAX:
        import hashlib  # only for such names

        name = name[: _FDNAME_MAX - 17] + "~" + hashlib.sha256(address.encode()).hexdigest()[:16]
    return name or "_"


_FDNAME_MAX = 255


def _escaped(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


def _legacy_fdname(address: str) -> str:
    """The name earlier versions stored *address* under (not reversible: ``a:b`` and ``a_b``
    shared one), still recognised as sdready's own in the store."""
    name = "".join(c if c.isascii() and c.isprintable() and c != ":" else "_" for c in address)
    return name[:255] or "_"


def _own_names(address: str) -> tuple[str, str]:
    """The names sdready stores *address* under by default, now and in earlier versions."""
    return fdname_for(address), _legacy_fdname(address)


def keep_wanted(keep: bool | None) -> bool:
    """True for ``keep=True``; for None, when ``$FDSTORE`` says the unit has a store."""
    return fdstore_max() > 0 if keep is None else keep


class _Passed:
    """The descriptors systemd passed, taken from the environment once, claimed one by one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken = False
        self._fds: dict[int, str] = {}  # unclaimed: fd -> FDNAME
        self.kept: set[str] = set()  # FDNAMEs stored by this process
        #: One warning per problem (the fd store full, ...).
        self.warn_once = WarnOnce()

    def claim(
        self, address: BindAddress, name: str, notifier: Notifier
    ) -> tuple[socket.socket, str] | None:
        """The passed socket stored under *name* or listening on *address* (and under
        which FDNAME it came), or None.

        One stored under *name* that listens elsewhere is stale (the configured address
        changed): it leaves the store and is closed.
        """
        with self._lock:
            self._take()
            found = self._find(address, name, notifier)
            if found is None:
                return None
            fd, passed_as = found
            del self._fds[fd]
        logger.info("%s: the socket systemd passed (FDNAME=%s)", address.text, passed_as)
        return socket.socket(fileno=fd), passed_as

    def _take(self) -> None:
        if self._taken:
            return
        self._taken = True
        for fd, name in listen_fds():
            with contextlib.suppress(OSError):  # like sd_listen_fds(3): not for our children
                os.set_inheritable(fd, False)
                self._fds[fd] = name
        unset_listen_fds()

    def _find(self, address: BindAddress, name: str, notifier: Notifier) -> tuple[int, str] | None:
        by_address: tuple[int, str] | None = None
        for fd, fdname in list(self._fds.items()):
            item = _listener(fd)
            if fdname == name and (item is None or not address.matches(item)):
                where = item.address if item is not None else "not listening"
                logger.warning(texts.KEEP_STALE, name, where, address.text)
                forget_sockets([name], notifier)
                del self._fds[fd]
                with contextlib.suppress(OSError):
                    os.close(fd)
            elif item is not None and address.matches(item):
                if fdname == name:
                    return fd, fdname
                by_address = by_address or (fd, fdname)
        return by_address

    def release_stale(self, notifier: Notifier) -> None:
        """Remove and close the unclaimed sockets that sdready stored: listening, under
        their address's name, which nobody asked for any more. Every other descriptor (a
        ``.socket`` unit's, the app's own state, one stored under a chosen name) stays as
        it is, for :meth:`unclaimed`."""
        with self._lock:
            self._take()
            stale = []
            for fd, name in list(self._fds.items()):
                item = _listener(fd)
                if item is not None and name in _own_names(item.address):
                    stale.append((fd, name, item.address))
                    del self._fds[fd]
        for fd, name, where in stale:
            logger.warning(texts.KEEP_UNCLAIMED, name, where)
            forget_sockets([name], notifier)
            with contextlib.suppress(OSError):
                os.close(fd)

    def unclaimed(self) -> list[tuple[int, str]]:
        """Hand over the passed descriptors nobody claimed, ``(fd, FDNAME)`` in fd order:
        the caller owns them from now on."""
        with self._lock:
            self._take()
            rest = sorted(self._fds.items())
            self._fds.clear()
        return rest


_passed = _Passed()


def _listener(fd: int) -> Listener | None:
    state = inspect_socket(fd)
    if state is None or state.family is None or state.address is None:
        return None
    return listener(fd, os.fstat(fd).st_ino, state.family, state.address)


def _bind(address: BindAddress, backlog: int) -> socket.socket:
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        if address.family == AF_UNIX:
            if isinstance(address.sockaddr, str):
                _remove_dead_socket_file(address.sockaddr)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address.sockaddr)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    logger.info("%s: bound a new listening socket", address.text)
    return sock


def _remove_dead_socket_file(path: str) -> None:
    """A socket file nobody listens on (left by a killed server) would fail bind()."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return
    except OSError:
        return
    with socket.socket(AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)
        except OSError:
            pass


def forget_sockets(names: Iterable[str], notifier: Notifier) -> None:
    """Remove what the fd store holds under each of *names* (``FDSTOREREMOVE=1``)."""
    for name in dict.fromkeys(names):
        if notifier.send({"FDSTOREREMOVE": 1, "FDNAME": name}):
            logger.info("removed FDNAME=%s from systemd's fd store", name)
        _passed.kept.discard(name)


def keep_sockets(sockets: Iterable[tuple[socket.socket | int, str]], notifier: Notifier) -> int:
    """Hand each ``(socket, FDNAME)`` to systemd's fd store; return how many were sent.

    systemd ignores a socket it already holds, so keeping one again is harmless. It closes
    what does not fit (``FileDescriptorStoreMax=``): with ``$FDSTORE`` known, one warning
    says so; the sockets keep working either way.
    """
    if not notifier.enabled:
        logger.debug("no NOTIFY_SOCKET: no fd store to keep sockets in")
        return 0
    sent = 0
    for sock, name in sockets:
        if notifier.send({"FDSTORE": 1, "FDNAME": name}, fds=[sock]):
            sent += 1
            _passed.kept.add(name)
    limit = fdstore_max()
    if limit and len(_passed.kept) > limit:
        _passed.warn_once("full", texts.KEEP_STORE_FULL, len(_passed.kept), limit)
    elif not limit and sent:
        logger.info(texts.KEEP_STORE_UNKNOWN, ", ".join(sorted(_passed.kept)))
    return sent


def release_stale(notifier: Notifier) -> None:
    """Once every address was asked for: the stored sockets no address claimed leave the
    store and are closed (see :meth:`_Passed.release_stale`)."""
    _passed.release_stale(notifier)


def unclaimed_fds() -> list[tuple[int, str]]:
    """The descriptors systemd passed that no address claimed and :func:`release_stale`
    left alone, ``(fd, FDNAME)``; the caller owns (and closes) them from then on."""
    return _passed.unclaimed()


def open_socket(
    address: str,
    *,
    name: str | None = None,
    keep: bool | None = None,
    backlog: int | None = None,
    notifier: Notifier | None = None,
) -> tuple[socket.socket, str]:
    """:func:`listen_socket`, also saying where the socket came from: ``"bound"``,
    ``"stored"`` (the fd store, under its name) or ``"socket unit"`` (another name)."""
    target = parse_address(address)
    fdname = name or fdname_for(target.text)
    notifier = Notifier() if notifier is None else notifier
    claimed = _passed.claim(target, fdname, notifier)
    if claimed is None:
        sock, origin = _bind(target, _BACKLOG if backlog is None else backlog), "bound"
    else:
        sock, passed_as = claimed
        # Under another name it came from a .socket unit, which keeps it already.
        origin = "stored" if passed_as == fdname else "socket unit"
    if origin != "socket unit" and keep_wanted(keep):
        keep_sockets([(sock, fdname)], notifier)
    return sock, origin


def listen_socket(
    address: str, *, name: str | None = None, keep: bool | None = None, backlog: int | None = None
) -> socket.socket:
    """Return a listening socket for *address* that can outlive this process.

    The socket systemd passed (``LISTEN_FDS``, from a ``.socket`` unit or the fd store:
    found by ``FDNAME`` *name*, else by address), or else a newly bound one. It is kept in
    systemd's fd store under *name* when *keep* is True, or when *keep* is None (the
    default) and ``$FDSTORE`` says the unit has a store (systemd >= 254 with
    ``FileDescriptorStoreMax=``); the next start then gets it back, and connections made
    while the service restarts wait in its backlog instead of being refused.

    A socket stored under *name* that listens elsewhere (the address changed) is removed
    from the store and closed. Outside systemd, or when the store is full or disabled, the
    socket works all the same (one warning at most). Raises ValueError for a malformed
    address and OSError when binding fails.

    :param address: ``"127.0.0.1:8000"``, ``"[::]:8000"``, ``"/run/app.sock"`` or
        ``"@abstract"``.
    :param name: the ``FDNAME`` (default: the address as :func:`fdname_for` writes it).
    :param backlog: for a newly bound socket (default ``socket.SOMAXCONN``).

    Example::

        sock = sdready.listen_socket("127.0.0.1:8000")
        waitress.serve(app, sockets=[sock])
    """
    return open_socket(address, name=name, keep=keep, backlog=backlog)[0]
