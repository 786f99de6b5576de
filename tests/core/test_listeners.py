"""listening_sockets(): the kernel's view of this process's listeners, on real loopback sockets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sdready._listen._listeners import Listener, _Walker, listening_sockets


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="this host has no ::1")


@pytest.fixture(autouse=True)
def no_foreign_listeners() -> Iterator[None]:
    """These tests compare exact sets: the process must hold no other listener."""
    deadline = time.monotonic() + 2  # grace for a server another test is still closing
    while listening_sockets() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert listening_sockets() == [], "an earlier test leaked a listening socket"
    yield


def tcp_listener(host: str = "127.0.0.1", family: int = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen()
    return sock


def only(listeners: list[Listener]) -> Listener:
    assert len(listeners) == 1, listeners
    return listeners[0]


def can_connect(listener: Listener) -> bool:
    with socket.socket(listener.family, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        client.connect(listener.connect_address)
        return True


def test_tcp_ipv4_listener_is_found_with_its_address() -> None:
    with tcp_listener() as server:
        port = server.getsockname()[1]
        found = only(listening_sockets())
        assert found.fd == server.fileno()
        assert found.family == socket.AF_INET
        assert found.address == f"127.0.0.1:{port}" == str(found)
        assert found.connect_address == ("127.0.0.1", port)
        assert found.port == port
        assert found.inode == os.fstat(server.fileno()).st_ino
        assert can_connect(found)


def test_ipv4_wildcard_connects_through_loopback() -> None:
    with tcp_listener("0.0.0.0") as server:
        port = server.getsockname()[1]
        found = only(listening_sockets())
        assert found.address == f"0.0.0.0:{port}"
        assert found.connect_address == ("127.0.0.1", port)
        assert can_connect(found)


@needs_ipv6
def test_tcp_ipv6_loopback_listener() -> None:
    with tcp_listener("::1", socket.AF_INET6) as server:
        port = server.getsockname()[1]
        found = only(listening_sockets())
        assert found.family == socket.AF_INET6
        assert found.address == f"[::1]:{port}"
        assert found.connect_address[:2] == ("::1", port)
        assert can_connect(found)


@needs_ipv6
def test_ipv6_wildcard_connects_through_loopback() -> None:
    with tcp_listener("::", socket.AF_INET6) as server:
        port = server.getsockname()[1]
        found = only(listening_sockets())
        assert found.address == f"[::]:{port}"
        assert found.connect_address == ("::1", port, 0, 0)
        assert can_connect(found)


def test_unix_path_listener(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()
        found = only(listening_sockets())
        assert (found.family, found.address, found.connect_address) == (socket.AF_UNIX, path, path)
        assert found.port is None
        assert can_connect(found)


def test_abstract_unix_listener() -> None:
    name = f"sdready-test-{os.getpid()}-abstract"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("\0" + name)
        server.listen()
        found = only(listening_sockets())
        assert found.address == "@" + name
        assert found.connect_address == b"\0" + name.encode()
        assert can_connect(found)


def test_sockets_that_do_not_listen_never_count(tmp_path: Path) -> None:
    with (
        tcp_listener() as server,
        socket.socket() as bound,
        socket.socket(),  # never bound
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unix_dgram,
        socket.socket(socket.AF_UNIX) as unix_bound,
    ):
        bound.bind(("127.0.0.1", 0))
        udp.bind(("127.0.0.1", 0))
        unix_dgram.bind(str(tmp_path / "dgram.sock"))
        unix_bound.bind(str(tmp_path / "bound.sock"))
        client = socket.create_connection(server.getsockname(), timeout=5)
        accepted, _ = server.accept()
        pair = socket.socketpair()
        read_end, write_end = os.pipe()
        try:
            assert [item.fd for item in listening_sockets()] == [server.fileno()]
        finally:
            for sock in (client, accepted, *pair):
                sock.close()
            os.close(read_end)
            os.close(write_end)


def test_a_socket_reachable_through_two_fds_is_reported_once_with_the_lowest() -> None:
    with tcp_listener() as server:
        high = os.dup2(server.fileno(), 900)  # above anything the test process holds
        try:
            assert [item.fd for item in listening_sockets()] == [server.fileno()]
        finally:
            os.close(high)


def test_a_dup_at_a_lower_fd_is_the_one_reported() -> None:
    with socket.socket() as placeholder, tcp_listener() as server:
        low = placeholder.fileno()
        placeholder.close()
        os.dup2(server.fileno(), low)
        try:
            found = only(listening_sockets())
            assert found.fd == low < server.fileno()
        finally:
            os.close(low)


def test_a_tcp_listener_that_stops_listening_disappears() -> None:
    with tcp_listener() as server:
        assert listening_sockets()
        server.shutdown(socket.SHUT_RDWR)  # Linux: the socket leaves the listening state
        assert server.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0
        assert listening_sockets() == []


def test_a_shut_down_unix_listener_refuses_connections_and_does_not_count(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "shut.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()
        assert listening_sockets()
        server.shutdown(socket.SHUT_RDWR)  # still "listening" for SO_ACCEPTCONN, but refuses
        with socket.socket(socket.AF_UNIX) as client, pytest.raises(ConnectionRefusedError):
            client.connect(path)
        assert listening_sockets() == []


def test_a_reused_fd_is_seen_for_what_it_now_is() -> None:
    first = tcp_listener()
    fd = first.fileno()
    assert only(listening_sockets()).fd == fd
    first.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        assert udp.fileno() == fd  # lowest free fd
        assert listening_sockets() == []
    with tcp_listener() as second:
        assert second.fileno() == fd
        found = only(listening_sockets())
        assert found.port == second.getsockname()[1]
        assert found.inode == os.fstat(fd).st_ino


def test_walking_never_changes_or_closes_the_apps_sockets() -> None:
    with tcp_listener() as server:
        assert os.get_blocking(server.fileno())
        previous = socket.getdefaulttimeout()
        # With a default timeout CPython makes every socket object it wraps non-blocking;
        # O_NONBLOCK belongs to the open file, so a careless wrapper would change the app's.
        socket.setdefaulttimeout(5)
        try:
            for _ in range(3):
                assert len(listening_sockets()) == 1
        finally:
            socket.setdefaulttimeout(previous)
        assert os.get_blocking(server.fileno())
        assert server.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1


def test_a_late_listen_is_seen_after_listen_and_not_before() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        assert listening_sockets() == []  # bound, cached as a candidate
        server.listen()
        assert only(listening_sockets()).fd == server.fileno()


def test_inherited_listeners_are_found_by_the_child(tmp_path: Path) -> None:
    path = str(tmp_path / "inherited.sock")
    with (
        tcp_listener() as tcp,
        socket.socket(socket.AF_UNIX) as unix,
        socket.socket() as bound,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
    ):
        unix.bind(path)
        unix.listen()
        bound.bind(("127.0.0.1", 0))
        udp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        fds = [sock.fileno() for sock in (tcp, unix, bound, udp)]
        for fd in fds:
            os.set_inheritable(fd, True)
        code = (
            "import json; from sdready._listen._listeners import listening_sockets; "
            "print(json.dumps([[item.fd, item.address] for item in listening_sockets()]))"
        )
        child = subprocess.run(
            [sys.executable, "-W", "error", "-c", code],
            pass_fds=fds,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    assert json.loads(child.stdout) == [[fds[0], f"127.0.0.1:{port}"], [fds[1], path]]


def test_fds_closed_and_reused_during_walks_never_crash_or_mislabel() -> None:
    stop = threading.Event()
    created: dict[int, str] = {}  # inode -> address of every listener the churn opened
    errors: list[BaseException] = []
    progress = [0]

    def churn() -> None:
        try:
            for index in range(20_000):  # bounded; normally stopped much earlier
                if stop.is_set():
                    return
                kind = index % 3
                if kind == 0:
                    sock = tcp_listener()
                    inode = os.fstat(sock.fileno()).st_ino
                    created[inode] = f"127.0.0.1:{sock.getsockname()[1]}"
                elif kind == 1:
                    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                else:
                    sock = socket.socket()
                    sock.bind(("127.0.0.1", 0))
                sock.close()  # the next socket usually reuses this fd number
                progress[0] += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    padding = [os.open(os.devnull, os.O_RDONLY) for _ in range(200)]  # slower walks
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # interleave the two threads finely
    try:
        with tcp_listener() as stable:
            stable_inode = os.fstat(stable.fileno()).st_ino
            thread = threading.Thread(target=churn)
            thread.start()
            results: list[list[Listener]] = []
            deadline = time.monotonic() + 10
            try:
                while (len(results) < 200 or progress[0] < 300) and time.monotonic() < deadline:
                    # Alternate the cached walk and a fresh walker, which learns every socket.
                    walk = listening_sockets if len(results) % 2 else _Walker().walk
                    results.append(walk())
            finally:
                stop.set()
                thread.join(timeout=30)
            expected_stable = f"127.0.0.1:{stable.getsockname()[1]}"
    finally:
        sys.setswitchinterval(switch_interval)
        for fd in padding:
            os.close(fd)
    assert not errors
    assert len(results) >= 200
    for listeners in results:
        stable_seen = [item.address for item in listeners if item.inode == stable_inode]
        assert stable_seen == [expected_stable]
        for item in listeners:
            if item.inode != stable_inode:
                assert created[item.inode] == item.address


def test_concurrent_walks_from_many_threads_agree() -> None:
    with tcp_listener() as server:
        expected = [server.fileno()]
        results: list[list[int]] = []

        def walk() -> None:
            for _ in range(100):
                results.append([item.fd for item in listening_sockets()])

        threads = [threading.Thread(target=walk) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert len(results) == 400
    assert all(result == expected for result in results)


def test_listener_is_an_immutable_record() -> None:
    with tcp_listener() as server:
        found = only(listening_sockets())
        with pytest.raises(AttributeError):
            found.port = 1  # type: ignore[misc]
        assert found == only(listening_sockets())
        assert hash(found) == hash(only(listening_sockets()))
        assert server.fileno() == found.fd


def test_importing_the_module_does_not_import_asyncio() -> None:
    code = "import sys, sdready._listen._listeners; sys.exit('asyncio' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0
