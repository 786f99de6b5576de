"""What systemd put in the environment: the notify socket, the watchdog period, passed
sockets, the main pid, the invocation; and whether this process runs in a container.

The one reader of systemd's variables: every other module asks here.
"""

import os

from ._cstd import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, MutableMapping

__all__ = [
    "CONTAINERENV",
    "LISTEN_FDS_START",
    "container",
    "fdstore_max",
    "invocation_id",
    "is_main_process",
    "listen_fdnames",
    "listen_fds",
    "listen_fds_count",
    "main_pid",
    "notify_socket",
    "oci_container",
    "pidfd_inode_id",
    "unset_listen_fds",
    "user_manager",
    "watchdog_interval",
    "watchdog_setting",
]

#: The first descriptor systemd passes (SD_LISTEN_FDS_START).
LISTEN_FDS_START = 3
_LISTEN_VARIABLES = ("LISTEN_PID", "LISTEN_PIDFDID", "LISTEN_FDS", "LISTEN_FDNAMES")

_USEC_INFINITY = 2**64 - 1

#: The file podman (and CRI-O) put in every container; its engines may not set $container.
CONTAINERENV = "/run/.containerenv"
# $container values of engines whose NOTIFY_SOCKET is a proxy (conmon's, or the OCI runtime's:
# crun, runc) that passes on only READY=1 and WATCHDOG=1. systemd-nspawn and LXC are not.
_PROXIED_ENGINES = frozenset({"podman", "oci", "docker", "crio", "crun", "runc"})


def watchdog_interval(
    environ: "Mapping[str, str] | None" = None, *, taking_over: int | None = None
) -> float | None:
    """Return systemd's watchdog period in seconds, or ``None`` when the watchdog is off.

    Reads ``WATCHDOG_USEC`` and honours ``WATCHDOG_PID`` like sd_watchdog_enabled(3):
    ``None`` when unset, zero, infinite or unparsable, or when meant for another pid —
    unless that pid is *taking_over*, the main pid this process replaced (``MAINPID=``).
    Ping at half this period.
    """
    env = os.environ if environ is None else environ
    period, _ = watchdog_setting(env)
    pid_text = env.get("WATCHDOG_PID")
    if pid_text is not None and (
        not pid_text.isdigit() or int(pid_text) not in (os.getpid(), taking_over)
    ):
        return None
    return period


def watchdog_setting(environ: "Mapping[str, str] | None" = None) -> tuple[float | None, int | None]:
    """``WatchdogSec=`` in seconds (None: off, infinite or unparsable) and the pid
    ``WATCHDOG_PID`` names (None: unset or unparsable), whoever the watchdog is for."""
    env = os.environ if environ is None else environ
    usec_text = env.get("WATCHDOG_USEC", "")
    pid_text = env.get("WATCHDOG_PID", "")
    pid = int(pid_text) if pid_text.isdigit() else None
    if not usec_text.isdigit() or not 0 < int(usec_text) < _USEC_INFINITY:
        return None, pid
    return int(usec_text) / 1_000_000, pid


def notify_socket(environ: "Mapping[str, str] | None" = None) -> str | None:
    """``NOTIFY_SOCKET`` as systemd set it (None: not started as ``Type=notify``)."""
    env = os.environ if environ is None else environ
    return env.get("NOTIFY_SOCKET")


def watchdog_elsewhere(environ: "Mapping[str, str] | None" = None) -> int | None:
    """The pid ``WATCHDOG_PID`` names when ``WatchdogSec=`` is set for another process than
    this one (uvicorn ``--workers``: the supervisor), else None."""
    env = os.environ if environ is None else environ
    pid_text = env.get("WATCHDOG_PID", "")
    if not env.get("WATCHDOG_USEC") or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return None
    return int(pid_text)


def listen_fdnames(environ: "Mapping[str, str] | None" = None) -> dict[int, str]:
    """The names ``LISTEN_FDNAMES`` gives the passed descriptors, by fd (3, 4, …), read on
    their own: gunicorn consumes ``LISTEN_FDS`` and ``LISTEN_PID`` but leaves the names."""
    env = os.environ if environ is None else environ
    names = env.get("LISTEN_FDNAMES", "").split(":")
    return {LISTEN_FDS_START + i: name for i, name in enumerate(names) if name}


def started_by_systemd(environ: "Mapping[str, str] | None" = None) -> bool:
    """True when a service manager started this process tree (``INVOCATION_ID`` is set)."""
    env = os.environ if environ is None else environ
    return bool(env.get("INVOCATION_ID"))


def listen_fds_count(environ: "Mapping[str, str] | None" = None) -> int:
    """Return how many sockets systemd passed (``LISTEN_FDS``) to this process.

    Like sd_listen_fds(3): 0 unless ``LISTEN_PID`` names this process (systemd always sets
    both; an heir that inherited them must not take the sockets), and, when systemd (259+)
    also set ``LISTEN_PIDFDID``, unless that is this process's pidfd inode id too (a pid
    reused by another process); where the kernel has no such ids (before pidfs, Linux
    6.9), ``LISTEN_PIDFDID`` is not checked, as sd_listen_fds(3) does.
    """
    env = os.environ if environ is None else environ
    count = env.get("LISTEN_FDS", "")
    pid = env.get("LISTEN_PID", "")
    if not count.isdigit() or not pid.isdigit() or int(pid) != os.getpid():
        return 0
    pidfd_id = env.get("LISTEN_PIDFDID")
    if pidfd_id is not None:
        if not pidfd_id.isdigit():
            return 0
        own = pidfd_inode_id()
        if own is not None and own != int(pidfd_id):
            return 0
    return int(count)


