"""The standard library's C halves, for the commands' start-up: the one place sdready uses them.

``sdready notify``, ``exec`` and ``wait-listen`` run in a few milliseconds more than
``python -c pass`` (benchmarks/cli_startup.py). The public modules would cost several times
that: ``socket`` and ``signal`` load ``enum``, ``threading`` loads ``functools`` and
``collections``, ``struct``, ``weakref`` and ``typing`` more again. The modules on those
paths take these names from here instead: the same functions and constants, from the C
modules the public ones wrap. Type checkers see the public modules (the names are theirs);
everything off those paths imports the public modules itself.
tests/core/test_cli_fast.py checks what the commands load; tests/core/test_cstd.py that each
name here is the public module's own.
"""

#: ``typing.TYPE_CHECKING`` without importing typing (true only for type checkers).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    import socket
    import struct
    import weakref
    from collections import deque
    from collections.abc import Callable, Iterable, Mapping
    from threading import Lock as allocate_lock
else:
    import _weakref as weakref
    from _collections_abc import Callable, Iterable, Mapping
    from _thread import allocate_lock

__all__ = [
    "TYPE_CHECKING",
    "Callable",
    "Iterable",
    "Mapping",
    "allocate_lock",
    "c_types",
    "deque",
    "signal",
    "socket",
    "struct",
    "weakref",
]


def __getattr__(name: str) -> object:
    # Loaded when a module first takes them: _socket and _struct are shared libraries
    # (~0.4 ms each), and `import sdready` itself needs neither (nor notify struct/signal;
    # only the retry queue needs deque).
    if name in _LAZY:
        module, _, attribute = _LAZY[name].partition(".")
        value = __import__(module)
        if attribute:
            value = getattr(value, attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Each lazy name: its C module, or ``module.attribute``.
_LAZY = {
    "deque": "_collections.deque",
    "signal": "_signal",
    "socket": "_socket",
    "struct": "_struct",
}


def c_types() -> object:
    """``_ctypes`` (about 0.6 ms to import; ``ctypes`` takes 10-20 ms), loaded on first use:
    only ``sdready exec``'s child needs it, for ``prctl``."""
    import _ctypes

    return _ctypes
