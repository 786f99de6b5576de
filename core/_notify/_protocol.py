"""The sd_notify wire format: what may be sent, and the bytes that carry it. No I/O.

This module validates field names and values, encodes a message into one datagram that
fits the manager's 4096-byte buffer, checks the descriptors passed with it and parses
``NOTIFY_SOCKET``. Sending (``_notifier``) builds on it; nothing here opens a socket.
"""

# The C modules behind socket, threading and collections.abc: those three would load enum,
# selectors, functools and collections, milliseconds that `sdready notify` does not spend.
import errno

from .._cstd import Iterable, Mapping, allocate_lock, socket
from .._record import Record

__all__ = [
    "KNOWN_FIELDS",
    "NOTIFY_BUFFER_MAX",
    "READY_ALONE",
    "SCM_MAX_FD",
    "STATE_FIELDS",
    "WATCHDOG_PING",
    "FieldValue",
    "Fields",
    "Message",
    "NotifyAddress",
    "encode",
    "fd_list",
    "is_full",
    "is_state",
    "ready_apart",
    "timeout_usec",
]

#: The manager reads at most PIPE_BUF bytes and silently drops a longer datagram whole.
NOTIFY_BUFFER_MAX = 4096
#: The kernel's SCM_MAX_FD: more file descriptors in one message are refused.
SCM_MAX_FD = 253
#: The watchdog ping, encoded once: it is sent far more often than anything else.
WATCHDOG_PING = b"WATCHDOG=1"

FieldValue = str | int | bool
Fields = Mapping[str, FieldValue] | str

_FULL_ERRNOS = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS})


def is_full(exc: OSError) -> bool:
    """Whether *exc* means the manager's receive queue is full: worth trying again later."""
    return exc.errno in _FULL_ERRNOS


# Messages carrying one of these change what the manager believes about the service; they
# must reach it even when its queue is momentarily full. STATUS and WATCHDOG pings may be lost.
STATE_FIELDS = frozenset(
    {
        "READY",
        "RELOADING",
        "STOPPING",
        "ERRNO",
        "BUSERROR",
        "VARLINKERROR",
        "EXIT_STATUS",
        "MAINPID",
        "MAINPIDFD",
        "RESTART_RESET",
        "NOTIFYACCESS",
        "FDSTORE",
        "FDSTOREREMOVE",
        "EXTEND_TIMEOUT_USEC",
        "WATCHDOG_USEC",
    }
)
# Every assignment sd_notify(3) documents up to systemd 258. Other well-formed names are sent
# too (systemd ignores what it does not know), so this set only decides what is logged.
KNOWN_FIELDS = STATE_FIELDS | {
    "MONOTONIC_USEC",
    "STATUS",
    "MAINPIDFDID",
    "WATCHDOG",
    "FDNAME",
    "FDPOLL",
    "BARRIER",
}
# systemd compares names case-sensitively with its own, all uppercase: a name outside this
# alphabet (or starting with a digit, as no environment name does) can never mean anything
# to any version of it, so it is a mistake, not a newer field.
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_unknown_logged: set[str] = set()
_unknown_lock = allocate_lock()
_VSOCK_KINDS = {
    "vsock": None,
    "vsock-stream": socket.SOCK_STREAM,
    "vsock-dgram": socket.SOCK_DGRAM,
    "vsock-seqpacket": socket.SOCK_SEQPACKET,
}
_VMADDR_CID_ANY = 0xFFFFFFFF


