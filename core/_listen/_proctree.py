"""Listening sockets of *another* process tree: what ``sdready exec`` and ``wait-listen`` watch.

The in-process walk of :mod:`sdready._listen._listeners` asks the kernel about our own fds. Another
process's sockets are reached in one of three ways:

``pidfd``
    ``pidfd_open(2)`` + ``pidfd_getfd(2)`` (Linux 5.6+) duplicate each socket of the target
    into this process, where the same ``SO_ACCEPTCONN`` + ``getsockname`` questions are asked
    and the duplicate is closed at once. Exact, and the cost does not grow with the host's
    connection count. Needs ptrace-attach rights over the target: the same uid with Yama
    ``ptrace_scope`` 0 or 1 (a child is our descendant, so 1 is fine), or ``CAP_SYS_PTRACE``;
    a target that is not dumpable (it ran a setuid binary or called
    ``prctl(PR_SET_DUMPABLE, 0)``) refuses.
``proc``
    The socket inodes from ``/proc/PID/fd`` matched against ``/proc/PID/net/{tcp,tcp6,unix}``
    (:mod:`sdready._listen._proctables`). Needs only ptrace-*read* rights (same uid, or
    ``CAP_SYS_PTRACE``), but reads tables as large as the network namespace's socket count;
    they are read only while a socket is undecided.

``sockdiag``
    A netlink ``sock_diag`` dump of the network namespace's *listeners*
    (:mod:`sdready._listen._sockdiag`), tens of microseconds whatever the host runs, when the
    namespace's socket counts (``/proc/net/sockstat``, a few microseconds to read) moved or
    a few milliseconds passed; the tree's descriptors are read (``/proc/PID/fd``, matched
    by inode) only when a listener the tree was not known to hold appears, and twice a
    second in case sockets moved between processes. Cheap enough to be polled every half
    millisecond (:attr:`max_interval`). Needs the tree in our network namespace; nothing
    else.

``auto`` uses ``sockdiag`` while the tree shares our network namespace and netlink
answers, else ``pidfd`` where the interpreter, the architecture (the syscall number is
known) and the kernel allow it, and falls back to ``proc`` for a process that refuses.
"""

import errno as _errno
import os
import time

from .._cstd import TYPE_CHECKING
from .._log import logger
from ._sockdiag import SockDiag, SocketCounts, same_network_namespace
from ._sockets import AF_UNIX, Address, Listener, inspect_socket, listener
from ._wait import MAX_DUTY

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable
    from typing import Literal, TypeAlias

    Method: TypeAlias = Literal["auto", "sockdiag", "pidfd", "proc"]

__all__ = [
    "ProcessTree",
    "TreeListeners",
    "alive",
    "cgroup_pids",
    "claim_abstract",
    "descends_from",
    "namespace_listeners",
    "pidfd_getfd_support",
    "process_tree",
    "sockdiag_support",
    "socket_inodes",
]

METHODS: "tuple[Method, ...]" = ("auto", "sockdiag", "pidfd", "proc")

#: How often a sock_diag watch without the counts (/proc/self/net/sockstat unreadable)
#: may be polled: a dump at every poll costs ~30-60 us, so 1 ms is ~5 % of a core.
_SOCKDIAG_INTERVAL = 0.001
#: How often a watch with the namespace's socket counts (SocketCounts) may be polled: a
#: poll reads them (a few microseconds) and dumps only when they moved, so READY follows a
#: TCP listen() within about a millisecond. The wait's duty cap still holds: a poll that
#: costs more than 25 us (a slow or busy machine) spaces them further.
_COUNTS_INTERVAL = 0.0005
#: After the counts moved, a dump at each poll for this long: a server's socket() moves
#: them just before its listen(), and a unix listen() moves none.
_BURST = 0.02
#: A dump of TCP and unix listeners at least this often, counts moved or not: a unix
#: socket made long before it listens, counts that cancelled out (a listener opened as a
#: connection closed).
_BACKSTOP = 0.008
#: CPU seconds of dumps that may come in a row; beyond them, dumps take no more than the
#: duty cap's share of a core (a namespace whose sockets come and go all the time).
_DUMP_BUDGET = 0.0005
#: How often a sock_diag watch reads the tree's descriptors even when the namespace's
#: listeners did not change: a socket handed between processes, a process that moved to
#: another network namespace.
_SOCKDIAG_REWALK = 0.5

