"""Every STATUS text sdready sends, in one place (README's table is made from these).

Match on them in tests and monitoring; they change only with a CHANGELOG entry.
"""

from ._cstd import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "CHECK_EXEC_RELOAD",
    "CHECK_FDSTORE",
    "CHECK_FDSTORE_SIZE",
    "CHECK_KILL_MODE",
    "CHECK_KILL_MODE_DELAY",
    "CHECK_LINE",
    "CHECK_NOTE_LINE",
    "CHECK_NOTIFY_ACCESS",
    "CHECK_NOTIFY_RELOAD",
    "CHECK_PODMAN_NOTIFY_ACCESS",
    "CHECK_PODMAN_SDNOTIFY",
    "CHECK_RELOAD_SIGNAL",
    "CHECK_STOP_TIMEOUT",
    "CHECK_TIMEOUT_INFINITE",
    "CHECK_TIMEOUT_START",
    "CHECK_TYPE",
    "CHECK_WATCHDOG_CHILD",
    "CHECK_WATCHDOG_HEALTH",
    "CHECK_WATCHDOG_OFF",
    "CONTAINER_PROXY",
    "DISCOVERY_FAILED",
    "DISCOVERY_FAILED_LOG",
    "DRAINING",
    "EXEC_DAEMONIZED",
    "GUNICORN_BOOTING",
    "GUNICORN_DEGRADED",
    "GUNICORN_FAILED",
    "GUNICORN_READY",
    "GUNICORN_RELOADING",
    "GUNICORN_TIMEOUT_FAIL",
    "GUNICORN_TIMEOUT_WARN",
    "KEEP_STALE",
    "KEEP_STORE_FULL",
    "KEEP_STORE_SHORT",
    "KEEP_STORE_UNKNOWN",
    "KEEP_UNCLAIMED",
    "PODMAN_SDNOTIFY_SAYS",
    "READY",
    "READY_UNCHECKED",
    "STARTING",
    "STARTUP_FAILED",
    "STOPPING",
    "STOPPING_DELAYED",
    "TIMEOUT_FAIL",
    "TIMEOUT_FAIL_EXPECTED",
    "TIMEOUT_WARN",
    "TIMEOUT_WARN_EXPECTED",
    "UNHEALTHY",
    "WAITING",
    "error_line",
    "failure",
    "format_addresses",
    "one_line",
]

#: A STATUS text stays one short line: systemctl status shows it on one, and a traceback
#: belongs in the log. Longer texts are cut to this many characters, with an ellipsis.
STATUS_BUDGET = 200

STARTING = "Starting…"
WAITING = "Waiting for the listening socket…"
#: ``.format(addresses=..., pid=...)``
READY = "Ready: listening on {addresses} (pid {pid})"
#: on_timeout="ready": READY without having seen a socket. ``.format(pid=...)``
READY_UNCHECKED = "Ready (pid {pid})"
#: on_timeout="warn": READY was sent anyway. ``.format(timeout=..., pid=...)``
TIMEOUT_WARN = "Ready (no listening socket seen within {timeout:g} s; check the server) (pid {pid})"
#: on_timeout="fail": no READY; systemd's TimeoutStartSec decides. ``.format(timeout=...)``
TIMEOUT_FAIL = (
    "Not ready: no listening socket within {timeout:g} s; waiting for systemd's start timeout"
)
#: The same two, when ``expect`` names what must listen (something else may listen).
TIMEOUT_WARN_EXPECTED = (
    "Ready (nothing listening as expect= says within {timeout:g} s; check the server and "
    "expect=) (pid {pid})"
)
TIMEOUT_FAIL_EXPECTED = (
    "Not ready: nothing listening as expect= says within {timeout:g} s; waiting for "
    "systemd's start timeout"
)
#: sdready exec's command exited 0 before it listened: it daemonized.
EXEC_DAEMONIZED = (
    "a command that daemonizes cannot be watched: run it in the foreground (--no-daemon, -D)"
)
#: ``.format(message=...)``
STARTUP_FAILED = "Startup failed: {message}"
#: sdready exec could not watch its command's sockets: no READY, whatever on_timeout says.
DISCOVERY_FAILED = "Not ready: listener discovery failed ({message}); READY withheld"
DISCOVERY_FAILED_LOG = (
    "listener discovery failed (%s): READY is withheld (no server was seen; the start ends "
    "at TimeoutStartSec=). Try another --discovery method"
)
STOPPING = "Stopping…"
#: STOPPING=1 with a shutdown delay: the service still serves while traffic moves away.
STOPPING_DELAYED = "Stopping: serving for {delay:g} s more while traffic moves away…"
#: While a server drains after STOPPING=1 (the stop timeout is being extended).
#: ``.format(count=..., budget=...)``: still draining (gunicorn: workers), the server's budget.
DRAINING = "Stopping: draining, {count} left (up to {budget:g} s)"

