"""``sdready exec``: run a server as a child and speak for it to systemd.

The supervisor spawns the command, forwards stop and control signals to it, and drives a
:class:`~sdready.Readiness` whose listener source is the child's process tree
(:mod:`sdready._listen._proctree`): READY once the tree listens, the timeout policy, STOPPING and
the failed-startup STATUS all come from the engine. With ``--listen`` the supervisor owns
the listening sockets (passed by systemd or bound, kept in its fd store: see
:mod:`sdready._listen._activation`) and hands them to the command as fds 3, 4, … with
``LISTEN_FDS``; since they accept before the app serves, READY then waits for an HTTP
probe, or for the command's own READY=1 (:mod:`sdready._commands._relay`). Single-threaded:
the forwarded signals and SIGCHLD are blocked and collected with ``sigtimedwait`` between
the engine's steps and watchdog pings, so no handler can interrupt a send.

The command starts first: :meth:`Supervisor.start` needs only what this module imports
(no typing, logging, dataclasses, socket or signal module, which cost a Python start-up
or more), and the engine loads in :meth:`Supervisor.supervise` while the command boots.
"""

import errno as _errno
import os
import sys
import time

from .. import texts
from .._cstd import TYPE_CHECKING, signal
from .._env import listen_fds_count, watchdog_interval
from .._log import logger
from .._values import DEFAULT_ON_TIMEOUT, DEFAULT_READY_TIMEOUT, check

if TYPE_CHECKING:
    import socket
    from collections.abc import Iterable, Sequence

    from .._engine._readiness import Readiness
    from .._listen._expect import Expect, ExpectEntry
    from .._listen._proctree import Method, TreeListeners
    from .._listen._sockets import Listener
    from .._notify._notifier import Notifier
    from .._options import ReadyKeywords, ReadyOptions
    from ._relay import NotifyRelay

__all__ = [
    "EXIT_INTERNAL",
    "EXIT_NOT_EXECUTABLE",
    "EXIT_NOT_FOUND",
    "SpawnError",
    "Supervisor",
    "exit_like",
]

EXIT_INTERNAL = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127

FORWARDED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
# The signals with which a supervisor is asked to stop: STOPPING=1 goes out before forwarding.
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})
# Re-raising these on ourselves would dump a core of sdready: exit with 128+N instead.
_CORE_SIGNALS = frozenset(
    getattr(signal, name)
    for name in ("SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGSEGV",
                 "SIGSYS", "SIGXCPU", "SIGXFSZ")
    if hasattr(signal, name)
)  # fmt: skip
#: --listen's default probe: any answer below 500 at /.
_LISTEN_PROBE = "http:/"
_SIGNALS = {*FORWARDED_SIGNALS, signal.SIGCHLD}
# Python ignores these at startup; a spawned command must get the default back.
_RESET_FOR_CHILD = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, name)
)


