"""The namespace's listeners from netlink sock_diag (``sdready._listen._sockdiag``), and
the watch of another process tree built on it: the same answers as the descriptor walk, and today's
methods whenever sock_diag cannot see the tree.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _state import ProcessState
from sdready import listening_sockets
from sdready._listen import _proctree
from sdready._listen._proctree import TreeListeners, namespace_listeners, sockdiag_support
from sdready._listen._sockdiag import SockDiag, same_network_namespace

pytestmark = pytest.mark.skipif(not sockdiag_support()[0], reason=sockdiag_support()[1])
HAS_IPV6 = socket.has_ipv6 and os.path.exists("/proc/net/tcp6")


@pytest.fixture
def sockets() -> Iterator[dict[str, socket.socket]]:
    """Listeners of every kind, and the controls: sockets that do not listen."""
    path = f"/tmp/sdready-diag-{uuid.uuid4().hex[:10]}.sock"
    made: dict[str, socket.socket] = {}

    def sock(
        name: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM
    ) -> socket.socket:
        made[name] = socket.socket(family, kind)
        return made[name]

    sock("v4").bind(("127.0.0.1", 0))
    sock("wild").bind(("0.0.0.0", 0))
    if HAS_IPV6:
        sock("v6", socket.AF_INET6).bind(("::1", 0))
    sock("path", socket.AF_UNIX).bind(path)
    sock("abstract", socket.AF_UNIX).bind(f"\0sdready-diag-{uuid.uuid4().hex[:10]}")
    for name in list(made):
        made[name].listen()
    sock("bound").bind(("127.0.0.1", 0))  # never listens
    sock("udp", kind=socket.SOCK_DGRAM).bind(("127.0.0.1", 0))
    sock("seqpacket", socket.AF_UNIX, socket.SOCK_SEQPACKET).bind(f"\0sdready-sp-{os.getpid()}")
    made["seqpacket"].listen()  # listens, but the descriptor walk counts stream sockets only
    sock("client").connect(made["v4"].getsockname())
    try:
        yield made
    finally:
        for item in made.values():
            item.close()
        os.unlink(path)


def inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


def test_the_same_listeners_as_the_descriptor_walk(sockets: dict[str, socket.socket]) -> None:
    with SockDiag() as diag:
        dumped = diag.listeners()
    walked = listening_sockets()
    assert {item.inode for item in walked} == {inode(sockets[n]) for n in sockets} - {
        inode(sockets[n]) for n in ("bound", "udp", "seqpacket", "client")
    }
    for item in walked:  # family and address exactly as getsockname() tells them
        family, (address, connect_address, port) = dumped[item.inode]
        assert (family, address, connect_address, port) == (
            item.family,
            item.address,
            item.connect_address,
            item.port,
        )
    for control in ("bound", "udp", "seqpacket", "client"):
        assert inode(sockets[control]) not in dumped


def test_a_closed_listener_is_gone_from_the_next_dump(sockets: dict[str, socket.socket]) -> None:
    with SockDiag() as diag:
        closed = inode(sockets["v4"])
        assert closed in diag.listeners()
        sockets["v4"].close()
        assert closed not in diag.listeners()
        assert inode(sockets["wild"]) in diag.listeners()  # the control: still listening


def test_namespace_listeners_through_sock_diag_as_the_tables(
    sockets: dict[str, socket.socket], process_state: ProcessState
) -> None:
    ours = {inode(sockets[n]) for n in ("v4", "wild", "path", "abstract")}
    diag = {item.inode: str(item) for item in namespace_listeners()}
    process_state.refuse_netlink()
    # The tables' unix listeners are asked by a connection: ours only.
    listed = namespace_listeners(wanted=lambda item: item.inode in ours)
    tables = {item.inode: str(item) for item in listed}
    assert {i: diag[i] for i in ours} == {i: tables[i] for i in ours}


def start(code: str, *prefix: str, stdin: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*prefix, sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE if stdin else None,
        stdout=subprocess.PIPE,
        text=True,
    )


LISTENER = """
import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(60)
"""


def stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def test_the_tree_watch_uses_sock_diag_and_follows_listeners() -> None:
    code = """
    import socket, sys, time
    first = socket.socket(); first.bind(("127.0.0.1", 0)); first.listen()
    print(first.getsockname()[1], flush=True)
    sys.stdin.readline()
    first.close()
    second = socket.socket(); second.bind(("127.0.0.1", 0)); second.listen()
    print(second.getsockname()[1], flush=True)
    time.sleep(60)
    """
    proc = start(code, stdin=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        with socket.socket() as bystander:  # listens in the namespace, not in the tree
            bystander.bind(("127.0.0.1", 0))
            bystander.listen()
            with TreeListeners(proc.pid) as watch:
                assert watch.max_interval is not None  # cheap: polled often
                first = int(proc.stdout.readline())
                assert [item.port for item in watch.poll()] == [first]
                assert watch.method == "sockdiag"
                proc.stdin.write("next\n")
                proc.stdin.flush()
                second = int(proc.stdout.readline())
                assert [item.port for item in watch.poll()] == [second]
    finally:
        stop(proc)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="no unshare(1)")
def test_a_tree_in_another_network_namespace_falls_back() -> None:
    isolated = start(LISTENER, "unshare", "--net", "--")
    control = start(LISTENER)
    try:
        assert isolated.stdout is not None and control.stdout is not None
        port = int(isolated.stdout.readline())  # listens where our dump cannot see
        control_port = int(control.stdout.readline())
    except ValueError:
        stop(isolated)
        stop(control)
        pytest.skip("unshare --net is not permitted here")
    try:
        assert not same_network_namespace(isolated.pid)  # unshare(1) exec'd python there
        with TreeListeners(isolated.pid) as watch:
            assert [item.port for item in watch.poll()] == [port]
            assert watch.method in ("pidfd", "proc")
            assert watch.max_interval is None
        with pytest.raises(OSError, match="another network namespace"):
            TreeListeners(isolated.pid, "sockdiag")
        with TreeListeners(control.pid) as same:  # the control: our namespace
            assert [item.port for item in same.poll()] == [control_port]
            assert same.method == "sockdiag"
    finally:
        stop(isolated)
        stop(control)


def test_refused_netlink_falls_back(process_state: ProcessState) -> None:
    proc = start(LISTENER)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        process_state.refuse_netlink()
        with TreeListeners(proc.pid) as watch:
            assert [item.port for item in watch.poll()] == [port]
            assert watch.method in ("pidfd", "proc")
        with pytest.raises(OSError, match="refused by the test"):
            TreeListeners(proc.pid, "sockdiag")
    finally:
        stop(proc)


def test_a_new_listener_shows_after_unchanged_dumps() -> None:
    with SockDiag() as diag:
        first = diag.listeners()
        assert diag.listeners() == first  # unchanged: the same answer, not parsed again
        with socket.socket() as late:
            late.bind(("127.0.0.1", 0))
            late.listen()
            found = diag.listeners()
            new = inode(late)
            assert found[new][1][2] == late.getsockname()[1]
        assert new not in diag.listeners()  # closed: gone again


def test_a_poll_without_the_unix_dump_reports_the_last_unix_listeners(tmp_path: Path) -> None:
    with SockDiag() as diag, socket.socket(socket.AF_UNIX) as kept:
        kept.bind(str(tmp_path / "kept.sock"))
        kept.listen()
        assert inode(kept) in diag.listeners()
        with socket.socket(socket.AF_UNIX) as late, socket.socket() as tcp:
            late.bind(str(tmp_path / "late.sock"))
            late.listen()
            tcp.bind(("127.0.0.1", 0))
            tcp.listen()
            skipped = diag.listeners(unix=False)
            assert inode(kept) in skipped  # as the last unix dump found it
            assert inode(tcp) in skipped  # TCP is dumped every time
            assert inode(late) not in skipped  # the control: no unix dump, not seen yet
            assert inode(late) in diag.listeners()


def late_listener(sock: str) -> subprocess.Popen[str]:
    """A child that makes *sock* (bound) and listens when told to (:func:`listen_now`)."""
    code = f"""
    import socket, sys, time
    s = {sock}
    sys.stdin.readline()
    s.listen()
    print(s.getsockname()[1] if s.family != socket.AF_UNIX else s.getsockname(), flush=True)
    time.sleep(60)
    """
    return start(code, stdin=True)


def listen_now(proc: subprocess.Popen[str]) -> str:
    """Tell a :func:`late_listener` to listen; its port or path, once it does."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def test_the_tree_watch_sees_a_unix_listener_within_a_few_milliseconds(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    proc = late_listener(f"socket.socket(socket.AF_UNIX); s.bind({path!r})")
    try:
        with TreeListeners(proc.pid) as watch:
            assert watch.poll() == []
            assert listen_now(proc) == path
            # A unix listen() moves no count: the backstop's dumps (every 8 ms, TCP and
            # unix) find it; polled as the wait does, every half millisecond.
            found = []
            for _ in range(200):
                if found := [item.address for item in watch.poll()]:
                    break
                time.sleep(0.0005)
            assert found == [path]
            assert [item.address for item in watch.poll()] == [path]  # and stays seen
    finally:
        stop(proc)


