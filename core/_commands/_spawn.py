"""Starting ``sdready exec``'s command so that it never outlives sdready.

Under systemd the unit's cgroup stops the command with sdready; outside systemd, or under
``KillMode=process``, a supervisor killed by SIGKILL would leave its command running,
reparented, still listening on its port. So the child asks the kernel for a signal when
its parent dies (``prctl(PR_SET_PDEATHSIG)``, kept across ``execve`` of anything but a
set-user-ID program), and checks right after asking that sdready did not die first (then
the signal would never come).

``posix_spawn`` cannot run that call in the child, so this is fork + exec, with what
``posix_spawn`` did done by hand in the child: its own process group, the signal mask,
default dispositions, the descriptors moved to 3, 4, …; an ``execve`` failure comes back
through a close-on-exec pipe, as its errno.

The signal is SIGTERM, not SIGKILL: a server's stop path then runs as on ``systemctl
stop`` and takes its own workers down (gunicorn's, ``uvicorn --workers``), where a SIGKILL of
the direct child would leave those workers orphaned and listening. A command that ignores
SIGTERM outlives a SIGKILLed sdready; it would ignore sdready's forwarded stop as well.

``prctl`` is reached through ``_ctypes`` (about 0.6 ms to import) rather than ``ctypes``
(10-20 ms: the command would start that much later); ``_ctypes.dlopen``, ``dlsym`` and
``call_function`` are CPython internals, named only here, with ``ctypes`` as the fallback.
"""

import errno as _errno
import os

from .._cstd import TYPE_CHECKING, c_types, signal

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

__all__ = ["DEATH_SIGNAL", "execvpe", "spawn"]

_PR_SET_PDEATHSIG = 1
DEATH_SIGNAL = signal.SIGTERM
_EXIT_FAILED = 127  # the child's status when execve failed (reported through the pipe)


def _prctl() -> "Callable[[int, int], object] | None":
    """``prctl(option, arg)`` of the C library, or None where there is none (not Linux)."""
    try:
        _ctypes: Any = c_types()
        program = _ctypes.dlopen(None, os.RTLD_NOW)  # NULL: ourselves
        address = _ctypes.dlsym(program, "prctl")
        call = _ctypes.call_function
    except (ImportError, OSError):
        return None
    except AttributeError:  # CPython's internals moved: the public, slower way
        return _prctl_ctypes()
    return lambda option, arg: call(address, (option, arg, 0, 0, 0))


def _prctl_ctypes() -> "Callable[[int, int], object] | None":
    try:
        import ctypes

        function = ctypes.CDLL(None).prctl
    except (ImportError, OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, *[ctypes.c_ulong] * 4]
    return lambda option, arg: function(option, arg, 0, 0, 0)


def spawn(  # noqa: PLR0913  (posix_spawn's set of options, by keyword)
    argv: "Sequence[str]",
    env: dict[str, str],
    *,
    dups: "Sequence[tuple[int, int]]",
    mask: "Iterable[int]",
    reset: "Iterable[int]",
    listen_pid: bool = False,
) -> int:
    """Run *argv* (``PATH`` searched) as a child that dies with us; return its pid.

    The child gets its own process group, the signal *mask*, the default disposition of
    each of *reset*, and each ``(fd, target)`` of *dups* as *target*; with *listen_pid*,
    ``LISTEN_PID`` set to its own pid (sd_listen_fds() checks it, and no one knows the pid
    before the fork). Raises the :class:`OSError` of its ``execve`` (``FileNotFoundError``
    and so on).
    """
    prctl = _prctl()
    parent = os.getpid()
    mask = set(mask)
    reset = tuple(reset)
    report_read, report_write = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover  (the child: it execs or exits)
            if listen_pid:
                env["LISTEN_PID"] = str(os.getpid())
            _child(argv, env, dups, mask, reset, prctl, parent, report_write)
    finally:
        os.close(report_write)
    try:
        report = b""
        while chunk := os.read(report_read, 16):
            report += chunk
    finally:
        os.close(report_read)
    if not report:
        return pid  # the pipe closed on execve
    os.waitpid(pid, 0)
    code = int(report) if report.isdigit() else _errno.EINVAL
    raise OSError(code, os.strerror(code))


def execvpe(argv: "Sequence[str]", env: dict[str, str]) -> None:
    """``os.execvpe(argv[0], argv, env)``: the same search of ``PATH`` (``os.defpath`` when
    unset) and the same error when it fails, without ``os.get_exec_path``, which imports
    ``warnings`` (about 0.5 ms, in the child before the command could start)."""
    file, args = argv[0], list(argv)
    if "/" in file:
        os.execve(file, args, env)
    first: OSError | None = None  # the first error other than "not there", as os raises it
    last: OSError = FileNotFoundError(_errno.ENOENT, os.strerror(_errno.ENOENT), file)
    for directory in env.get("PATH", os.defpath).split(os.pathsep):
        try:
            os.execve(os.path.join(directory, file), args, env)
        except (FileNotFoundError, NotADirectoryError) as exc:
            last = exc
        except OSError as exc:
            last = exc
            first = first or exc
    raise first or last


def _child(  # noqa: PLR0913, PLR0917  (spawn's arguments, passed through the fork)
    argv: "Sequence[str]",
    env: dict[str, str],
    dups: "Sequence[tuple[int, int]]",
    mask: set[int],
    reset: tuple[int, ...],
    prctl: "Callable[[int, int], object] | None",
    parent: int,
    report: int,
) -> None:
    code = _errno.EINVAL
    try:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, DEATH_SIGNAL)
            if os.getppid() != parent:  # sdready died before the call: no signal will come
                os._exit(_EXIT_FAILED)
        os.setpgid(0, 0)  # a terminal's Ctrl-C reaches only sdready, which forwards it once
        for signum in reset:
            signal.signal(signum, signal.SIG_DFL)
        for fd, target in dups:
            os.dup2(fd, target)  # the copy is inheritable; the original stays close-on-exec
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        execvpe(argv, env)
    except OSError as exc:
        code = exc.errno or _errno.EINVAL
    except BaseException:
        pass
    try:
        os.write(report, str(code).encode())
    finally:
        os._exit(_EXIT_FAILED)
