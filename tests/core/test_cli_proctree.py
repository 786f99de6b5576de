"""Another process tree's listening sockets (``sdready._listen._proctree``), by every method.

A child process opens every kind of socket; only its listeners may be reported, once per
socket, with the same readable addresses as the in-process walk.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator

import pytest
from _state import ProcessState
from sdready._listen import _proctree
from sdready._listen._proctree import (
    TreeListeners,
    alive,
    namespace_listeners,
    pidfd_getfd_support,
    process_tree,
    sockdiag_support,
)

METHODS = [
    "proc",
    pytest.param(
        "pidfd",
        marks=pytest.mark.skipif(not pidfd_getfd_support()[0], reason=pidfd_getfd_support()[1]),
    ),
    pytest.param(
        "sockdiag",
        marks=pytest.mark.skipif(not sockdiag_support()[0], reason=sockdiag_support()[1]),
    ),
]
HAS_IPV6 = socket.has_ipv6 and os.path.exists("/proc/net/tcp6")

CHILD = """
import os, socket, sys, time
keep = []
def sock(family=socket.AF_INET, kind=socket.SOCK_STREAM):
    s = socket.socket(family, kind); keep.append(s); return s
v4 = sock(); v4.bind(("127.0.0.1", 0)); v4.listen()
wild = sock(); wild.bind(("0.0.0.0", 0)); wild.listen()
if {ipv6}:
    v6 = sock(socket.AF_INET6); v6.bind(("::1", 0)); v6.listen()
path = sock(socket.AF_UNIX); path.bind({path!r}); path.listen()
abstract = sock(socket.AF_UNIX); abstract.bind({abstract!r}); abstract.listen()
bound = sock(); bound.bind(("127.0.0.1", 0))                      # never listens
udp = sock(kind=socket.SOCK_DGRAM); udp.bind(("127.0.0.1", 0))
dgram = sock(socket.AF_UNIX, socket.SOCK_DGRAM)
client = sock(); client.connect(v4.getsockname())                  # connected
accepted, _ = v4.accept(); keep.append(accepted)
os.dup(v4.fileno())                                                # same socket twice
if os.fork() == 0:                                                 # a child sharing them
    time.sleep(60); os._exit(0)
print(v4.getsockname()[1], wild.getsockname()[1], v6.getsockname()[1] if {ipv6} else 0,
      flush=True)