# pidfd_getfd is 438 wherever the kernel uses the unified syscall table of Linux 5.1+; alpha,
# ia64 and the mips ABIs number it differently, so those fall back to /proc.
_PIDFD_GETFD = 438
_UNIFIED_TABLE_ARCHES = frozenset(
    {
        "x86_64",
        "amd64",
        "i386",
        "i486",
        "i586",
        "i686",
        "aarch64",
        "arm64",
        "armv6l",
        "armv7l",
        "armv8l",
        "riscv64",
        "ppc64",
        "ppc64le",
        "s390x",
        "loongarch64",
    }
)
# Errors that mean "pidfd_getfd cannot be used on this process", not "the fd went away".
_REFUSED = frozenset({_errno.EPERM, _errno.EACCES, _errno.ENOSYS, _errno.EINVAL})


# -- processes ---------------------------------------------------------------------------


def _stat_after_name(pid: int) -> bytes | None:
    """``/proc/PID/stat`` from its third field (the state) on; None when it cannot be read.

    The command name (field 2) may contain spaces and parentheses: split after the last ")".
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read(1024)
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :]


def _parent_pid(pid: int) -> int | None:
    rest = _stat_after_name(pid)
    if rest is None:
        return None
    try:
        return int(rest.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def _own_cgroup() -> str:
    """Our cgroup v2 path (``/system.slice/app.service``), or "" where there is none."""
    try:
        with open("/proc/self/cgroup") as lines:
            return next((line[3:].strip() for line in lines if line.startswith("0::")), "")
    except OSError:
        return ""


def cgroup_pids() -> list[int] | None:
    """Every pid in our own cgroup (v2), or None where that cannot be read."""
    path = _own_cgroup()
    if not path:
        return None
    for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        try:
            with open(f"{root}{path}/cgroup.procs") as procs:
                pids = [int(line) for line in procs if line.strip()]
        except (OSError, ValueError):
            continue
        if os.getpid() in pids:
            return pids
    return None


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets *pid* holds (empty when its fds cannot be read)."""
    return set((_socket_fds(pid) or {}).values())


def _service_cgroup_pids() -> list[int] | None:
    """Every pid in our cgroup when it is a systemd service's own cgroup, else None.

    Reading one ``cgroup.procs`` is much cheaper than scanning all of ``/proc`` on a busy
    host, and a service's descendants all live in its cgroup (without ``Delegate=``).
    """
    from .._env import started_by_systemd  # only --pid walks: wait-listen's start-up skips it

    if not started_by_systemd() or not _own_cgroup().endswith(".service"):
        return None
    return cgroup_pids()


def descends_from(pid: int, root: int) -> bool:
    """True when *pid* is *root* or one of its living descendants (its parents, walked up)."""
    for _ in range(4096):  # a chain of parents is finite; a bound against a pid-reuse loop
        if pid == root:
            return True
        parent = _parent_pid(pid)
        if parent is None or parent <= 0:
            return False
        pid = parent
    return False


def alive(pid: int) -> bool:
    """True while *pid* exists and is not a zombie (exited, not yet reaped)."""
    rest = _stat_after_name(pid)
    return rest is not None and rest[:1] not in (b"Z", b"X")


def process_tree(root: int) -> list[int]:
    """*root* and its living descendants (root first; empty when *root* is gone)."""
    return ProcessTree(root).pids()