#: The watchdog's health check fails: its pings are skipped and systemd will restart the
#: service after WatchdogSec=. ``.format(since=HH:MM:SS, reason=...)``
UNHEALTHY = "Unhealthy since {since}: {reason}; watchdog not fed"

# gunicorn (sdready.plugins.gunicorn): the arbiter counts workers that can serve.
GUNICORN_BOOTING = "Booting workers ({booted}/{total})"
GUNICORN_RELOADING = "Reloading: booting workers ({booted}/{total}, generation {generation})"
#: ``workers`` reads like "2/4 workers"; ``generation`` is empty or ", generation N".
GUNICORN_READY = "Ready: {workers}, listening on {addresses} (pid {pid}{generation})"
GUNICORN_DEGRADED = "Workers: {booted}/{total}, listening on {addresses} (pid {pid}{generation})"
GUNICORN_TIMEOUT_WARN = (
    "Ready (no worker booted within {timeout:g} s; check the workers) (pid {pid})"
)
GUNICORN_TIMEOUT_FAIL = "Not ready: no worker booted within {timeout:g} s; still waiting"
GUNICORN_FAILED = "Failed: {message}"

# Unit checks (sdready doctor and the engine's startup self-check, sdready._units._unitcheck): each
# is (why it breaks readiness, the line to write), ``.format(**fields)``; CHECK_LINE joins
# them into the one WARNING a check logs.
#: The one WARNING in an OCI container (%s: the engine): what its notify proxy drops.
CONTAINER_PROXY = (
    "in a container (%s): NOTIFY_SOCKET is a proxy (podman's conmon, or the OCI "
    "runtime's) that passes on only READY=1 and WATCHDOG=1; STATUS, STOPPING, RELOADING, "
    "ERRNO, EXTEND_TIMEOUT_USEC and FDSTORE never reach systemd, so progress cannot extend "
    "the start or stop timeout, the fd store is off and 'systemctl status' shows no status "
    "line (READY=1 goes in a datagram of its own)"
)
#: ``.format(unit=, setting=, value=, why=, fix=)``
CHECK_LINE = "{unit}: {setting}={value} {why}. Write: {fix}"
#: A note's line (INFO, doctor's exit status 0): nothing to fix, an option to know.
CHECK_NOTE_LINE = "{unit}: {setting}={value} {why}. Fine as it is; to change it, write: {fix}"
CHECK_TYPE = (
    "makes systemd start the units ordered after this one as soon as the process exists, "
    "before {server} listens, and ignore READY=1",
    "Type=notify",
)
CHECK_NOTIFY_ACCESS = (
    "makes systemd drop READY=1, STOPPING=1 and WATCHDOG=1 from {sender}, which is not the "
    "unit's main process: the start never completes",
    "NotifyAccess=all",
)
CHECK_TIMEOUT_START = (
    "is not longer than sdready's ready_timeout ({ready_timeout:g} s): a start that never "
    "listens is failed by systemd, before sdready's on_timeout={on_timeout!r} would act",
    "TimeoutStartSec={suggested:g}",
)
CHECK_TIMEOUT_INFINITE = (
    "with on_timeout='fail': a server that never listens keeps the unit 'activating' "
    "forever, and its dependents waiting",
    "TimeoutStartSec={suggested:g}",
)
CHECK_WATCHDOG_OFF = (
    "but nothing sends WATCHDOG=1 (sdready's watchdog is off): systemd kills the service "
    "every {period:g} s",
    "{enable} (or remove WatchdogSec=)",
)
CHECK_WATCHDOG_CHILD = (
    "but the app runs in {sender}, not the main process the watchdog is for: nobody can "
    "ping it, and systemd kills the service every {period:g} s",
    "WatchdogSec=0 (or run a single process)",
)
CHECK_NOTIFY_RELOAD = (
    "makes 'systemctl reload' send SIGHUP and wait for RELOADING=1 then READY=1, which "
    "{server} never sends ({hup})",
    "Type=notify",
)
CHECK_RELOAD_SIGNAL = (
    "is not SIGHUP, the only signal on which gunicorn reloads and sdready sends RELOADING=1",
    "ReloadSignal=SIGHUP",
)
CHECK_EXEC_RELOAD = (
    "sends SIGHUP to {server}, which dies of it: every 'systemctl reload' stops the service",
    "no ExecReload= (use 'systemctl restart')",
)
CHECK_KILL_MODE = (
    "signals every process of the unit while sdready exec forwards the signal to its "
    "command too: each process gets SIGTERM twice",
    "KillMode=mixed",
)
CHECK_KILL_MODE_DELAY = (
    "signals every process of the unit: gunicorn's workers stop at once while the arbiter "
    "holds SIGTERM for SDREADY_SHUTDOWN_DELAY",
    "KillMode=mixed",
)
CHECK_STOP_TIMEOUT = (
    "is shorter than gunicorn's graceful_timeout ({graceful:g} s): systemd kills workers "
    "in the middle of requests they were allowed to finish",
    "TimeoutStopSec={suggested:g}",
)
CHECK_FDSTORE = (
    "while sdready keeps the listening sockets in the fd store: systemd refuses them, and "
    "the next start refuses connections until it listens again",
    "FileDescriptorStoreMax=16",
)
CHECK_FDSTORE_SIZE = (
    "holds fewer sockets than the {kept} sdready keeps: a restart gets {held} back, binds "
    "the rest anew and refuses connections to them until then",
    "FileDescriptorStoreMax={kept}",
)
#: ``podman run`` in ExecStart= (Quadlet's units too). ``.format(said=, fix=)``
CHECK_PODMAN_SDNOTIFY = (
    "{said}: units ordered after this one start before the app in the container listens",
    "{fix}",
)
#: What podman does with each --sdnotify= mode that is not the app's own READY.
PODMAN_SDNOTIFY_SAYS = {
    "conmon": "(podman's default) makes conmon send READY=1 as soon as the container started",
    "ignore": "makes podman pass no NOTIFY_SOCKET into the container, and nobody sends READY=1",
}
CHECK_PODMAN_NOTIFY_ACCESS = (
    "lets systemd take READY=1 only from the main process, but podman's run is a relay: "
    "podman names conmon MAINPID=, and READY=1 from conmon before systemd took that in, or "
    "from podman itself (--sdnotify=healthy), is dropped",
    "NotifyAccess=all (as Quadlet writes)",
)
#: The watchdog's runtime check. ``.format(took=, period=)``
CHECK_WATCHDOG_HEALTH = (
    "health check took {took:.2f} s, over half of WatchdogSec= ({period:g} s): pings come "
    "late and systemd may kill a healthy service; make the check faster or raise WatchdogSec="
)

