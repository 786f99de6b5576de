"""``expect=``: which listeners must exist, parsed once into tests on a :class:`Listener`.

A port, ``"host:port"`` (``*`` any address, ``localhost`` for 127.0.0.1 or ::1), a unix path,
``"@abstract"``, a predicate, or an iterable of those. Hosts match the bound address
exactly; names are never resolved.
"""

from .._cstd import TYPE_CHECKING, Callable, Iterable

# Light on purpose: sdready exec checks --expect with this before it spawns its command,
# so nothing here imports typing, dataclasses or the socket module; _socket itself only
# where an address is parsed (`exec -- cmd` starts its command without it).
if TYPE_CHECKING:
    from typing import TypeAlias

    from ._sockets import Listener

__all__ = ["Expect", "ExpectEntry", "Expectation", "parse_expectations"]

ExpectEntry: "TypeAlias" = int | str | Callable[["Listener"], bool]
#: A port, ``"host:port"``, a unix path, ``"@abstract"``, a predicate, or an iterable of those.
Expect: "TypeAlias" = ExpectEntry | Iterable[ExpectEntry]


class Expectation:
    """One entry of ``expect``: its text (for messages) and its test on a listener."""

    __slots__ = ("matches", "text")

    def __init__(self, text: str, matches: "Callable[[Listener], bool]") -> None:
        self.text = text
        self.matches = matches

    def __repr__(self) -> str:
        return f"Expectation({self.text!r})"


def parse_expectations(expect: Expect) -> tuple[Expectation, ...]:
    entries: Iterable[object]
    if isinstance(expect, (int, str)) or callable(expect):
        entries = (expect,)
    elif isinstance(expect, Iterable):
        entries = expect
    else:
        raise ValueError(
            f"expect must be a port, a string, a predicate or an iterable of those, not {expect!r}"
        )
    parsed = tuple(_parse_entry(entry) for entry in entries)
    if not parsed:
        raise ValueError("expect is empty: pass None for the default selection")
    return parsed


def _parse_entry(entry: object) -> Expectation:
    if isinstance(entry, bool):  # a bool is an int, but never a port
        raise ValueError(f"expect entry {entry!r} is not a port")
    if isinstance(entry, int):
        return _port_expectation(entry, None, f"port {entry}")
    if isinstance(entry, str):
        return _parse_string(entry)
    if callable(entry):
        predicate: Callable[[Listener], bool] = entry
        name = getattr(entry, "__qualname__", None) or repr(entry)
        return Expectation(f"a listener matching {name}", lambda item: bool(predicate(item)))
    raise ValueError(f"expect entry {entry!r} is not a port, a string or a predicate")


def _parse_string(text: str) -> Expectation:
    from .._cstd import socket

    if text.startswith("/"):
        return Expectation(
            text, lambda item: item.address == text and item.family == socket.AF_UNIX
        )
    if text.startswith("@") and len(text) > 1:
        return Expectation(
            text, lambda item: item.address == text and item.family == socket.AF_UNIX
        )
    if text.isdigit():
        return _port_expectation(int(text), None, f"port {text}")
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(
            f"expect entry {text!r} is not a port, 'host:port', "
            "an absolute unix path or '@abstract'"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host in ("", "*"):
        return _port_expectation(int(port_text), None, f"*:{port_text}")
    if host == "localhost":
        hosts = frozenset({"127.0.0.1", "::1"})
    else:
        normal = _normal_host(host)
        if normal is None:
            raise ValueError(
                f"expect entry {text!r}: host must be an IP address, 'localhost' or '*' "
                "(names are not resolved)"
            )
        hosts = frozenset({normal})
    return _port_expectation(int(port_text), hosts, text)


def _normal_host(host: str) -> str | None:
    """One spelling per address (``::FFFF:127.0.0.1`` is ``::ffff:127.0.0.1``, as the kernel
    writes it); None if not an IP address. The C library's parser, not ``ipaddress``: it
    accepts the same addresses and costs ``sdready`` nothing at start-up."""
    from .._cstd import socket

    bare, _, scope = host.partition("%")
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            normal = socket.inet_ntop(family, socket.inet_pton(family, bare))
        except (OSError, ValueError):  # ValueError: a NUL in the text
            continue
        return f"{normal}%{scope}" if scope else normal
    return None


def _port_expectation(port: int, hosts: frozenset[str] | None, text: str) -> Expectation:
    if not 0 < port < 65536:
        raise ValueError(f"expect: port {port} is out of range 1-65535")

    def matches(item: "Listener") -> bool:
        if item.port != port:
            return False
        return hosts is None or _host_of(item) in hosts

    return Expectation(text, matches)


def _host_of(item: "Listener") -> str | None:
    host = item.address.rpartition(":")[0]
    return _normal_host(host[1:-1] if host.startswith("[") else host)