class ProcessTree:
    """*root* and its living descendants, looked at again and again (a watch's polls).

    A process found outside the tree stays outside: its parent changes only when that
    parent dies, and then to a reaper that never gains a process from outside the tree. So
    each look lists the candidates and reads ``/proc/PID/stat`` only for processes it has
    not placed yet, and for the tree's own (which leave it when reparented): on a host with
    hundreds of processes, a fraction of a millisecond instead of several.
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self._outside: set[int] = set()

    def pids(self) -> list[int]:
        """*root* and its living descendants now (root first; empty when *root* is gone)."""
        root = self.root
        if not alive(root):
            return []
        candidates = _service_cgroup_pids()
        if candidates is None:
            candidates = [int(name) for name in os.listdir("/proc") if name.isdigit()]
        outside = self._outside
        outside.intersection_update(candidates)  # forget the gone (their pids may return)
        children: dict[int, list[int]] = {}
        for pid in candidates:
            if pid != root and pid not in outside:
                parent = _parent_pid(pid)
                if parent is not None:
                    children.setdefault(parent, []).append(pid)
        tree = [root]
        for pid in tree:  # grows while iterating: breadth-first
            tree.extend(children.pop(pid, ()))
        for orphans in children.values():  # not descendants: never again
            outside.update(orphans)
        return tree


def _socket_fds(pid: int) -> dict[int, int] | None:
    """``{fd: inode}`` of the sockets *pid* holds; None when its fds cannot be read."""
    sockets: dict[int, int] = {}
    base = f"/proc/{pid}/fd/"
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return {}  # gone meanwhile
    except OSError:
        return None  # EACCES: another uid, or not dumpable
    for name in names:
        try:
            target = os.readlink(base + name)
        except OSError:
            continue  # closed during the walk
        if target.startswith("socket:["):
            sockets[int(name)] = int(target[8:-1])
    return sockets


def _unix_socket(pid: int, fd: int, inode: int) -> bool:
    """True when *pid*'s *fd* is unix socket *inode*, as the socket itself says (sockfs's
    ``system.sockprotoname``), not as a table line that anyone's socket name can forge."""
    path = f"/proc/{pid}/fd/{fd}"
    try:
        name = os.getxattr(path, "system.sockprotoname")
        same = os.stat(path).st_ino == inode
    except OSError:
        return False  # closed meanwhile: asked again at the next poll
    return same and name.startswith(b"UNIX")


# -- pidfd_getfd ---------------------------------------------------------------------------

_syscall: "Callable[..., int] | None" = None
_support: tuple[bool, str] | None = None


def pidfd_getfd_support() -> tuple[bool, str]:
    """``(usable, why)``: can this interpreter on this kernel and architecture use pidfd_getfd?

    Tested once against this process itself (always permitted); whether another process
    permits it is only known when asked.
    """
    global _support, _syscall  # noqa: PLW0603  (probed once per process, then cached)
    if _support is not None:
        return _support
    import platform  # here: a watch that sock_diag serves never needs it (nor ctypes)

    machine = platform.machine().lower()
    if not hasattr(os, "pidfd_open"):
        _support = (False, "os.pidfd_open is missing (needs Linux 5.3+)")
    elif machine not in _UNIFIED_TABLE_ARCHES:
        _support = (False, f"pidfd_getfd's syscall number on {machine or 'this CPU'} is unknown")
    else:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            syscall = libc.syscall
            syscall.restype = ctypes.c_long
        except (ImportError, OSError, AttributeError) as exc:
            _support = (False, f"ctypes cannot call syscall(): {exc}")
        else:
            _syscall = syscall
            _support = _probe_self()
    return _support


def _probe_self() -> tuple[bool, str]:
    try:
        pidfd = os.pidfd_open(os.getpid())
    except OSError as exc:
        return False, f"pidfd_open failed: {exc.strerror}"
    try:
        fd = _getfd(pidfd, pidfd)
    except OSError as exc:
        return False, f"pidfd_getfd failed: {exc.strerror} (needs Linux 5.6+)"
    finally:
        os.close(pidfd)
    os.close(fd)
    uname = os.uname()
    return True, f"pidfd_getfd available (Linux {uname.release}, {uname.machine})"


def _getfd(pidfd: int, target_fd: int) -> int:
    assert _syscall is not None
    import ctypes

    fd = _syscall(_PIDFD_GETFD, pidfd, target_fd, 0)
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return fd


_diag_support: tuple[bool, str] | None = None


def sockdiag_support() -> tuple[bool, str]:
    """``(usable, why)``: does netlink sock_diag answer here (one dump, tried once)?"""
    if _diag_support is None:
        _namespace_dump()
    assert _diag_support is not None
    return _diag_support