time.sleep(60)
"""


@pytest.fixture
def child() -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    path = f"/tmp/sdready-tree-{uuid.uuid4().hex[:10]}.sock"
    abstract = f"\0sdready-tree-{uuid.uuid4().hex[:10]}"
    code = CHILD.format(ipv6=HAS_IPV6, path=path, abstract=abstract)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    v4, wild, v6 = proc.stdout.readline().split()
    expected = {
        "v4": f"127.0.0.1:{v4}",
        "wild": f"0.0.0.0:{wild}",
        "path": path,
        "abstract": "@" + abstract[1:],
    }
    if HAS_IPV6:
        expected["v6"] = f"[::1]:{v6}"
    try:
        yield proc, expected
    finally:
        for pid in process_tree(proc.pid)[::-1]:
            os.kill(pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if os.path.exists(path):
            os.unlink(path)


@pytest.mark.parametrize("method", METHODS)
def test_only_listeners_once_each(
    child: tuple[subprocess.Popen[str], dict[str, str]], method: str
) -> None:
    proc, expected = child
    with TreeListeners(proc.pid, method) as watch:  # type: ignore[arg-type]
        found = watch.poll()
        again = watch.poll()  # cached verdicts give the same answer
        assert watch.method == method
    assert sorted(str(item) for item in found) == sorted(expected.values())
    assert [str(item) for item in again] == [str(item) for item in found]
    by_address = {item.address: item for item in found}
    wild = by_address[expected["wild"]]
    assert wild.connect_address == ("127.0.0.1", wild.port)  # a wildcard maps to loopback
    assert (
        by_address[expected["abstract"]].connect_address
        == b"\0" + expected["abstract"][1:].encode()
    )
    assert len({item.inode for item in found}) == len(found)


@pytest.mark.parametrize("method", METHODS[1:])
def test_every_method_agrees_with_proc(
    child: tuple[subprocess.Popen[str], dict[str, str]], method: str
) -> None:
    proc, _ = child
    with TreeListeners(proc.pid, method) as a, TreeListeners(proc.pid, "proc") as b:  # type: ignore[arg-type]
        assert {(x.address, x.inode, x.port, x.connect_address) for x in a.poll()} == {
            (x.address, x.inode, x.port, x.connect_address) for x in b.poll()
        }


def test_refused_pidfd_falls_back_to_proc(
    child: tuple[subprocess.Popen[str], dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    process_state: ProcessState,
) -> None:
    if not pidfd_getfd_support()[0]:
        pytest.skip(pidfd_getfd_support()[1])
    proc, expected = child

    def refuse(pidfd: int, fd: int) -> int:  # as with Yama ptrace_scope=2, or not dumpable
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(_proctree, "_getfd", refuse)
    process_state.refuse_netlink()
    with TreeListeners(proc.pid) as watch:
        assert sorted(map(str, watch.poll())) == sorted(expected.values())
        assert watch.method == "proc"
    assert "reading /proc" in caplog.text
    with TreeListeners(proc.pid, "pidfd") as strict:
        assert strict.poll() == []  # "pidfd" alone: a refusing process is not seen
    assert "its sockets are not seen" in caplog.text


def test_listener_appearing_later_and_in_a_grandchild() -> None:
    path = f"/tmp/sdready-tree-{uuid.uuid4().hex[:10]}.sock"
    code = textwrap.dedent(
        f"""
        import socket, subprocess, sys, time
        inner = "import socket, time; s = socket.socket(socket.AF_UNIX); s.bind({path!r}); " \\
                "time.sleep(0.2); s.listen(); time.sleep(60)"
        subprocess.Popen([sys.executable, "-c", inner]).wait()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        with TreeListeners(proc.pid) as watch:
            deadline = time.monotonic() + 20
            found = watch.poll()
            while not found:
                assert time.monotonic() < deadline
                time.sleep(0.01)
                found = watch.poll()
        assert [str(item) for item in found] == [path]
        assert len(process_tree(proc.pid)) == 2
    finally:
        for pid in process_tree(proc.pid)[::-1]:
            os.kill(pid, signal.SIGKILL)
        proc.wait()
        if os.path.exists(path):
            os.unlink(path)


def test_namespace_listeners_see_every_process() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        found = {str(item): item for item in namespace_listeners()}
        assert address in found
        assert found[address].inode == os.fstat(server.fileno()).st_ino


def test_alive_and_zombies() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 20
    while alive(proc.pid):  # exits, stays a zombie until reaped
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert os.path.exists(f"/proc/{proc.pid}")
    assert process_tree(proc.pid) == []
    proc.wait()
    assert alive(os.getpid())


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="method"):
        TreeListeners(os.getpid(), "magic")  # type: ignore[arg-type]


def test_a_process_tree_looked_at_again_follows_new_descendants() -> None:
    code = (
        "import subprocess, sys, time; sys.stdin.readline(); "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tree = _proctree.ProcessTree(proc.pid)
        assert tree.pids() == [proc.pid]
        proc.stdin.write("fork\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 20
        while len(pids := tree.pids()) < 2:  # the child, seen by the same object
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert pids == process_tree(proc.pid)  # as a fresh look says
        assert bystander.pid not in pids
    finally:
        for pid in process_tree(proc.pid)[::-1]:
            os.kill(pid, signal.SIGKILL)
        bystander.kill()
        bystander.wait()
        proc.wait()
        proc.stdin.close()
