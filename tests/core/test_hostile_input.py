"""Hostile input: what another local user, a wrapper or an odd environment can feed sdready.

Each test reproduces the attack with real parts (a bound abstract socket, a passed fd, a
command line) and has a control: the naive reading, or the code path without the guard,
falls for the same input, so the test can fail.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from _cli_support import SDREADY, sdready_run
from _servers import serving_http
from sdready import (
    ListenTimeoutError,
    Notifier,
    Readiness,
    ReadyOptions,
    texts,
    wait_until_listening,
)
from sdready._commands import _spawn
from sdready._env import pidfd_inode_id
from sdready._listen import _activation, _wait
from sdready._listen._activation import fdname_for
from sdready._listen._proctree import (
    alive,
    claim_abstract,
    namespace_listeners,
    sockdiag_support,
)
from sdready.testing import NotifyRecorder

PY = sys.executable
_SLEEPER = (PY, "-c", "import time; time.sleep(60)")
_ACCEPTCON = 0x10000

# A process holding abstract unix sockets bound (never listening) to the names given as
# arguments, each of which may hold a newline and a forged /proc/net/unix line after it.
_FORGER = """
import socket, sys
keep = []
for name in sys.argv[1:]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind("\\0" + name)
    keep.append(s)
print("bound", flush=True)
sys.stdin.read()
"""


def forged_line(inode: int | str, path: str, *, flags: int = _ACCEPTCON) -> str:
    """The name of an abstract socket that makes /proc/net/unix show one more line."""
    line = f"0000000000000000: 00000002 00000000 {flags:08X} 0001 01 {inode} {path}"
    return f"{uuid.uuid4().hex[:6]}\n{line}"


@pytest.fixture
def forge() -> Iterator[Callable[..., None]]:
    """``forge(name, ...)``: bind abstract sockets named so, until the test ends."""
    procs: list[subprocess.Popen[str]] = []

    def start(*names: str) -> None:
        proc = subprocess.Popen(
            [PY, "-c", _FORGER, *names], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == "bound\n"

    yield start
    for proc in procs:
        with proc:  # closes its pipes, waits
            proc.kill()


def naive_unix_listeners(netdir: str = "/proc/net") -> dict[int, str]:
    """``{inode: path}`` of the listeners in the unix table, read line by line as it looks
    (as sdready did before): the control of every forged-line test."""
    found = {}
    with open(f"{netdir}/unix", errors="replace") as table:
        next(table)
        for line in table:
            fields = line.split(None, 7)
            with contextlib.suppress(ValueError):  # a parallel test's garbled line
                if len(fields) > 7 and int(fields[3], 16) & _ACCEPTCON:
                    found[int(fields[6])] = fields[7].rstrip("\n")
    return found


def wait_listen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SDREADY, "wait-listen", "--timeout", "0.5", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def unix_path() -> Iterator[str]:
    path = f"/tmp/sdready-hostile-{uuid.uuid4().hex[:10]}.sock"
    yield path
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# -- forged /proc/net/unix lines ---------------------------------------------------------------


def test_forged_line_is_no_listener_in_the_namespace(
    forge: Callable[..., None], unix_path: str
) -> None:
    """Nothing listens at the path: only a forged line says so, with an inode of its own."""
    forge(forged_line(987654321, unix_path))
    assert unix_path in naive_unix_listeners().values()  # the control: the forgery shows

    done = wait_listen("--discovery", "proc", "--expect", unix_path)
    assert done.returncode == 1, done.stderr
    assert f"expected but not found: {unix_path}" in done.stderr


def _connected_to(sock: socket.socket) -> bool:
    """Whether a connection waits in *sock*'s backlog (taken, then closed)."""
    sock.setblocking(False)
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def test_the_tables_ask_no_unix_listener_but_the_awaited_one(unix_path: str) -> None:
    """``wait-listen`` reading ``/proc/net/unix`` connects to a unix listener to tell a
    forged line from a real one: only to the one it waits for. A connection to another
    service's socket would start it if it is socket-activated (PackageKit's debconf helper,
    started so, then spins on a core). Control: asking every unix listener, as before,
    reaches the bystander."""
    bystander_path = f"{unix_path}.bystander"
    with socket.socket(socket.AF_UNIX) as awaited, socket.socket(socket.AF_UNIX) as bystander:
        bystander.bind(bystander_path)
        bystander.listen()
        awaited.bind(unix_path)
        awaited.listen()
        try:
            done = wait_listen("--discovery", "proc", "--expect", unix_path)
            assert done.returncode == 0, done.stderr
            assert _connected_to(awaited)  # asked: that is how it was found
            assert not _connected_to(bystander)

            found = namespace_listeners(tables=True, wanted=lambda item: True)  # the control
            assert bystander_path in {item.address for item in found}
            assert _connected_to(bystander)
        finally:
            os.unlink(bystander_path)