_QUIET_NAMESPACE = """
import json, socket, subprocess, sys, time
from sdready._listen import _proctree

if sys.argv[1] == "control":
    _proctree._BACKSTOP = float("inf")  # a dump only when the counts move
child = subprocess.Popen(
    [sys.executable, "-c", sys.argv[2]], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
)

def step():  # the child's next step, done when it answers
    child.stdin.write("go\\n")
    child.stdin.flush()
    return child.stdout.readline().strip()

def polls_until_found(limit):  # the wait's pace: every half millisecond
    for index in range(1, limit + 1):
        if found := watch.poll():
            return index, sorted(item.family for item in found)
        time.sleep(0.0005)
    return None, []

result = {}
with _proctree.TreeListeners(child.pid) as watch:
    assert watch.poll() == [] and watch.method == "sockdiag"
    step()  # a unix socket made: a count moved, then a quiet namespace
    time.sleep(2 * _proctree._BURST)
    watch.poll()
    step()  # it listens, and no count moves
    result["unix"] = polls_until_found(40)
    step()  # TCP listens
    result["tcp"] = polls_until_found(40)
    if step() == "v6":  # TCPv6 listens
        result["tcp6"] = polls_until_found(40)
child.kill()
print(json.dumps(result))
"""
_QUIET_CHILD = """
import socket, sys
kept = []
def step(answer="done"):
    sys.stdin.readline()
    print(answer, flush=True)
kept.append(socket.socket(socket.AF_UNIX))
kept[-1].bind("\\0sdready-quiet-namespace")
step()
sys.stdin.readline()
kept[-1].listen()
print("done", flush=True)
sys.stdin.readline()
kept.append(socket.socket())
kept[-1].bind(("0.0.0.0", 0))  # loopback is down in a new namespace
kept[-1].listen()
print("done", flush=True)
sys.stdin.readline()
try:
    kept.append(socket.socket(socket.AF_INET6))
    kept[-1].bind(("::", 0))
    kept[-1].listen()
except OSError:
    print("no v6", flush=True)
else:
    print("v6", flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("backstop", ["with", "control"])
def test_a_quiet_namespace_is_dumped_when_its_counts_move(backstop: str) -> None:
    """In a namespace of its own, where nothing else moves the socket counts: a TCP
    listener (v4, v6) is seen at the first poll after its listen(), a unix listener (which
    moves no count) by the backstop's dump. The control, without the backstop, never sees
    the unix listener: the polls between dumps do not dump."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    if subprocess.run(["unshare", "-rn", "true"], check=False).returncode:
        pytest.skip("no unprivileged network namespaces here")
    command = ["unshare", "-rn", sys.executable, "-c", _QUIET_NAMESPACE, backstop, _QUIET_CHILD]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    polls, families = result["tcp"]
    assert polls == 1 and socket.AF_INET in families
    if "tcp6" in result:
        polls, families = result["tcp6"]
        assert polls == 1 and socket.AF_INET6 in families
    if backstop == "with":
        polls, families = result["unix"]
        assert families == [socket.AF_UNIX]
        assert 1 <= polls <= 40
    else:
        assert result["unix"] == [None, []]


def test_without_the_counts_every_poll_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the counts cannot be read, the watch dumps at every poll, every millisecond."""

    class Unreadable:
        def __init__(self) -> None:
            raise OSError(errno.EACCES, "sockstat refused by the test")

    monkeypatch.setattr(_proctree, "SocketCounts", Unreadable)
    proc = late_listener('socket.socket(); s.bind(("127.0.0.1", 0))')
    try:
        with TreeListeners(proc.pid) as watch:
            assert watch.poll() == []
            assert watch.max_interval == 0.001  # a dump per poll: polled as before the counts
            port = int(listen_now(proc))
            assert [item.port for item in watch.poll()] == [port]
    finally:
        stop(proc)
