"""_sockets: what the kernel says about one descriptor, asked of real sockets."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sdready._listen._sockets import describe, inspect_socket, listener, same_inode


@pytest.fixture
def opened() -> Iterator[list[socket.socket]]:
    sockets: list[socket.socket] = []
    yield sockets
    for sock in sockets:
        sock.close()


def keep(opened: list[socket.socket], sock: socket.socket) -> socket.socket:
    opened.append(sock)
    return sock


def test_a_listening_tcp_socket(opened: list[socket.socket]) -> None:
    sock = keep(opened, socket.socket())
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    state = inspect_socket(sock.fileno())
    assert state is not None and state.listening and state.family == socket.AF_INET
    port = sock.getsockname()[1]
    assert state.address == (f"127.0.0.1:{port}", ("127.0.0.1", port), port)


def test_a_wildcard_ipv6_listener_connects_over_loopback(opened: list[socket.socket]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    sock = keep(opened, socket.socket(socket.AF_INET6))
    sock.bind(("::", 0))
    sock.listen()
    state = inspect_socket(sock.fileno())
    port = sock.getsockname()[1]
    assert state is not None and state.address == (f"[::]:{port}", ("::1", port, 0, 0), port)


def test_unix_and_abstract_listeners(opened: list[socket.socket], tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    named = keep(opened, socket.socket(socket.AF_UNIX))
    named.bind(path)
    named.listen()
    name = f"sdready-test-{uuid.uuid4().hex}"
    abstract = keep(opened, socket.socket(socket.AF_UNIX))
    abstract.bind("\0" + name)
    abstract.listen()
    for sock, text in ((named, path), (abstract, "@" + name)):
        state = inspect_socket(sock.fileno())
        assert state is not None and state.listening
        assert state.address is not None and state.address[0] == text


def test_bound_not_listening_and_connected_sockets(opened: list[socket.socket]) -> None:
    server = keep(opened, socket.socket())
    server.bind(("127.0.0.1", 0))
    bound = inspect_socket(server.fileno(), peer=True)
    assert bound is not None and bound.family == socket.AF_INET
    assert not bound.listening and not bound.connected  # it may still listen()
    server.listen()
    client = keep(opened, socket.create_connection(server.getsockname()))
    connected = inspect_socket(client.fileno(), peer=True)
    assert connected is not None and connected.connected and not connected.listening
    asked_less = inspect_socket(client.fileno())
    assert asked_less is not None and not asked_less.connected  # not asked without peer=True


def test_datagram_and_non_sockets_never_listen(opened: list[socket.socket]) -> None:
    udp = keep(opened, socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    udp.bind(("127.0.0.1", 0))
    state = inspect_socket(udp.fileno())
    assert state is not None and state.family is None
    read, write = os.pipe()
    try:
        assert inspect_socket(read) is None  # not a socket
    finally:
        os.close(read)
        os.close(write)


def test_a_closed_descriptor_is_gone() -> None:
    sock = socket.socket()
    fd = sock.fileno()
    sock.close()
    assert inspect_socket(fd) is None


def test_the_apps_descriptor_is_never_closed_nor_changed(opened: list[socket.socket]) -> None:
    sock = keep(opened, socket.socket())
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(5)  # blocking mode with a timeout: O_NONBLOCK must stay as the app set it
    blocking = os.get_blocking(sock.fileno())
    for _ in range(3):
        inspect_socket(sock.fileno(), peer=True)
    assert os.get_blocking(sock.fileno()) == blocking
    assert sock.getsockname()[1] > 0  # still open


def test_same_inode_follows_descriptor_reuse(opened: list[socket.socket]) -> None:
    first = socket.socket()
    fd, inode = first.fileno(), os.fstat(first.fileno()).st_ino
    assert same_inode(fd, inode)
    first.close()
    assert not same_inode(fd, inode)
    second = keep(opened, socket.socket())  # likely reuses the number
    if second.fileno() == fd:
        assert not same_inode(fd, inode)


def test_listener_from_a_table_entry() -> None:
    item = listener(-1, 42, socket.AF_INET, describe(socket.AF_INET, ("0.0.0.0", 8000)))
    assert (str(item), item.connect_address, item.port, item.inode) == (
        "0.0.0.0:8000",
        ("127.0.0.1", 8000),
        8000,
        42,
    )