class NotifyAddress(Record):
    """A parsed ``NOTIFY_SOCKET`` value; immutable, compared by value."""

    __slots__ = ("family", "sockaddr", "text", "type")
    __match_args__ = ("family", "type", "sockaddr", "text")

    family: int
    type: int | None  # None: vsock without an explicit type (datagram, falling back to seqpacket)
    sockaddr: str | tuple[int, int]
    text: str

    def __init__(
        self, family: int, type: int | None, sockaddr: str | tuple[int, int], text: str
    ) -> None:
        self._set(family=family, type=type, sockaddr=sockaddr, text=text)

    def with_type(self, kind: int) -> "NotifyAddress":
        """The same address with another socket type (vsock's seqpacket fallback)."""
        return NotifyAddress(self.family, kind, self.sockaddr, self.text)

    @classmethod
    def parse(cls, value: str) -> "NotifyAddress":
        """Parse *value* the way libsystemd does; raise :class:`ValueError` if it is invalid.

        Accepted: an absolute path, ``@abstract``, ``vsock:CID:PORT`` and the typed
        ``vsock-stream:``, ``vsock-dgram:``, ``vsock-seqpacket:`` forms; a vsock address
        must name its CID (not empty, nor ``VMADDR_CID_ANY``), as libsystemd requires.
        """
        if value.startswith("/"):
            return cls(socket.AF_UNIX, socket.SOCK_DGRAM, value, value)
        if value.startswith("@") and len(value) > 1:
            return cls(socket.AF_UNIX, socket.SOCK_DGRAM, "\0" + value[1:], value)
        kind, sep, rest = value.partition(":")
        if sep and kind in _VSOCK_KINDS:
            cid_text, sep, port_text = rest.partition(":")
            if sep and port_text.isdigit() and (cid_text == "" or cid_text.isdigit()):
                cid = int(cid_text) if cid_text else _VMADDR_CID_ANY
                port = int(port_text)
                if cid == _VMADDR_CID_ANY:
                    # libsystemd's sd_notify refuses it (EINVAL): there is no one to send to.
                    raise ValueError(f"{value!r} is a vsock notify address without a CID")
                if port <= 0xFFFFFFFF:
                    family = getattr(socket, "AF_VSOCK", -1)
                    return cls(family, _VSOCK_KINDS[kind], (cid, port), value)
        if not value:
            raise ValueError("NOTIFY_SOCKET is set but empty")
        raise ValueError(
            f"{value!r} is not a notify socket address "
            "(expected an absolute path, '@abstract' or 'vsock:CID:PORT')"
        )


def encode(fields: Fields) -> tuple[bytes, bool]:  # noqa: PLR0912  (one branch per sd_notify field rule; splitting would scatter the protocol)
    """Validate and serialise *fields*; return ``(datagram, is_state_change)``.

    Any well-formed name is encoded: uppercase letters, digits and underscores, not
    starting with a digit. One that is neither in sd_notify(3) nor a custom ``X_`` field
    is logged once at DEBUG. Raises :class:`ValueError` for programming errors: a
    malformed name, a newline or NUL inside a value, an invalid FDNAME, or a message that
    cannot fit in :data:`NOTIFY_BUFFER_MAX` bytes even after truncating STATUS.
    """
    pairs: list[tuple[str, str]] = []
    if isinstance(fields, str):
        text = fields[:-1] if fields.endswith("\n") else fields
        if "\0" in text:
            raise ValueError("a notification must not contain NUL characters")
        for line in text.split("\n"):
            name, sep, value = line.partition("=")
            if not sep:
                raise ValueError(f"notification line {line!r} is not of the form NAME=VALUE")
            pairs.append((name, value))
    else:
        for name, raw in fields.items():
            if isinstance(raw, bool):
                value = "1" if raw else "0"
            elif isinstance(raw, (int, str)):
                value = str(raw) if isinstance(raw, int) else raw
            else:
                raise ValueError(
                    f"value of {name} must be str, int or bool, not {type(raw).__name__}"
                )
            if "\n" in value or "\0" in value:
                raise ValueError(f"value of {name} must not contain a newline or NUL: {value!r}")
            pairs.append((name, value))
    if not pairs:
        raise ValueError("an empty notification says nothing")
    state = False
    status_index = -1
    for index, (name, value) in enumerate(pairs):
        if name not in KNOWN_FIELDS:
            _check_name(name)
        if name == "FDNAME":
            _check_fdname(value)
        elif name == "STATUS":
            status_index = index
        if name in STATE_FIELDS:
            state = True
    data = "\n".join([f"{name}={value}" for name, value in pairs]).encode("utf-8", "replace")
    if len(data) > NOTIFY_BUFFER_MAX:
        data = _truncate_status(pairs, status_index, len(data))
    return data, state


def _check_name(name: object) -> None:
    """Raise for a malformed field name; log a well-formed one sdready does not know, once."""
    if (
        not isinstance(name, str)
        or not name
        or name[0].isdigit()
        or not _NAME_CHARS.issuperset(name)
    ):
        raise ValueError(
            f"malformed sd_notify field name {name!r}: use uppercase letters, digits and "
            "underscores, not starting with a digit (any such name is sent; sd_notify(3) "
            "suggests X_ for your own)"
        )
    if (name.startswith("X_") and len(name) > 2) or name in _unknown_logged:
        return  # the custom namespace sd_notify(3) recommends, or already logged
    with _unknown_lock:  # two threads sending the same new name log it once
        if name in _unknown_logged:
            return
        _unknown_logged.add(name)
    from .._log import logger  # only a new name or a cut loads the log (notify's start-up)

    logger.debug(
        "sending sd_notify field %s, which sdready does not know (newer, or a typo?); "
        "a systemd that does not know it either ignores it",
        name,
    )