class SpawnError(Exception):
    """The command could not be started; ``code`` is the exit status to use."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def exit_like(code: int) -> int:
    """Turn a child's ``waitstatus_to_exitcode`` into ours: die of the same signal if need be.

    systemd treats a main process killed by SIGTERM (or INT, HUP, PIPE) as a clean stop but
    an exit status of 143 as a failure, so a plain ``exit(128+N)`` would turn every
    ``systemctl stop`` of an unhandled-SIGTERM server (node, http.server) into "failed".
    """
    if code >= 0:
        return code
    signum = -code
    if signum not in _CORE_SIGNALS:
        # The commands never load logging; a host process that did has its handlers
        # flushed before the signal ends it.
        logging = sys.modules.get("logging")
        if logging is not None:
            logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        import contextlib  # only once the command ran: not before its spawn

        with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP cannot be set
            signal.signal(signum, signal.SIG_DFL)
        with contextlib.suppress(OSError, ValueError):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
            os.kill(os.getpid(), signum)
    return 128 + signum  # a core-dumping signal, or one that did not end us


class Supervisor:
    """Runs the command, and drives the engine with its process tree as the listener source.

    *ready* holds :class:`~sdready.ReadyOptions`' keywords, checked here (a bad value
    raises :class:`ValueError` before anything starts); the options themselves are made
    once the command runs.
    """

    def __init__(  # noqa: PLR0913  (keyword-only, one per command-line option)
        self,
        argv: list[str],
        ready: "ReadyKeywords",
        *,
        pass_notify: bool,
        method: "Method",
        listen: "Sequence[str]" = (),
        ready_address: str | None = None,
        shutdown_delay: float = 0,
    ) -> None:
        self.argv = argv
        self.pass_notify = pass_notify
        self.method: Method = method
        self.listen = list(listen)
        self.sockets: list[tuple[socket.socket, str]] = []  # --listen's, with their FDNAME
        self.passed: list[tuple[int, str]] = []  # passed by systemd, not sdready's: go on
        self.relay: NotifyRelay | None = None  # the command's own READY, with --listen
        values: dict[str, object] = dict(ready)
        if self.listen:
            # The sockets accept before the app serves: only an answer proves it ready.
            values["expect"] = _listen_expect(self.listen, ready.get("expect"))
            values["probe"] = ready.get("probe") or _LISTEN_PROBE
        self.ready_address = None
        if ready_address is not None:
            from ._exec_probes import LIVE_PATH, READY_PATH, parse_ready_address

            self.ready_address = parse_ready_address(ready_address)
            values["ready_path"], values["live_path"] = READY_PATH, LIVE_PATH
        if shutdown_delay:
            values["shutdown_delay"] = shutdown_delay
        check(
            ready_timeout=values.get("ready_timeout", DEFAULT_READY_TIMEOUT),
            on_timeout=values.get("on_timeout", DEFAULT_ON_TIMEOUT),
            expect=values.get("expect"),
            probe=values.get("probe"),
            shutdown_delay=values.get("shutdown_delay", 0),
        )
        self.ready = values
        self._held: int | None = None  # the stop signal the shutdown delay holds
        self._release_at = 0.0
        self.options: ReadyOptions | None = None  # made by supervise()
        self.readiness: Readiness | None = None  # once the child exists: its tree is the source
        self._notifier: Notifier | None = None
        self._old_mask: set[int] | None = None
        self.pid = 0
        self.stopping = False
        self.exit_code: int | None = None

    @property
    def notifier(self) -> "Notifier":
        """The notifier for ``$NOTIFY_SOCKET``, made at first use (after the spawn, usually)."""
        if self._notifier is None:
            from .._notify._notifier import Notifier

            self._notifier = Notifier()
        return self._notifier

    def run(self) -> int:
        """Spawn, supervise until the command exits, and return its exit code (-N: signal N)."""
        self.start()
        return self.supervise()

    def start(self) -> None:
        """Open ``--listen``'s sockets and spawn the command; :class:`SpawnError` if it fails."""
        # An inherited SIG_IGN would have the kernel reap the command and drop its SIGCHLD:
        # its exit would never be heard of (exec hung), and the command would inherit it.
        if signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # Blocked before the child exists, so neither a stop request nor its exit is missed.
        self._old_mask = old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            self._open_sockets()
            self.pid = self._spawn(old_mask)
        except BaseException:
            self._finish()
            raise

    def supervise(self) -> int:
        """After :meth:`start`: drive the engine until the command exits; its exit code."""
        try:
            # Arguments may carry secrets (a database URL with its password): the journal
            # keeps INFO, so they go to DEBUG only.
            logger.info("started %s as pid %d", self.argv[0], self.pid)
            logger.debug("pid %d runs %r", self.pid, self.argv)
            return self._supervise()
        finally:
            self._finish()

    def _finish(self) -> None:
        if self._old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
            self._old_mask = None
        for sock, _name in self.sockets:
            sock.close()  # the fd store (or the .socket unit) keeps them
        self.sockets.clear()
        for fd, _name in self.passed:
            os.close(fd)
        self.passed.clear()
        if self.relay is not None:
            self.relay.close()
            self.relay = None

    def _open_sockets(self) -> None:
        if not self.listen:
            return
        from .._listen._activation import fdname_for, open_socket, release_stale, unclaimed_fds

        try:
            for address in self.listen:
                # Kept in the fd store (a .socket unit's stays with its unit).
                sock, _origin = open_socket(address, keep=True, notifier=self.notifier)
                self.sockets.append((sock, fdname_for(address)))
        except (OSError, ValueError) as exc:
            raise SpawnError(EXIT_INTERNAL, f"cannot listen: {exc}") from None
        if self.sockets:
            release_stale(self.notifier)  # stored for an address no --listen names now
            # The rest is not sdready's (a .socket unit's, the app's own state): the command's.
            self.passed = unclaimed_fds()

    def _spawn(self, child_mask: "Iterable[int]") -> int:
        env = dict(os.environ)
        if self.pass_notify:
            # WATCHDOG_PID names us: without it the command's own library may feed the watchdog.
            env.pop("WATCHDOG_PID", None)
        elif self.sockets and self.notifier.enabled:
            from ._relay import NotifyRelay

            # A sdready plugin in the command says READY itself, once its app serves.
            self.relay = NotifyRelay()
            env["NOTIFY_SOCKET"] = self.relay.address
        else:
            env.pop("NOTIFY_SOCKET", None)  # no premature READY from the command itself
        dups = self._socket_dups(env)
        # Socket activation: the fds are inherited as they are, but sd_listen_fds() in the
        # command checks LISTEN_PID against its own pid (set in the child: no shell needed),
        # and LISTEN_PIDFDID (systemd 259) against its pidfd's id: ours would not match, and
        # without it LISTEN_PID is checked alone.
        activation = bool(self.sockets) or listen_fds_count() > 0
        if activation:
            env.pop("LISTEN_PIDFDID", None)
        from ._spawn import spawn

        try:
            pid = spawn(
                self.argv,
                env,
                dups=dups,
                mask=child_mask,
                reset=_RESET_FOR_CHILD,
                listen_pid=activation,
            )
        except FileNotFoundError:
            raise SpawnError(EXIT_NOT_FOUND, "command not found") from None
        except PermissionError as exc:
            raise SpawnError(EXIT_NOT_EXECUTABLE, exc.strerror or "permission denied") from None
        except OSError as exc:
            code = EXIT_NOT_EXECUTABLE if exc.errno == _errno.ENOEXEC else EXIT_INTERNAL
            raise SpawnError(code, exc.strerror or str(exc)) from None
        finally:
            for fd, _target in dups:
                os.close(fd)
        if self.relay is not None:
            self.relay.root = pid
        return pid

    def _socket_dups(self, env: dict[str, str]) -> list[tuple[int, int]]:
        """--listen's sockets as the child's fds 3, 4, …, then the other passed descriptors
        (and LISTEN_FDS, LISTEN_FDNAMES): ``(our copy, its number in the child)``."""
        if not self.sockets:
            return []
        import fcntl  # only --listen passes sockets: exec's start-up does without it

        fds = [(s.fileno(), name) for s, name in self.sockets] + self.passed
        count = len(fds)
        # Copies above the target range first: dup2 onto itself would keep FD_CLOEXEC.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3 + count) for fd, _ in fds]
        env["LISTEN_FDS"] = str(count)
        env["LISTEN_FDNAMES"] = ":".join(name for _, name in fds)
        return [(fd, 3 + i) for i, fd in enumerate(high)]

    def _supervise(self) -> int:
        from .._engine._readiness import Readiness
        from .._options import ReadyOptions

        watch = _Discovery(self.pid, self.method)
        # Checked in __init__ with the same rules: making the options cannot fail here.
        options = ReadyOptions(**self.ready, notifier=self.notifier)  # type: ignore[arg-type]
        self.options = options
        # READY's STATUS names the server, not sdready.
        readiness = self.readiness = Readiness(options, source=watch, pid=self.pid)
        probes = None
        if self.ready_address is not None:
            from ._exec_probes import serve_probes

            probes = serve_probes(self.ready_address, readiness)
        readiness.waiting()
        started = time.monotonic()
        period = readiness.watchdog.period()
        self._check_watchdog(options, period)
        next_ping = next_step = time.monotonic()
        waiting = True
        try:
            while self.exit_code is None:
                wake = [next_ping] if period is not None else []
                if self._held is not None:
                    wake.append(self._release_at)
                if waiting and not readiness.closed:
                    wake.append(next_step)
                timeout = max(0.0, min(wake) - time.monotonic()) if wake else None
                info = (
                    signal.sigwaitinfo(_SIGNALS)
                    if timeout is None
                    else signal.sigtimedwait(_SIGNALS, timeout)
                )
                if info is not None:
                    self._on_signal(info.si_signo)
                    continue  # drain pending signals before more work
                now = time.monotonic()
                if self._held is not None and now >= self._release_at:
                    self._release("the shutdown delay is over")
                if waiting and not readiness.closed and now >= next_step:
                    self._relay_ready(readiness)
                    delay = self._step(readiness)
                    waiting = delay is not None
                    next_step = now + (delay or 0.0)
                    if readiness.ready_sent and not waiting:
                        self._log_ready(readiness, started, watch.method)
                if period is not None and now >= next_ping:
                    readiness.watchdog.ping()  # none once STOPPING was sent
                    next_ping = max(next_ping + period / 2, now)
        finally:
            watch.close()
            if probes is not None:
                probes.shutdown()
                probes.server_close()
        return self.exit_code

    def _relay_ready(self, readiness: "Readiness") -> None:
        if self.relay is None or not self.relay.ready():
            return
        logger.info("pid %d sent READY=1 itself: its app serves", self.pid)
        addresses = texts.format_addresses(self.listen)
        readiness.ready(texts.READY.format(addresses=addresses, pid=self.pid))

    @staticmethod
    def _step(readiness: "Readiness") -> float | None:
        try:
            return readiness.waiter.step()
        except Exception as exc:  # a discovery bug must not orphan the command: stop waiting
            # Not a timeout: on_timeout="warn" would send READY for a server never seen.
            cause = exc.__cause__ or exc if isinstance(exc, _DiscoveryError) else exc
            logger.error(texts.DISCOVERY_FAILED_LOG, cause)
            logger.debug("the discovery failure:", exc_info=cause)
            readiness.status(texts.DISCOVERY_FAILED.format(message=_first_line(cause)))
            readiness.abandon("listener discovery failed")
            return None

    def _log_ready(self, readiness: "Readiness", started: float, method: str) -> None:
        logger.info(
            "%s after %.0f ms: %s (sockets seen through %s)",
            "READY=1 sent" if self.notifier.enabled else "ready (no notify socket)",
            (time.monotonic() - started) * 1000,
            texts.format_addresses(readiness.listeners),
            method,
        )

    def _check_watchdog(self, options: "ReadyOptions", period: float | None) -> None:
        if options.watchdog:
            if period is None:
                logger.info("--watchdog: no WatchdogSec= for this process, nothing to feed")
            else:
                logger.info("feeding the watchdog every %g s", period / 2)
        elif watchdog_interval() is not None and not self.pass_notify:
            logger.warning(
                "WatchdogSec= is set but nobody feeds it: add --watchdog (or --pass-notify if "
                "the command pings itself), or systemd will kill the service"
            )

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            self._reap()
            return
        if signum in STOP_SIGNALS and self._held is not None:
            self._release(f"{_signame(signum)} during the shutdown delay")
            return
        if signum in STOP_SIGNALS and not self.stopping:
            self.stopping = True
            delay = float(self.ready.get("shutdown_delay") or 0)  # type: ignore[arg-type]
            if delay > 0 and signum == signal.SIGTERM and self.readiness is not None:
                # Hold it: the command keeps serving while /readyz says 503 (issue 22).
                self.readiness.stopping(delay=delay)
                self._held, self._release_at = signum, time.monotonic() + delay
                logger.info(
                    "SIGTERM: readiness answers 503 and pid %d keeps serving for the shutdown "
                    "delay of %g s, then gets SIGTERM",
                    self.pid,
                    delay,
                )
                return
            if self.readiness is not None:
                self.readiness.stopping()
        logger.info("forwarding %s to pid %d", _signame(signum), self.pid)
        import contextlib  # only once the command ran: not before its spawn

        with contextlib.suppress(ProcessLookupError):  # exited: its SIGCHLD is pending
            os.kill(self.pid, signum)

    def _release(self, why: str) -> None:
        """End the shutdown delay: forward the held signal now."""
        held, self._held = self._held, None
        if held is None:
            return
        logger.info("%s: forwarding %s to pid %d", why, _signame(held), self.pid)
        import contextlib

        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, held)

    def _reap(self) -> None:
        """Reap every child that exited: the command, and orphans the kernel gave us (as
        PID 1 of a container, or a subreaper), which would stay zombies otherwise."""
        status = None
        while True:
            try:
                pid, code = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                if self.exit_code is None and status is None:
                    status = 0  # reaped by someone else: nothing more to learn
                break
            if pid == 0:
                break  # the others still run
            if pid == self.pid:
                status = code
        if status is None:
            return  # an orphan, or stopped/continued
        code = os.waitstatus_to_exitcode(status)
        self.exit_code = code
        how = f"exited with status {code}" if code >= 0 else f"was killed by {_signame(-code)}"
        logger.info("pid %d %s", self.pid, how)
        readiness = self.readiness
        if readiness is not None and not readiness.ever_ready and not self.stopping:
            failure = f"{self.argv[0]} {how} before listening"
            if code == 0:  # a clean exit before serving: it went to the background
                logger.warning("%s: %s", failure, texts.EXEC_DAEMONIZED)
                failure = f"{failure}; {texts.EXEC_DAEMONIZED}"
            readiness.startup_failed(failure)