_own_pidfd_id: tuple[int, int | None] | None = None  # (pid, its id): reset by a fork


def pidfd_inode_id() -> int | None:
    """This process's pidfd inode id (systemd's ``LISTEN_PIDFDID``), or None where pidfds
    are not on pidfs (Linux < 6.9: they all share the anonymous inode) or cannot be made."""
    global _own_pidfd_id  # noqa: PLW0603  (asked once per process, then cached)
    pid = os.getpid()
    if _own_pidfd_id is not None and _own_pidfd_id[0] == pid:
        return _own_pidfd_id[1]
    found: int | None = None
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd_open: Python built without it, Linux < 5.3
        pidfd = -1
    if pidfd >= 0:
        try:
            # An eventfd lives on the anonymous inode filesystem: a pidfd on pidfs does not.
            anon = os.eventfd(0)
            try:
                on_pidfs = os.fstat(pidfd).st_dev != os.fstat(anon).st_dev
            finally:
                os.close(anon)
            found = os.fstat(pidfd).st_ino if on_pidfs else None
        except (AttributeError, OSError):
            found = None
        finally:
            os.close(pidfd)
    _own_pidfd_id = (pid, found)
    return found


def listen_fds(environ: "Mapping[str, str] | None" = None) -> list[tuple[int, str]]:
    """``(fd, name)`` for each socket systemd passed to this process, from fd 3 on.

    Names come from ``LISTEN_FDNAMES`` (``"unknown"`` where it gives none, as
    sd_listen_fds_with_names(3)); empty unless ``LISTEN_PID`` names this process.
    """
    env = os.environ if environ is None else environ
    count = listen_fds_count(env)
    names = env.get("LISTEN_FDNAMES", "").split(":") if count else []
    return [
        (LISTEN_FDS_START + i, names[i] if i < len(names) and names[i] else "unknown")
        for i in range(count)
    ]


def unset_listen_fds(environ: "MutableMapping[str, str] | None" = None) -> None:
    """Remove ``LISTEN_PID``, ``LISTEN_PIDFDID``, ``LISTEN_FDS`` and ``LISTEN_FDNAMES``
    (children must not take sockets meant for this process)."""
    env = os.environ if environ is None else environ
    for name in _LISTEN_VARIABLES:
        env.pop(name, None)


def fdstore_max(environ: "Mapping[str, str] | None" = None) -> int:
    """``$FDSTORE``: how many descriptors the unit's fd store holds (systemd >= 254 sets it
    when ``FileDescriptorStoreMax=`` is above 0); 0 when unset or unparsable."""
    env = os.environ if environ is None else environ
    text = env.get("FDSTORE", "")
    return int(text) if text.isdigit() else 0


def main_pid(environ: "Mapping[str, str] | None" = None) -> int | None:
    """The unit's main pid as systemd named it (``SYSTEMD_EXEC_PID``), or None.

    None outside systemd, or where the variable is missing or unparsable (systemd < 248).
    """
    env = os.environ if environ is None else environ
    text = env.get("SYSTEMD_EXEC_PID", "")
    return int(text) if text.isdigit() else None


def invocation_id(environ: "Mapping[str, str] | None" = None) -> str | None:
    """This unit start's id (``INVOCATION_ID``) when systemd started us, else None.

    None too when ``NOTIFY_SOCKET`` is set but is not a service manager's (``…/systemd/notify``):
    a test's recorder stands in for systemd, and the unit around is not the app's.
    """
    env = os.environ if environ is None else environ
    invocation = env.get("INVOCATION_ID")
    if not invocation or not env.get("NOTIFY_SOCKET", "/systemd/notify").endswith(
        "/systemd/notify"
    ):
        return None
    return invocation


def user_manager(environ: "Mapping[str, str] | None" = None) -> bool:
    """True when a user manager started this process (it sets ``MANAGERPID``)."""
    env = os.environ if environ is None else environ
    return env.get("MANAGERPID", "").isdigit()


def is_main_process(environ: "Mapping[str, str] | None" = None, pid: int | None = None) -> bool:
    """False when systemd names another process than *pid* (default: this one) as the
    unit's main one; True when it names none (see :func:`main_pid`)."""
    main = main_pid(environ)
    return main is None or main == (os.getpid() if pid is None else pid)


def container(
    environ: "Mapping[str, str] | None" = None, containerenv: str | None = None
) -> str | None:
    """The container this process runs in: ``$container`` (systemd's convention, set by
    podman, systemd-nspawn, LXC…), else ``"podman"`` when *containerenv* exists; None on a host."""
    env = os.environ if environ is None else environ
    engine = env.get("container")
    if engine:
        return engine
    return "podman" if os.path.exists(containerenv or CONTAINERENV) else None


def oci_container(
    environ: "Mapping[str, str] | None" = None, containerenv: str | None = None
) -> str | None:
    """The engine when this process runs in an OCI container (podman, CRI-O, crun, runc),
    else None. There a ``NOTIFY_SOCKET`` is conmon's or the runtime's proxy, which passes on
    only ``READY=1`` and ``WATCHDOG=1`` (runc: only a datagram that begins with ``READY=``)."""
    env = os.environ if environ is None else environ
    engine = container(env, containerenv)
    if engine in _PROXIED_ENGINES or (
        engine is not None and os.path.exists(containerenv or CONTAINERENV)
    ):
        return engine
    return None