def _check_fdname(value: str) -> None:
    # systemd's fdname_is_valid(): printable ASCII, no ':', at most 255 characters.
    if not value or len(value) > 255:
        raise ValueError(f"FDNAME must be 1 to 255 characters long, got {len(value)}")
    if not value.isascii() or not value.isprintable() or ":" in value:
        raise ValueError(f"FDNAME {value!r} must be printable ASCII without ':'")


def _truncate_status(pairs: list[tuple[str, str]], status_index: int, size: int) -> bytes:
    if status_index < 0:
        raise ValueError(
            f"notification is {size} bytes; the manager drops datagrams over "
            f"{NOTIFY_BUFFER_MAX} bytes whole, and only STATUS can be shortened"
        )
    status = pairs[status_index][1].encode("utf-8", "replace")
    room = len(status) - (size - NOTIFY_BUFFER_MAX)
    if room < 0:
        raise ValueError(
            f"notification is {size} bytes even without STATUS; the limit is {NOTIFY_BUFFER_MAX}"
        )
    # Cut on a character boundary: "ignore" drops a trailing partial UTF-8 sequence.
    shortened = status[:room].decode("utf-8", "ignore")
    from .._log import logger

    logger.debug(
        "STATUS truncated from %d to %d bytes to fit the manager's buffer", len(status), room
    )
    pairs = [*pairs[:status_index], ("STATUS", shortened), *pairs[status_index + 1 :]]
    return "\n".join([f"{name}={value}" for name, value in pairs]).encode("utf-8", "replace")


def timeout_usec(seconds: float, what: str = "extend") -> int:
    """*seconds* as the microseconds of ``EXTEND_TIMEOUT_USEC=``, at least 1.

    Raises :class:`ValueError` unless *seconds* is a positive, finite number (0 and
    infinity mean something else to systemd: "ignore" and "no timeout").
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError(f"{what} must be a number of seconds, got {seconds!r}")
    if not 0 < seconds < float("inf"):
        raise ValueError(f"{what} must be a positive, finite number of seconds, got {seconds!r}")
    return max(1, int(seconds * 1_000_000))


class Message:
    """One encoded notification, with the descriptors and the sender pid that go with it."""

    __slots__ = ("data", "fds", "pid", "state")

    def __init__(self, data: bytes, state: bool, fds: list[int], pid: int | None) -> None:
        self.data = data
        self.state = state  # carries a STATE_FIELDS name: must not be lost to a full queue
        self.fds = fds
        self.pid = pid

    def describe(self) -> str:
        """The first line, for log lines: ``READY=1, ...``."""
        first = self.data.split(b"\n", 1)[0].decode("utf-8", "replace")
        return first if b"\n" not in self.data else first + ", ..."


READY_ALONE = b"READY=1"


def ready_apart(data: bytes) -> bytes | None:
    """What *data* says besides ``READY=1`` when it says both, else None.

    A container's notify proxy passes on ``READY=1`` only from a datagram that begins with
    it (runc) or forwards it as ``READY=1`` alone (conmon, crun): sent as ``READY=1`` first,
    then the rest, READY always arrives, and the rest as far as the proxy lets it.
    """
    lines = data.split(b"\n")
    if READY_ALONE not in lines or len(lines) == 1:
        return None
    return b"\n".join(line for line in lines if line != READY_ALONE) or None


def is_state(data: bytes) -> bool:
    """Whether encoded *data* carries a :data:`STATE_FIELDS` name (must not be lost)."""
    return any(line.partition(b"=")[0].decode() in STATE_FIELDS for line in data.split(b"\n"))


def fd_list(fds: Iterable[object]) -> list[int]:
    """Return *fds* (ints or objects with ``fileno()``) as descriptor numbers.

    Raises :class:`ValueError` for anything that is not a descriptor, or for more than
    :data:`SCM_MAX_FD` of them (the kernel would refuse the whole message).
    """
    result: list[int] = []
    for item in fds:
        fd = item if isinstance(item, int) else getattr(item, "fileno", lambda: None)()
        if not isinstance(fd, int) or fd < 0:
            raise ValueError(f"not a file descriptor: {item!r}")
        result.append(fd)
    if len(result) > SCM_MAX_FD:
        raise ValueError(
            f"at most {SCM_MAX_FD} file descriptors fit in one message, got {len(result)}"
        )
    return result