class _DiscoveryError(Exception):
    """The watch of the command's tree failed (not "nothing listens yet"): the engine must
    not take it for a timeout, as it takes an OSError of its own listener source."""


class _Discovery:
    """The command's tree as the engine's listener source (made at the first poll), its
    failures, from the first, as :class:`_DiscoveryError`."""

    def __init__(self, pid: int, method: "Method") -> None:
        self.pid = pid
        self.requested: Method = method
        self.watch: TreeListeners | None = None

    @property
    def max_interval(self) -> float | None:
        return None if self.watch is None else self.watch.max_interval

    @property
    def method(self) -> str:
        return self.requested if self.watch is None else self.watch.method

    def __call__(self) -> "list[Listener]":
        try:
            watch = self.watch
            if watch is None:
                from .._listen._proctree import TreeListeners

                watch = self.watch = TreeListeners(self.pid, self.requested)
            return watch.poll()
        except Exception as exc:
            raise _DiscoveryError(str(exc)) from exc

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


def _listen_expect(listen: list[str], expect: "Expect | None") -> "list[ExpectEntry]":
    """--listen's addresses, and the --expect ones (a list from the command line)."""
    if expect is None:
        return [*listen]
    if isinstance(expect, (int, str)) or callable(expect):
        return [*listen, expect]
    return [*listen, *expect]


def _signame(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