def _namespace_dump() -> dict[int, tuple[int, Address]] | None:
    """One sock_diag dump of our network namespace's listeners; None where netlink refuses
    (the first answer, either way, is what :func:`sockdiag_support` says from then on)."""
    global _diag_support  # noqa: PLW0603  (probed once per process, then cached)
    if _diag_support is not None and not _diag_support[0]:
        return None
    try:
        with SockDiag() as diag:
            found = diag.listeners()
    except (OSError, AttributeError) as exc:  # AttributeError: no AF_NETLINK (not Linux)
        if _diag_support is None:
            _diag_support = (False, f"netlink sock_diag refused: {exc}")
        else:
            logger.debug("netlink sock_diag failed (%s): reading /proc/net instead", exc)
        return None
    if _diag_support is None:
        _diag_support = (True, "netlink sock_diag answers (one dump of the listeners per poll)")
    return found


def _inspect_duplicate(dup: int, fd: int, inode: int) -> tuple[Listener | None, bool]:
    """``(listener, final)`` for *dup*, our duplicate of another process's socket *fd*.

    ``final`` is True when the socket can never become a listener, so it need not be asked
    about again: not a TCP or unix stream socket, or connected already.
    """
    state = inspect_socket(dup, peer=True)
    if state is None:
        return None, False
    if state.family is None or state.connected:
        return None, True
    if state.address is None:
        return None, False  # not connected: it may still listen()
    return listener(fd, inode, state.family, state.address), False


def namespace_listeners(
    pid: int | None = None,
    *,
    tables: bool = False,
    wanted: "Callable[[Listener], bool] | None" = None,
) -> list[Listener]:
    """Every listening TCP and unix socket in the network namespace of *pid* (default ours).

    For ``wait-listen`` without a pid: the owner is unknown, so ``fd`` is -1. One sock_diag
    dump where netlink answers for that namespace (unless *tables*), else the ``/proc/net``
    tables. There a unix listener counts only once connecting to it succeeds (with no
    descriptor to check its inode against, its line may be forged), and only those that
    *wanted* names are asked: a connection to any other would reach a service that never
    expected one, and start it if it is socket-activated. Without *wanted*, the tables give
    no unix listener.
    """
    found = None
    if not tables and (pid is None or same_network_namespace(pid)):
        found = _namespace_dump()
    if found is not None:
        return [listener(-1, inode, *described) for inode, described in found.items()]
    # The slow way, loaded if used.
    from ._proctables import listener_from_entry, read_tables, unix_listens

    netdir = "/proc/net" if pid is None else f"/proc/{pid}/net"
    listeners = []
    for inode, entry in read_tables(netdir, None).items():
        if not entry.listening:
            continue
        item = listener_from_entry(-1, inode, entry)
        if entry.family == AF_UNIX and not (
            wanted is not None and wanted(item) and unix_listens(entry.path)
        ):
            continue
        listeners.append(item)
    return listeners


# -- the watcher ---------------------------------------------------------------------------


