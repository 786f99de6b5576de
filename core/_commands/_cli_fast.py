"""The reader of the ``sdready`` command's common command lines, without argparse.

``sdready notify`` runs at every step of a shell script, ``sdready exec`` stands between
systemd and the server it starts, and ``sdready wait-listen`` between a server's start and
its dependents: all must start about as fast as the interpreter itself. :mod:`.__main__`
first tries the command's own ``fast_main`` (in :mod:`._cli_notify`, :mod:`._cli_exec`,
:mod:`._cli_wait`), which reads the common forms with :func:`read` and the value helpers
here, and imports only what running the command needs (no argparse, logging, dataclasses
or typing). Anything else (``--help``, an abbreviation, an option not listed) and every
usage error goes to :mod:`._cli`, which handles it as it always did: the same checks decide
on both paths, so the outcome is the same. See ``benchmarks/cli_startup.py``.
"""

from .._cstd import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "Found",
    "duration",
    "duration_of",
    "expect_items",
    "expect_of",
    "last",
    "log_level",
    "probe_of",
    "probe_text",
    "read",
]

#: What :func:`read` found: each flag's name → True, each valued option's name → its values.
Found = dict[str, "bool | list[str]"]


def read(
    argv: list[str],
    flags: "Mapping[str, str]",
    values: "Mapping[str, str]",
    *,
    remainder: bool = False,
) -> tuple[Found, list[str]] | None:
    """*argv* as argparse would read it, or None for anything less common.

    *flags* and *values* map the options understood to their names; a valued option takes
    ``--name=VALUE`` or ``--name VALUE`` (a VALUE starting with ``-`` is left to argparse)
    and may repeat. Returns the options found and the positional arguments: one block of
    them (argparse's ``nargs="*"``), or with *remainder* everything from the first one (or
    after ``--``) on, as ``argparse.REMAINDER`` does.
    """
    found: Found = {}
    positional: list[str] = []
    items = iter(argv)
    block_ended = False  # a second block of positional arguments is argparse's error
    for item in items:
        name, sep, value = item.partition("=") if item.startswith("--") else (item, "", "")
        if item in flags:
            found[flags[item]] = True
        elif name in values:
            if not sep:
                value = next(items, "-")
                if value.startswith("-"):  # argparse's own rules decide
                    return None
            listed = found.setdefault(values[name], [])
            assert isinstance(listed, list)
            listed.append(value)
        elif remainder and (item == "--" or not item.startswith("-")):
            rest = [] if item == "--" else [item]
            rest.extend(items)
            return found, rest
        elif item.startswith("-") or (block_ended and positional):
            return None  # --help, an abbreviation, an option not listed, a second block
        else:
            positional.append(item)
            continue
        block_ended = bool(positional)
    return found, positional


def last(found: Found, name: str) -> str | None:
    """The last value given for option *name*, as argparse keeps it; None if not given."""
    given = found.get(name)
    return given[-1] if isinstance(given, list) else None


def duration(text: str) -> float:
    """A duration option's value (``30``, ``1.5s``, ``500ms``, ``2min``); :class:`ValueError`
    for a malformed one. argparse's type for these options too."""
    from .._values import parse_duration

    return parse_duration("a duration", text)


def expect_items(text: str) -> list[int | str]:
    """One ``--expect`` value's addresses (``8000,/run/a.sock``), checked as the waiters
    check them; :class:`ValueError` for a bad one. argparse's type for ``--expect`` too."""
    from .._listen._expect import parse_expectations
    from .._values import parse_expect

    items = parse_expect(text)
    if items is None:
        raise ValueError("--expect needs an address")
    try:
        parse_expectations(items)
    except ValueError as exc:  # the library's words name its option; argparse names ours
        message = str(exc).removeprefix("expect: ").replace("expect entry ", "", 1)
        raise ValueError(message) from None
    return items


def probe_text(text: str) -> str:
    """A ``--probe`` value, checked (``auto`` is not a command-line value); :class:`ValueError`
    for a bad one. argparse's type for ``--probe`` too."""
    from .._listen._probe import parse_probe

    try:
        parse_probe(text)
    except ValueError:  # the library's words speak of None: a command line has no such value
        raise ValueError(
            f"{text!r} is not 'connect' or 'http:/PATH' (a path from '/', printable ASCII, "
            "no spaces: e.g. http:/health)"
        ) from None
    return text


def expect_of(found: Found) -> list[int | str] | None:
    """Every ``--expect`` address given, in order; None if the option was not given."""
    given = found.get("expect")
    if not isinstance(given, list):
        return None
    return [item for text in given for item in expect_items(text)]


def probe_of(found: Found) -> str | None:
    """The ``--probe`` given, checked; None if the option was not given."""
    probe = last(found, "probe")
    return None if probe is None else probe_text(probe)


def duration_of(found: Found, name: str) -> float | None:
    """Option *name*'s duration; None if the option was not given."""
    text = last(found, name)
    return None if text is None else duration(text)


def log_level(found: Found) -> int:
    """The command's log level: ``-q`` errors only, ``-v`` debug, else info."""
    from .._log import DEBUG, ERROR, INFO

    return ERROR if "quiet" in found else DEBUG if "verbose" in found else INFO
