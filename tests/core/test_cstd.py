"""The commands' C-module shim: each name it gives is the public module's own object (or the
very C type the public name wraps), so code on the fast paths behaves as with the public
modules; and nothing outside the shim imports a private CPython module."""

from __future__ import annotations

import collections
import collections.abc
import re
import signal
import socket
import struct
import threading
import weakref
from pathlib import Path

from sdready import _cstd

CORE = Path(_cstd.__file__).parent


def test_each_name_is_the_public_modules_own() -> None:
    assert _cstd.socket.socket is socket.socket.__mro__[1]  # socket.socket subclasses it
    assert _cstd.socket.AF_UNIX == socket.AF_UNIX and _cstd.socket.inet_pton is socket.inet_pton
    # signal wraps _signal's functions to return enums; the numbers are the same.
    assert _cstd.signal.SIGTERM == signal.SIGTERM and _cstd.signal.SIG_DFL == signal.SIG_DFL
    assert _cstd.struct.pack is struct.pack
    assert _cstd.weakref.ref is weakref.ref
    assert _cstd.deque is collections.deque
    assert _cstd.Callable is collections.abc.Callable
    assert _cstd.Mapping is collections.abc.Mapping
    assert _cstd.Iterable is collections.abc.Iterable
    assert type(_cstd.allocate_lock()) is type(threading.Lock())
    assert _cstd.TYPE_CHECKING is False


def test_c_types_has_what_exec_calls() -> None:
    c_types = _cstd.c_types()
    for name in ("dlopen", "dlsym", "call_function"):
        assert hasattr(c_types, name), name


def test_no_other_module_imports_a_private_cpython_module() -> None:
    private = re.compile(r"^\s*(?:import|from)\s+_(?!_)[a-z]", re.M)
    found = [
        path.name
        for path in CORE.rglob("*.py")
        if path.name != "_cstd.py" and private.search(path.read_text())
    ]
    assert found == []
    # Control: the pattern sees such an import.
    assert private.search("import _socket as socket\n")