class TreeListeners:
    """The listening sockets of a process and its descendants, polled on demand.

    Verdicts about sockets that can never listen (connected, datagram) are cached by inode,
    so a poll redoes only what can have changed. Not thread-safe.

    Example::

        watch = TreeListeners(child.pid)
        while not (found := watch.poll()):
            time.sleep(0.01)
        watch.close()
    """

    def __init__(self, root: int, method: "Method" = "auto") -> None:
        if method not in METHODS:
            raise ValueError(
                f"method must be one of {', '.join(map(repr, METHODS))}, not {method!r}"
            )
        self.root = root
        self.requested: Method = method
        self._tree = ProcessTree(root)
        self._diag = self._open_diag() if method in ("auto", "sockdiag") else None
        # Probed only when needed (it loads ctypes): pidfd serves "auto" once sock_diag cannot.
        self._use_pidfd = method == "pidfd" or (method == "auto" and self._diag is None)
        self._use_pidfd = self._use_pidfd and pidfd_getfd_support()[0]
        if method == "pidfd" and not self._use_pidfd:
            raise OSError(_errno.ENOSYS, pidfd_getfd_support()[1])
        self._owned: dict[int, tuple[int, int]] = {}  # sockdiag: listener inode -> (pid, fd)
        self._foreign: set[int] = set()  # sockdiag: listeners the tree did not hold
        self._members: list[int] = []  # sockdiag: the tree at the last walk
        self._walked = -_SOCKDIAG_REWALK
        self._diag_polls = 0
        self._counts = self._open_counts() if self._diag is not None else None
        self._last_dump = self._moved = -float("inf")
        self._budget = _DUMP_BUDGET  # CPU seconds of dumps allowed now
        self._budget_at = time.monotonic()
        self._listening: dict[int, tuple[int, Address]] = {}  # what the last dump said
        self._result: list[Listener] = []  # what the last poll that looked found
        self._pidfds: dict[int, int] = {}
        self._refused: set[int] = set()  # pids that refused pidfd_getfd: use /proc for them
        self._unreadable: set[int] = set()
        self._never: set[int] = set()  # inodes that can never become listeners
        self._found: dict[int, Listener] = {}  # inode -> listener (sockets stay listening)
        self.methods_used: set[str] = set()

    @property
    def method(self) -> str:
        """The method in use: ``"sockdiag"``, ``"pidfd"``, ``"proc"``, or those used, joined
        with ``+``, after a fallback."""
        if self.methods_used:
            return "+".join(sorted(self.methods_used))
        return "sockdiag" if self._diag is not None else "pidfd" if self._use_pidfd else "proc"

    @property
    def max_interval(self) -> float | None:
        """The longest spacing between polls that this watch's cost allows, for the wait
        (:class:`sdready._listen._listeners._Wait`); None: the wait's own schedule."""
        if self._diag is None:
            return None
        return _SOCKDIAG_INTERVAL if self._counts is None else _COUNTS_INTERVAL

    def __call__(self) -> list[Listener]:
        """:meth:`poll`: a watch is a listener source (with its :attr:`max_interval`)."""
        return self.poll()

    @property
    def unreadable(self) -> set[int]:
        """Pids in the tree whose fds could not be read at all (another uid, not dumpable)."""
        return set(self._unreadable)

    def poll(self) -> list[Listener]:
        """The listeners the tree holds now, one per socket (inode), in discovery order."""
        if self._diag is not None:
            try:
                found = self._poll_sockdiag(self._diag)
            except OSError as exc:
                found = None
                self._stop_sockdiag(f"netlink sock_diag failed: {exc}")
            if found is not None:
                return found
        return self._poll_descriptors()

    def _open_diag(self) -> SockDiag | None:
        usable, why = sockdiag_support()
        if not usable:
            if self.requested == "sockdiag":
                raise OSError(_errno.ENOSYS, why)
            return None
        if not same_network_namespace(self.root):
            if self.requested == "sockdiag":
                raise OSError(_errno.EXDEV, f"pid {self.root} is in another network namespace")
            return None
        return SockDiag()

    @staticmethod
    def _open_counts() -> SocketCounts | None:
        try:
            return SocketCounts()
        except (OSError, IndexError):  # unreadable, or a format we do not know
            return None

    def _close_counts(self) -> None:
        if self._counts is not None:
            self._counts.close()
            self._counts = None

    def _stop_sockdiag(self, why: str) -> None:
        assert self._diag is not None
        self._diag.close()
        self._diag = None
        self._close_counts()
        if self.requested == "sockdiag":  # asked for it alone: nothing else is tried
            raise OSError(_errno.EXDEV, why)
        self._use_pidfd = pidfd_getfd_support()[0]
        logger.info("%s: reading the process tree's descriptors instead", why)

    def _poll_sockdiag(self, diag: SockDiag) -> list[Listener] | None:
        """A dump when one is due (:meth:`_due_dump`), else what the last one said; the
        tree's descriptors only when a listener not known to be the tree's (or not to be)
        appeared, or it is time to look again. None: fall back."""
        now = time.monotonic()
        due = self._due_dump(now)
        if due is None and now - self._walked < _SOCKDIAG_REWALK:
            return [*self._result]
        if due is not None:
            self._diag_polls += 1
            cpu = time.thread_time()
            self._listening = diag.listeners(unix=due == "all")
            self._budget -= time.thread_time() - cpu
            self._last_dump = now
        listening = self._listening
        unknown = [i for i in listening if i not in self._owned and i not in self._foreign]
        if now - self._walked >= _SOCKDIAG_REWALK or (
            unknown and not self._claim(unknown, listening)
        ):
            if not self._walk_owners(listening):
                return None
            self._walked = now
        self.methods_used.add("sockdiag")
        self._result = [
            listener(fd, inode, *listening[inode])
            for inode, (_pid, fd) in self._owned.items()
            if inode in listening
        ]
        return [*self._result]

    def _due_dump(self, now: float) -> "Literal['all', 'tcp'] | None":
        """The dump this poll makes: TCP and unix (``"all"``), TCP alone, or none.

        Without the counts, a dump at every poll. Each costs about as much as the other:
        TCP listeners, by far the most common, are looked for at every one, unix ones at
        every other, so that a poll is cheap and the duty cap lets it come often.

        With the counts, a dump while they move (or did within :data:`_BURST`), unix at
        every other as above, and a whole one at least every :data:`_BACKSTOP` (a unix
        listen() moves no count); all within the dumps' budget (:data:`_DUMP_BUDGET`,
        refilled at the duty cap's rate).
        """
        alternate: Literal["all", "tcp"] = "all" if self._diag_polls % 2 == 0 else "tcp"
        counts = self._counts
        if counts is None:
            return alternate
        try:
            if counts.changed():
                self._moved = now
        except (OSError, IndexError):
            self._close_counts()
            return alternate
        self._budget = min(_DUMP_BUDGET, self._budget + (now - self._budget_at) * MAX_DUTY)
        self._budget_at = now
        if self._budget <= 0:
            return None
        if now - self._last_dump >= _BACKSTOP:
            return "all"
        return alternate if now - self._moved < _BURST else None

    def _claim(self, unknown: list[int], listening: dict[int, tuple[int, Address]]) -> bool:
        """Look for *unknown* listeners in the processes the last walk found in the tree,
        where a new one nearly always is (the server itself), without listing /proc; True
        when every one was found there."""
        found: dict[int, tuple[int, int]] = {}
        for pid, sockets in self._tree_sockets(self._members):
            for fd, inode in sorted(sockets.items()):
                if inode in listening and inode not in self._owned:
                    found.setdefault(inode, (pid, fd))
        if not found.keys() >= set(unknown):
            return False  # in a new process, or not the tree's: the full walk decides
        self._owned.update(found)
        return True

    def _walk_owners(self, listening: dict[int, tuple[int, Address]]) -> bool:
        """Which of *listening* the tree holds; False when part of it is in another network
        namespace (its listeners are not in our dump)."""
        owned: dict[int, tuple[int, int]] = {}
        self._members = self._tree.pids()
        for pid, sockets in self._tree_sockets(self._members):
            # Only a process holding sockets matters (one that exited meanwhile falls back).
            if sockets and not same_network_namespace(pid):
                self._stop_sockdiag(f"pid {pid} is in another network namespace")
                return False
            for fd, inode in sorted(sockets.items()):
                if inode in listening:
                    owned.setdefault(inode, (pid, fd))
        self._owned = owned
        self._foreign = set(listening).difference(owned)
        return True

    def _tree_sockets(self, tree: list[int]) -> list[tuple[int, dict[int, int]]]:
        """``(pid, {fd: inode})`` for each process of *tree* whose descriptors can be read;
        warns once about each that cannot."""
        self._unreadable.intersection_update(tree)
        readable = []
        for pid in tree:
            sockets = _socket_fds(pid)
            if sockets is not None:
                readable.append((pid, sockets))
            elif pid not in self._unreadable:
                self._unreadable.add(pid)
                logger.warning(
                    "cannot read /proc/%d/fd (another user, or not dumpable): the listening "
                    "sockets of that process are not seen",
                    pid,
                )
        return readable

    def _poll_descriptors(self) -> list[Listener]:
        tree = self._tree.pids()
        alive = set(tree)
        for pid in [p for p in self._pidfds if p not in alive]:
            os.close(self._pidfds.pop(pid))
        result: dict[int, Listener] = {}
        table_wanted: dict[int, tuple[int, int]] = {}  # inode -> (pid, fd)
        for pid, sockets in self._tree_sockets(tree):
            for fd, inode in sockets.items():
                if inode in result or inode in self._never:
                    continue
                known = self._found.get(inode)
                if known is not None:
                    result[inode] = known
                    continue
                if self._use_pidfd and pid not in self._refused:
                    listener = self._ask_pidfd(pid, fd, inode)
                    if listener is not None:
                        result[inode] = listener
                    if pid not in self._refused:
                        continue
                if self.requested != "pidfd":  # "pidfd" alone: a refusing process is not seen
                    table_wanted.setdefault(inode, (pid, fd))
        if table_wanted:
            self._ask_tables(table_wanted, result)
        return list(result.values())

    def close(self) -> None:
        """Close the netlink socket and the pidfds held for the tree's processes."""
        if self._diag is not None:
            self._diag.close()
            self._diag = None
        self._close_counts()
        for pidfd in self._pidfds.values():
            os.close(pidfd)
        self._pidfds.clear()

    def __enter__(self) -> "TreeListeners":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _ask_pidfd(self, pid: int, fd: int, inode: int) -> Listener | None:
        pidfd = self._pidfds.get(pid)
        try:
            if pidfd is None:
                pidfd = self._pidfds[pid] = os.pidfd_open(pid)
            dup = _getfd(pidfd, fd)
        except OSError as exc:
            if exc.errno in _REFUSED:
                self._refuse(pid, exc)
            return None  # ESRCH/EBADF: the process or the fd went away meanwhile
        self.methods_used.add("pidfd")
        try:
            listener, final = _inspect_duplicate(dup, fd, inode)
        finally:
            os.close(dup)  # ours alone: closing it never touches the app's socket
        if listener is not None:
            self._found[inode] = listener
        elif final:
            self._never.add(inode)
        return listener

    def _refuse(self, pid: int, exc: OSError) -> None:
        self._refused.add(pid)
        if self.requested == "pidfd":
            logger.warning(
                "pidfd_getfd on pid %d refused (%s): with method 'pidfd' its sockets are not seen",
                pid,
                exc.strerror,
            )
            return
        logger.info(
            "pidfd_getfd on pid %d refused (%s): reading /proc/%d/net tables instead",
            pid,
            exc.strerror,
            pid,
        )

    def _ask_tables(self, wanted: dict[int, tuple[int, int]], result: dict[int, Listener]) -> None:
        from ._proctables import listener_from_entry, read_tables  # the slow way, loaded if used

        self.methods_used.add("proc")
        owner = next(iter(wanted.values()))[0]
        entries = read_tables(f"/proc/{owner}/net", set(wanted))
        for inode, (pid, fd) in wanted.items():
            entry = entries.get(inode)
            if entry is None:
                continue  # not TCP/unix, or not bound yet: ask again next time
            if entry.family == AF_UNIX and not _unix_socket(pid, fd, inode):
                continue  # a forged unix line naming another kind of socket's inode
            if entry.listening:
                listener = listener_from_entry(fd, inode, entry)
                self._found[inode] = listener
                result[inode] = listener
            elif entry.final:
                self._never.add(inode)


def claim_abstract(name: str, held: "list[socket.socket]") -> bool:
    """True when this process is the first of its service (its cgroup) to claim the
    abstract unix name *name*; the claiming socket goes into *held*, kept while it lives.

    A datagram socket, which no listener discovery mistakes for the server's. Any local user
    can bind any abstract name first, so a name found taken counts only if a process of our
    own cgroup and user holds a socket bound to it (its inode, in ``/proc/net/unix``, among
    that process's descriptors): a stranger squatting the name does not stop the claim's work.
    """
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind("\0" + name)
    except OSError:
        sock.close()
    else:
        held.append(sock)
        return True
    from ._proctables import unix_inodes_named  # only when the name is taken

    holders = unix_inodes_named("/proc/self/net", "@" + name)
    members = cgroup_pids()
    if members is None:
        return False  # no cgroup v2 to tell ours from strangers: as before, "taken"
    return not any(holders & socket_inodes(pid) for pid in members if _same_user(pid))


def _same_user(pid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}").st_uid == os.geteuid()
    except OSError:
        return False