# Logged by sdready.listen_socket, sdready exec --listen and gunicorn's keep-sockets.
#: ``% (name, where it listens, the configured address)``
KEEP_STALE = (
    "the socket stored as FDNAME=%s listens on %s, not %s: removed from the fd store and closed"
)
#: ``% (sockets kept, $FDSTORE)``
KEEP_STORE_FULL = (
    "%d sockets kept but the unit's fd store holds %d (FileDescriptorStoreMax=): systemd "
    "closed the rest, which will be bound anew (and refuse connections) on restart"
)
#: A start got fewer sockets back than it keeps. ``% (returned, kept, addresses, kept)``
KEEP_STORE_SHORT = (
    "the fd store gave back %d of the %d listening sockets kept: binding %s anew (it refused "
    "connections meanwhile); FileDescriptorStoreMax=%d would hold them all"
)
#: ``% (name, where it listens)``: ``sdready exec --listen`` no longer asks for it.
KEEP_UNCLAIMED = (
    "the socket stored as FDNAME=%s listens on %s, which no --listen names any more: "
    "removed from the fd store and closed"
)
#: ``% names``: systemd < 254 does not say whether the unit has a store.
KEEP_STORE_UNKNOWN = (
    "kept %s in systemd's fd store; the unit needs FileDescriptorStoreMax= (else systemd "
    "closes them and restarts refuse connections)"
)

_MAX_SHOWN = 4


def format_addresses(listeners: "Iterable[object]") -> str:
    """``"127.0.0.1:8000, [::]:8000"`` for up to four listeners, then ``"and N more"``;
    control characters in a name are escaped (``\\n``).

    Accepts :class:`~sdready.Listener` objects (their ``address``) or plain strings.
    """
    seen: list[str] = []
    for item in listeners:
        text = str(getattr(item, "address", item))
        if not text.isprintable():  # a socket's name may hold a newline: STATUS is one line
            text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
        if text not in seen:
            seen.append(text)
    if not seen:
        return "(no socket)"
    if len(seen) <= _MAX_SHOWN:
        return ", ".join(seen)
    return f"{', '.join(seen[:_MAX_SHOWN])} and {len(seen) - _MAX_SHOWN} more"


def one_line(text: str, budget: int = STATUS_BUDGET) -> str:
    """*text* as one line of at most *budget* characters (white space folded, then cut)."""
    line = " ".join(text.split())
    return line if len(line) <= budget else line[: budget - 1] + "…"


def error_line(text: str) -> str:
    """The error line of a formatted traceback (its last meaningful line), or *text*."""
    for raw in reversed(text.splitlines()):
        line = raw.strip().lstrip("|").strip()
        if line and not line.startswith(("+-", "^", "~")):
            return line
    return ""


def failure(error: BaseException) -> tuple[str, int | None]:
    """What a failed start says: ``"Type: message"`` on one line, and the errno of the
    first :class:`OSError` in its chain of causes (a bind's ``EADDRINUSE``, a database's
    ``ECONNREFUSED`` wrapped by its driver), for ``ERRNO=``; None where there is none."""
    text = str(error)
    message = f"{type(error).__name__}: {one_line(text)}" if text else type(error).__name__
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno:
            return message, cause.errno
        cause = cause.__cause__ or cause.__context__
    return message, None