_APP = """
import os, socket, sys
app = socket.socket(socket.AF_UNIX); app.bind(sys.argv[1])       # bound, not listening yet
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print(os.fstat(app.fileno()).st_ino, os.fstat(udp.fileno()).st_ino, flush=True)
sys.stdin.read()
"""


def test_forged_line_naming_the_trees_own_sockets(
    forge: Callable[..., None], unix_path: str
) -> None:
    """The forgeries name the inodes of the app's own sockets (anyone can read them in the
    tables): its unix socket, bound but not listening, and a UDP socket."""
    app = subprocess.Popen(
        [PY, "-c", _APP, unix_path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    with app:
        assert app.stdout is not None
        unix_inode, udp_inode = map(int, app.stdout.readline().split())
        forge(forged_line(unix_inode, unix_path), forged_line(udp_inode, unix_path))
        naive = naive_unix_listeners()
        assert naive.get(unix_inode) == naive.get(udp_inode) == unix_path  # the control

        done = wait_listen("--pid", str(app.pid), "--discovery", "proc", "--expect", unix_path)
        assert done.returncode == 1, done.stderr
        assert "more than one line" in done.stderr  # the unix one: a second claim
        app.kill()


_LATE_LISTENER = """
import socket, time
time.sleep(0.5)
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
time.sleep(60)
"""


def test_garbled_line_neither_crashes_nor_readies_exec(
    forge: Callable[..., None], notify_socket: NotifyRecorder, tmp_path: Path
) -> None:
    """A line whose inode is ``NaN``: sdready exec once turned the ValueError into its
    timeout policy and sent READY before the command listened."""
    path = f"/run/app-{uuid.uuid4().hex[:8]}.sock"
    forge(forged_line("NaN", path))
    with open("/proc/net/unix", errors="replace") as table:
        garbled = [line for line in table if line.rstrip("\n").endswith(path)]
    assert len(garbled) == 1
    with pytest.raises(ValueError, match="NaN"):  # the control: a plain parse breaks on it
        int(garbled[0].split(None, 7)[6])

    args = ("exec", "--discovery", "proc", "--", PY, "-c", _LATE_LISTENER)
    with sdready_run(notify_socket, *args, log=tmp_path / "log") as run:
        ready = run.wait_for("READY=1", 20)
        assert ready["STATUS"].startswith("Ready: listening on 127.0.0.1:"), run.output()
        assert "discovery failed" not in run.output()


_OTHER_NETNS = """
import socket, time
s = socket.socket(socket.AF_UNIX)  # a socket sock_diag cannot see from outside
time.sleep(60)
"""


@pytest.mark.skipif(not sockdiag_support()[0], reason=sockdiag_support()[1])
def test_a_discovery_failure_withholds_ready(notify_socket: NotifyRecorder, tmp_path: Path) -> None:
    """``--discovery sockdiag`` cannot see a command in another network namespace: a
    failure of discovery, said as such, and never READY (whatever ``--on-timeout`` says)."""
    unshare = "/usr/bin/unshare"
    usable = (
        os.path.exists(unshare)
        and not subprocess.run([unshare, "-rn", "true"], check=False).returncode
    )
    if not usable:
        pytest.skip("no unprivileged network namespaces here")
    args = ("exec", "--discovery", "sockdiag", "--on-timeout", "warn", "--ready-timeout", "60")
    with sdready_run(
        notify_socket, *args, "--", unshare, "-rn", PY, "-c", _OTHER_NETNS, log=tmp_path / "log"
    ) as run:
        failed = texts.DISCOVERY_FAILED.partition("(")[0]
        run.recorder.wait_for(
            lambda m: m.pid == run.pid and m.get("STATUS", "").startswith(failed), 20
        )
        run.wait_output("READY is withheld")
        run.signal(signal.SIGTERM)
        run.wait()
        assert run.ready_messages() == []


def test_control_the_engine_takes_a_source_error_for_a_timeout(
    notify_socket: NotifyRecorder,
) -> None:
    """The control: without sdready exec's guard, the engine applies on_timeout='warn' to an
    OSError of its listener source, and READY goes out for a server never seen."""

    def broken() -> list[object]:
        raise OSError(18, "pid 1 is in another network namespace")

    readiness = Readiness(ReadyOptions(ready_timeout=30), source=broken)  # type: ignore[arg-type]
    readiness.waiting()
    assert readiness.waiter.step() is None
    assert readiness.ready_sent


# -- exec --listen and descriptors it did not store ----------------------------------------------

# Stands in for systemd (or a wrapper): passes the descriptors given as fd:NAME pairs as
# fds 3, 4, … with LISTEN_FDS, then runs sdready.
_PASS_FDS = """
import os, sys
pairs = [arg.split(":", 1) for arg in sys.argv[1:sys.argv.index("--")]]
for i, (fd, _) in enumerate(pairs):
    os.dup2(int(fd), 100 + i)
for i in range(len(pairs)):
    os.dup2(100 + i, 3 + i)
os.environ.update(LISTEN_FDS=str(len(pairs)), LISTEN_PID=str(os.getpid()),
                  LISTEN_FDNAMES=":".join(name for _, name in pairs))
os.execv(sys.executable, [sys.executable, "-m", "sdready", *sys.argv[sys.argv.index("--") + 1:]])
"""

# The command: its LISTEN_FDNAMES, and the kind of each descriptor it got.
_SHOW_FDS = """
import os, stat
count = int(os.environ.get("LISTEN_FDS", "0"))
kinds = ["sock" if stat.S_ISSOCK(os.fstat(3 + i).st_mode) else "file" for i in range(count)]
print("child", os.environ.get("LISTEN_FDNAMES"), " ".join(kinds), flush=True)
"""


def run_with_passed(
    notify_socket: NotifyRecorder, passed: list[tuple[int, str]], listen: str
) -> str:
    result = subprocess.run(
        [PY, "-c", _PASS_FDS, *(f"{fd}:{name}" for fd, name in passed), "--",
         "exec", "--listen", listen, "--", PY, "-c", _SHOW_FDS],
        pass_fds=[fd for fd, _ in passed], env=notify_socket.env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return result.stdout + result.stderr


def test_exec_listen_passes_on_what_it_did_not_store(
    notify_socket: NotifyRecorder, unix_path: str
) -> None:
    """An app's state in a memfd and a .socket unit's datagram socket, passed with the
    socket sdready stored: sdready once sent FDSTOREREMOVE for both and closed them."""
    state = os.memfd_create("appstate")
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        passed = [(state, "appstate"), (dgram.fileno(), "app.socket")]
        output = run_with_passed(notify_socket, passed, unix_path)
    finally:
        os.close(state)
        dgram.close()
    assert f"child {unix_path}:appstate:app.socket sock file sock" in output, output
    assert notify_socket.values("FDSTOREREMOVE") == []


def test_control_exec_listen_removes_its_own_stale_socket(
    notify_socket: NotifyRecorder, unix_path: str
) -> None:
    """The control: a listening socket sdready stored for an address no --listen names any
    more does leave the store (FDSTOREREMOVE is seen when it is sent)."""
    with socket.socket() as old:
        old.bind(("127.0.0.1", 0))
        old.listen()
        name = fdname_for(f"127.0.0.1:{old.getsockname()[1]}")
        output = run_with_passed(notify_socket, [(old.fileno(), name)], unix_path)
    assert f"child {unix_path} sock" in output, output
    assert notify_socket.values("FDSTOREREMOVE") == ["1"]


# -- LISTEN_PIDFDID (systemd 259) ----------------------------------------------------------------

# Stands in for systemd 259: one socket as fd 3, LISTEN_PID and LISTEN_PIDFDID naming this
# process (which becomes sdready exec), then sdready exec runs _PIDFDID_CHILD.
_WITH_PIDFDID = """
import os, socket, sys
from sdready._env import pidfd_inode_id
sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen()
os.dup2(sock.fileno(), 3)
own = str(pidfd_inode_id())
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_PIDFDID=own,
                  SDREADY_ID=own)
os.execv(sys.executable, [sys.executable, "-m", "sdready", "exec", "--", *sys.argv[1:]])
"""
_PIDFDID_CHILD = """
import os
from sdready._env import listen_fds_count
stale = {**os.environ, "LISTEN_PIDFDID": os.environ["SDREADY_ID"]}
print("child", listen_fds_count(), os.environ.get("LISTEN_PIDFDID"), listen_fds_count(stale))
"""


@pytest.mark.skipif(pidfd_inode_id() is None, reason="no pidfs (Linux < 6.9): no pidfd ids")
def test_exec_rewrites_listen_pidfdid_with_listen_pid(notify_socket: NotifyRecorder) -> None:
    """The command once saw its own LISTEN_PID but sdready's LISTEN_PIDFDID, and
    sd_listen_fds() in it returned 0. The control: that environment, read in the command."""
    result = subprocess.run(
        [PY, "-c", _WITH_PIDFDID, PY, "-c", _PIDFDID_CHILD],
        env=notify_socket.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert "child 1 None 0" in output, output  # the last 0: the control


# -- the HTTP probe ------------------------------------------------------------------------------


class _Counting(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.server.requests.append(self.headers)  # type: ignore[attr-defined]
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class _Failing(_Counting):
    status = 503


@contextlib.contextmanager
def http_server(handler: type[_Counting]) -> Iterator[http.server.ThreadingHTTPServer]:
    with serving_http(handler) as server:
        server.requests = []  # type: ignore[attr-defined]
        yield server


def test_probe_goes_to_the_first_listener_only(notify_socket: NotifyRecorder) -> None:
    """Without --expect, a tree with an HTTP port and another that never speaks HTTP (both
    inherited, so seen at once): only the first is probed, and READY comes. Before, both
    were probed until the timeout (the control: READY then says nothing was seen)."""
    with http_server(_Counting) as web, socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        other.setblocking(False)
        passed = [(web.socket.fileno(), "web"), (other.fileno(), "other")]
        result = subprocess.Popen(
            [PY, "-c", _PASS_FDS, *(f"{fd}:{name}" for fd, name in passed), "--",
             "exec", "--probe", "http:/", "--ready-timeout", "5", "--", *_SLEEPER],
            pass_fds=[fd for fd, _ in passed], env=notify_socket.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        with result:
            try:
                ready = notify_socket.wait_for(
                    lambda m: m.get("READY") == "1" and m.pid == result.pid, 20
                )
            finally:
                result.terminate()
        assert ready["STATUS"].startswith("Ready: listening on 127.0.0.1:"), ready
        assert len(web.requests) == 1  # type: ignore[attr-defined]
        with pytest.raises(BlockingIOError):
            other.accept()  # nobody knocked


def _probes_in(seconds: float) -> int:
    with http_server(_Failing) as web:
        port = web.server_address[1]
        with pytest.raises(ListenTimeoutError):
            wait_until_listening(seconds, expect=port, probe="http:/")
        headers = web.requests  # type: ignore[attr-defined]
    assert headers[0]["User-Agent"] == "sdready-probe"
    assert headers[0]["Host"] == f"127.0.0.1:{port}"
    return len(headers)


def test_a_failing_probe_backs_off_to_one_a_second() -> None:
    """An app answering 503 for 3 s gets about 9 GETs (was about 30)."""
    assert _probes_in(3.0) <= 12


def test_control_the_old_backoff_hammers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_wait, "_PROBE_RETRY_MAX", 0.1)  # the cap before
    assert _probes_in(3.0) >= 20


# -- secrets on the command line -----------------------------------------------------------------

_SECRET = "postgres://app:S3cr3t@db/x"


@pytest.mark.parametrize("verbose", [False, True])
def test_exec_logs_the_arguments_only_at_debug(
    notify_socket: NotifyRecorder, tmp_path: Path, verbose: bool
) -> None:
    """INFO (the default level, which the journal keeps) names the program only; -v (DEBUG)
    shows the whole command line, the control that the test sees it when it is there."""
    args = ("exec", *(["-v"] if verbose else []), "--", PY, "-c", "pass", _SECRET)
    with sdready_run(notify_socket, *args, log=tmp_path / "log") as run:
        assert run.wait() == 0
        output = run.output(None)
    assert f"started {PY} as pid" in output
    assert (_SECRET in output) is verbose, output


# -- fault 4: sdready exec killed with SIGKILL ----------------------------------------------------

# The command: prints its pid, then echoes each line it reads, while it lives. With an
# argument it first clears its own parent-death signal (the control: as before).
_ECHO = """
import os, sys
if len(sys.argv) > 1:
    import ctypes
    ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG: none
print(os.getpid(), flush=True)
for line in sys.stdin:
    print(line.strip(), flush=True)
"""


@pytest.mark.parametrize("clear", [False, True], ids=["command", "control-cleared"])
def test_exec_killed_by_sigkill_takes_its_command_along(clear: bool) -> None:
    """Outside systemd nobody else stops the command: it must die with sdready."""
    command = [PY, "-c", _ECHO, *(["clear"] if clear else [])]
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    with subprocess.Popen(
        [*SDREADY, "exec", "-q", "--", *command],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    ) as sdready:  # fmt: skip
        assert sdready.stdin is not None and sdready.stdout is not None
        child = int(sdready.stdout.readline())
        try:
            sdready.kill()
            sdready.wait()  # reaped: the parent-death signal, if any, was sent at its exit
            try:
                os.write(sdready.stdin.fileno(), b"still there?\n")  # unbuffered
                answer = sdready.stdout.readline()  # EOF once the command is gone
            except BrokenPipeError:
                answer = ""  # gone already
            assert (answer == "still there?\n") is clear, answer
            if not clear:
                deadline = time.monotonic() + 10
                while alive(child):
                    assert time.monotonic() < deadline, f"pid {child} outlived sdready"
                    time.sleep(0.01)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def test_the_quick_way_to_prctl_still_exists() -> None:
    """core/_commands/_spawn.py reaches prctl through CPython's ``_ctypes`` internals (``ctypes``
    would delay the command by 10-20 ms); a Python that moved them falls back to ctypes."""
    import _ctypes

    assert all(hasattr(_ctypes, name) for name in ("dlopen", "dlsym", "call_function"))
    assert _spawn._prctl() is not None


# -- a newline in a socket's name ------------------------------------------------------------------

_NEWLINE_LISTENER = """
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind("\\0" + sys.argv[1]); s.listen()
time.sleep(60)
"""


def test_a_newline_in_a_sockets_name_is_escaped_in_ready(
    notify_socket: NotifyRecorder, tmp_path: Path
) -> None:
    """The command listens on an abstract name holding a newline: READY goes out, its STATUS
    one line. Before, READY failed to encode while the log said it was sent."""
    name = f"sdready-{uuid.uuid4().hex[:6]}\nSTATUS=forged"
    args = ("exec", "--expect", f"@{name}", "--", PY, "-c", _NEWLINE_LISTENER, name)
    with sdready_run(notify_socket, *args, log=tmp_path / "log") as run:
        ready = run.wait_for("READY=1", 20)
        first = name.split("\n", maxsplit=1)[0]
        assert ready["STATUS"].startswith(f"Ready: listening on @{first}\\nSTATUS=forged")
        assert "discovery failed" not in run.output()


def test_control_the_raw_name_cannot_be_sent(notify_socket: NotifyRecorder) -> None:
    """The control: the name as it is makes the message unsendable, and READY is then not
    marked as sent (it once was, before the send failed)."""
    readiness = Readiness(ReadyOptions(ready_timeout=30))
    with pytest.raises(ValueError, match="newline"):
        readiness.ready("Ready: listening on @app\nSTATUS=forged")
    assert not readiness.ready_sent
    assert readiness.ready("Ready: listening on @app")


# -- an inherited SIGCHLD=SIG_IGN ----------------------------------------------------------------

_IGNORING_SIGCHLD = """
import os, signal, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # kept across execve
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""

_NAIVE_SUPERVISOR = """
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
pid = os.posix_spawn(sys.executable, [sys.executable, "-c", "pass"], os.environ)
heard = signal.sigtimedwait({signal.SIGCHLD}, 10)
try:
    os.waitpid(pid, 0)
    status = "reaped"
except ChildProcessError:
    status = "gone"
print("heard" if heard else "nothing", status)
"""


def test_an_inherited_sigchld_ignore_does_not_hang_exec(notify_socket: NotifyRecorder) -> None:
    """Once, sdready exec waited for its command's exit forever."""
    done = subprocess.run(
        [PY, "-c", _IGNORING_SIGCHLD, *SDREADY[1:], "exec", "-q", "--", PY, "-c", "exit(3)"],
        env=notify_socket.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr


def test_control_a_supervisor_ignoring_sigchld_hears_nothing() -> None:
    done = subprocess.run(
        [PY, "-c", _IGNORING_SIGCHLD, "-c", _NAIVE_SUPERVISOR],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert done.stdout.split() == ["nothing", "gone"]


# -- no /bin/sh; PID 1 in a container -------------------------------------------------------------

_UNSHARE = "/usr/bin/unshare"


def _namespaces_work(*flags: str) -> bool:
    if not os.path.exists(_UNSHARE):
        return False
    return subprocess.run([_UNSHARE, *flags, "true"], check=False).returncode == 0


_WITHOUT_SH = """
import os, subprocess, sys
subprocess.run(["mount", "--bind", "/dev/null", "/bin/sh"], check=True)
try:
    subprocess.run(["/bin/sh", "-c", "true"], check=False)
    print("sh runs", flush=True)
except PermissionError:
    print("no sh", flush=True)  # the control: /bin/sh cannot run here
if sys.argv[1:]:
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""

_SHOW_LISTEN_PID = "import os; print('child', os.environ['LISTEN_PID'] == str(os.getpid()))"


@pytest.mark.skipif(not _namespaces_work("-rm"), reason="no unprivileged mount namespaces")
def test_exec_listen_needs_no_shell(notify_socket: NotifyRecorder, unix_path: str) -> None:
    """exec --listen once ran its command through /bin/sh to set LISTEN_PID."""
    done = subprocess.run(
        [_UNSHARE, "-rm", PY, "-c", _WITHOUT_SH, *SDREADY[1:], "exec", "--listen", unix_path,
         "--", PY, "-c", _SHOW_LISTEN_PID],
        env=notify_socket.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.stdout.split("\n")[:2] == ["no sh", "child True"], done.stdout + done.stderr
    assert done.returncode == 0


# The command: orphans a grandchild (its middle process exits), lets it exit, and reports
# whether someone reaped it within the bound given.
_ORPHAN = """
import os, sys, time
go_r, go_w = os.pipe()
info_r, info_w = os.pipe()
middle = os.fork()
if middle == 0:
    orphan = os.fork()
    if orphan == 0:
        os.read(go_r, 1)
        os._exit(0)
    os.write(info_w, str(orphan).encode())
    os._exit(0)
os.waitpid(middle, 0)
orphan = int(os.read(info_r, 20))
os.write(go_w, b"x")
deadline = time.monotonic() + float(sys.argv[1])
while os.path.exists(f"/proc/{orphan}") and time.monotonic() < deadline:
    time.sleep(0.01)
print("reaped" if not os.path.exists(f"/proc/{orphan}") else "zombie", flush=True)
"""
# The control's PID 1: waits for its own child only, as sdready exec did.
_NAIVE_INIT = """
import os, sys
pid = os.posix_spawn(sys.executable, [sys.executable, *sys.argv[1:]], os.environ)
os.waitpid(pid, 0)
"""


@pytest.mark.skipif(
    not _namespaces_work("-rpf", "--mount-proc"), reason="no unprivileged pid namespaces"
)
@pytest.mark.parametrize("init", ["sdready", "control-naive"])
def test_exec_as_pid_1_reaps_orphans(notify_socket: NotifyRecorder, init: str) -> None:
    if init == "sdready":
        pid1 = [*SDREADY, "exec", "-q", "--", PY, "-c", _ORPHAN, "10"]
    else:
        pid1 = [PY, "-c", _NAIVE_INIT, "-c", _ORPHAN, "1"]
    done = subprocess.run(
        [_UNSHARE, "-rpf", "--mount-proc", *pid1],
        env=notify_socket.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.stdout.strip() == ("reaped" if init == "sdready" else "zombie"), done.stderr


# -- doctor and the files a unit names ---------------------------------------------------------

_DESCRIBE = """
import sys
from sdready._units._appfacts import describe_command
facts = describe_command(["gunicorn", "-c", sys.argv[1], "app:app"], {}, "")
print("described", facts.front_end, flush=True)
"""
_PLAIN_READ = "import sys; open(sys.argv[1]).read(); print('read', flush=True)"


@pytest.mark.parametrize("reader", [_DESCRIBE, _PLAIN_READ], ids=["doctor", "control-open"])
def test_a_fifo_for_a_gunicorn_config_does_not_block_doctor(tmp_path: Path, reader: str) -> None:
    """doctor runs as root on a directory a user may write to: a FIFO planted as the
    config once blocked it in open(). The control: a plain open() still blocks."""
    fifo = tmp_path / "gunicorn.conf.py"
    os.mkfifo(fifo)
    with subprocess.Popen([PY, "-c", reader, str(fifo)], stdout=subprocess.PIPE, text=True) as run:
        try:
            out, _ = run.communicate(timeout=10 if reader is _DESCRIBE else 2)
        except subprocess.TimeoutExpired:
            out = "blocked"
        finally:
            run.kill()
    assert out.strip() == ("described None" if reader is _DESCRIBE else "blocked")


def test_doctor_reads_a_bounded_start_of_a_config(tmp_path: Path) -> None:
    """A config that names the plugin only after 200 kB of padding is not read that far."""
    from sdready._units._appfacts import describe_command

    config = tmp_path / "gunicorn.conf.py"
    config.write_text("#" * 300_000 + "\nimport sdready.plugins.gunicorn\n")
    assert describe_command(["gunicorn", "-c", str(config), "app:app"]).front_end is None
    early = tmp_path / "early.conf.py"
    early.write_text("from sdready.plugins.gunicorn import *\n" + "#" * 300_000)
    assert describe_command(["gunicorn", "-c", str(early), "app:app"]).front_end == "gunicorn"


# -- the READY relay of exec --listen -------------------------------------------------------------

# The command: never answers HTTP; with an argument, says READY=1 itself (to the relay).
_RELAY_CHILD = """
import sys, time
from sdready import Notifier
if sys.argv[1:]:
    Notifier().ready()
time.sleep(60)
"""


def _relay_address(pid: int) -> str | None:
    """The command's NOTIFY_SOCKET once it runs (before its execve it has sdready's)."""
    with open(f"/proc/{pid}/environ", "rb") as environ:
        variables = dict(v.split(b"=", 1) for v in environ.read().split(b"\0") if b"=" in v)
    address = variables.get(b"NOTIFY_SOCKET", b"").decode()
    return address if address.startswith("@sdready-exec-") else None


@pytest.mark.parametrize("sender", ["stranger", "control-command"])
def test_the_relay_hears_only_the_commands_tree(
    notify_socket: NotifyRecorder, tmp_path: Path, unix_path: str, sender: str
) -> None:
    """Another process of the same uid finds the relay's abstract name and says READY=1:
    once relayed as the command's own READY, now ignored. The control: the command's own
    READY=1 is relayed."""
    args = ("exec", "-v", "--listen", unix_path, "--ready-timeout", "60", "--", PY, "-c",
            _RELAY_CHILD, *(["ready"] if sender == "control-command" else []))  # fmt: skip
    with sdready_run(notify_socket, *args, log=tmp_path / "log") as run:
        if sender == "control-command":
            run.wait_for("READY=1", 20)
            return
        child = run.child_pid()
        deadline = time.monotonic() + 20
        while (address := _relay_address(child)) is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert Notifier(address).ready()
        run.wait_output(f"ignored a notify message from pid {os.getpid()}")  # the barrier
        assert run.ready_messages() == []


# -- FDNAMEs ----------------------------------------------------------------------------------

_DISTINCT = [("/run/é.sock", "/run/ü.sock"), ("/run/a:b", "/run/a_b"), ("@a\nb%", "@a\tb%")]


@pytest.mark.parametrize(("one", "other"), _DISTINCT)
def test_distinct_addresses_get_distinct_fdnames(one: str, other: str) -> None:
    """Each was stored under one FDNAME, so one socket's entry replaced the other's. The
    control: the old mapping, kept to recognise names already stored, does collide."""
    assert _activation._legacy_fdname(one) == _activation._legacy_fdname(other)
    assert fdname_for(one) != fdname_for(other)
    for address in (one, other):
        name = fdname_for(address)
        assert name.isascii() and name.isprintable() and ":" not in name
        assert unquote(name.replace("_", ":")) == address  # reversible


def test_common_names_are_unchanged() -> None:
    for address in ("127.0.0.1:8000", "[::1]:8000", "/run/app.sock", "@app"):
        assert fdname_for(address) == _activation._legacy_fdname(address)


def test_a_stale_socket_under_its_old_name_still_leaves_the_store(
    notify_socket: NotifyRecorder, unix_path: str
) -> None:
    """A socket stored by an earlier version under the old name of an address no --listen
    names now is recognised as sdready's (and removed), not passed on as a stranger's."""
    with socket.socket(socket.AF_UNIX) as old:
        path = unix_path.replace("hostile-", "hostile_")
        old.bind(path)
        old.listen()
        try:
            name = _activation._legacy_fdname(path)
            assert name != fdname_for(path)
            output = run_with_passed(notify_socket, [(old.fileno(), name)], unix_path)
        finally:
            os.unlink(path)
    assert f"child {unix_path} sock" in output, output
    assert notify_socket.values("FDSTOREREMOVE") == ["1"]


# -- the unit check's claim -------------------------------------------------------------------

_SQUATTER = """
import socket, sys
kind = socket.SOCK_STREAM if sys.argv[2] == "stream" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_UNIX, kind)
s.bind("\\0" + sys.argv[1])
if sys.argv[2] == "stream":
    s.listen()
print("bound", flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(os.getuid() != 0, reason="a stranger's uid needs root to switch to")
@pytest.mark.parametrize(
    ("who", "kind"),
    [("stranger", "dgram"), ("control-ours", "dgram")],
)
def test_a_squatted_unit_check_claim_does_not_silence_the_check(who: str, kind: str) -> None:
    """The claim's name is predictable: another user binding it first once turned the
    startup self-check off. The control: one of our own processes holding it wins."""
    name = f"sdready-unitcheck-{uuid.uuid4().hex}"
    user = 65534 if who == "stranger" else None
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else PY  # nobody's
    with subprocess.Popen(
        [python, "-c", _SQUATTER, name, kind], user=user,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as squatter:  # fmt: skip
        assert squatter.stdout is not None and squatter.stdout.readline() == "bound\n"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as naive, pytest.raises(OSError):
                naive.bind("\0" + name)  # a bare claim: taken, so "someone else checks"
            held: list[socket.socket] = []
            assert claim_abstract(name, held) is (who == "stranger")
            for sock in held:
                sock.close()
        finally:
            squatter.kill()
