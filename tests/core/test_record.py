"""The value types built without ``dataclasses`` (``sdready._record``): immutable, compared
and hashed by value, a dataclass-like ``repr``, picklable; ``Listener.family`` is still a
``socket.AddressFamily``.
"""

from __future__ import annotations

import copy
import pickle
import socket
import subprocess
import sys

import pytest
from sdready import Listener, ListenerSnapshot, listening_sockets
from sdready._listen._probe import Probe
from sdready._notify._notifier import NotifyAddress


def tcp_listener() -> Listener:
    return Listener(5, socket.AF_INET, "127.0.0.1:8000", ("127.0.0.1", 8000), 8000, 4242)


def test_a_listener_is_a_value() -> None:
    first, second = tcp_listener(), tcp_listener()
    assert first == second and hash(first) == hash(second) and len({first, second}) == 1
    assert first != Listener(6, socket.AF_INET, "127.0.0.1:8000", ("127.0.0.1", 8000), 8000, 4242)
    assert first != "127.0.0.1:8000" and str(first) == "127.0.0.1:8000"
    with pytest.raises(AttributeError, match="immutable"):
        first.port = 9000  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del first.inode  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(first)) == first and copy.deepcopy(first) == first
    match first:
        case Listener(fd, family, address):
            assert (fd, family, address) == (5, socket.AF_INET, "127.0.0.1:8000")


def test_a_listeners_family_is_an_address_family() -> None:
    listener = tcp_listener()
    assert type(listener.family) is socket.AddressFamily and listener.family.name == "AF_INET"
    assert repr(listener) == (
        "Listener(fd=5, family=<AddressFamily.AF_INET: 2>, address='127.0.0.1:8000', "
        "connect_address=('127.0.0.1', 8000), port=8000, inode=4242)"
    )


def test_found_listeners_are_the_same_values(tmp_path: object) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        found = [item for item in listening_sockets() if item.fd == sock.fileno()]
        assert len(found) == 1
        item = found[0]
        assert item.family is socket.AF_INET and item.port == sock.getsockname()[1]
        assert item == copy.copy(item) and item in {item}


def test_a_snapshot_is_a_value() -> None:
    listener = tcp_listener()
    snapshot = ListenerSnapshot((listener,), 1.5)
    assert snapshot == ListenerSnapshot((listener,), 1.5, frozenset())
    assert snapshot != ListenerSnapshot((listener,), 1.5, frozenset({7}))
    assert listener in snapshot and len(snapshot) == 1 and list(snapshot) == [listener]
    assert pickle.loads(pickle.dumps(snapshot)) == snapshot
    assert repr(snapshot).startswith("ListenerSnapshot(listeners=(Listener(fd=5")
    with pytest.raises(AttributeError, match="immutable"):
        snapshot.taken_at = 2.0  # type: ignore[misc]


def test_other_values() -> None:
    address = NotifyAddress.parse("/run/systemd/notify")
    assert address == NotifyAddress.parse("/run/systemd/notify") != NotifyAddress.parse("@x")
    assert repr(address).startswith("NotifyAddress(family=1, type=")
    assert Probe("http", "/health") == Probe("http", "/health") != Probe("connect")
    assert repr(Probe("connect")) == "Probe(kind='connect', path='')"


def test_making_listeners_loads_neither_socket_nor_dataclasses() -> None:
    code = (  # what the interpreter loaded itself (an editable install's finder) is not ours
        "import sys; before = set(sys.modules); from sdready._listen._sockets import Listener; "
        "item = Listener(3, 2, 'a:1', ('a', 1), 1, 9); hash(item); str(item); "
        "loaded = set(sys.modules) - before; "
        "print(sorted(m for m in ('socket', 'dataclasses', 'enum') if m in loaded)); "
        "item.family; print('socket' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    # The control: reading family is what loads the socket module.
    assert out == "[]\nTrue\n"
