"""What the command says when something is off (issue 24), as the tools users know say it:
argparse's per-subcommand usage, no Python in a command-line message, a warning for what was
changed on the way, and only what was asked about. Each runs both ways the command reads a
command line: ``python -m sdready`` (the fast path first) and argparse alone, which agree.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys

import pytest
from _cli_support import SDREADY
from sdready._commands._cli import _build_parser
from sdready.testing import NotifyRecorder

#: The command through argparse alone (no fast path).
FULL = (sys.executable, "-c", "import sys; sys.argv[0] = 'sdready'; "
        "from sdready._commands._cli import main; sys.exit(main())")  # fmt: skip
PATHS = pytest.mark.parametrize("command", [SDREADY, FULL], ids=["fast-first", "argparse"])


def run(command: tuple[str, ...], *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = subprocess.run(
        [*command, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, result.stderr


@PATHS
@pytest.mark.parametrize(
    ("args", "usage", "error"),
    [
        (["exec", "--bogus", "--", "true"], "usage: sdready exec ", "--bogus"),
        (["notify", "--redy"], "usage: sdready notify ", "--redy"),
        (["wait-listen", "--pid=1", "--nope"], "usage: sdready wait-listen", "--nope"),
    ],
)  # fmt: skip
def test_an_unknown_option_gets_its_subcommands_usage(
    command: tuple[str, ...], args: list[str], usage: str, error: str
) -> None:
    code, err = run(command, *args)
    assert code == 2, err
    assert err.startswith(usage), err
    command_name = args[0]
    assert f"sdready {command_name}: error: unrecognized arguments: {error}" in err, err


def test_control_argparse_alone_names_no_subcommand() -> None:
    """The naive ``parse_args``: the top-level usage, the subcommand unnamed."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit):
        _build_parser().parse_args(["exec", "--bogus", "--", "true"])
    assert err.getvalue().startswith("usage: sdready [-h] [--version] COMMAND"), err.getvalue()


@PATHS
def test_expect_and_probe_errors_speak_the_command_lines_language(
    command: tuple[str, ...],
) -> None:
    code, err = run(command, "wait-listen", "--expect", "99999")
    assert code == 2 and "argument --expect: port 99999 is out of range 1-65535" in err, err
    code, err = run(command, "exec", "--expect", "nowhere", "--", "true")
    assert code == 2 and "argument --expect: 'nowhere' is not a port" in err, err
    code, err = run(command, "exec", "--probe", "http:health", "--", "true")
    assert code == 2, err
    assert "argument --probe: 'http:health' is not 'connect' or 'http:/PATH'" in err, err
    assert "None" not in err and "expect: " not in err, err


@PATHS
def test_a_status_over_the_limit_is_sent_cut_with_a_warning(command: tuple[str, ...]) -> None:
    """systemd drops a datagram over 4096 bytes whole; sdready sends the STATUS cut, exit 0,
    and says so on stderr (``-q`` silences it). Control: one that fits, no warning."""
    with NotifyRecorder() as recorder:
        env = {"NOTIFY_SOCKET": recorder.address}
        code, err = run(command, "notify", "--status", "x" * 5000, env=env)
        assert code == 0, err
        assert len(recorder.wait_for("STATUS", 5)["STATUS"]) == 4089
        assert "STATUS is 5000 bytes" in err and "cut to its first 4089" in err, err
        code, err = run(command, "notify", "-q", "--status", "y" * 5000, env=env)
        assert (code, err) == (0, "")
        code, err = run(command, "notify", "--status", "z" * 4000, env=env)
        assert (code, err) == (0, "")
        recorder.wait_for(lambda m: m.get("STATUS") == "z" * 4000, 5)


@PATHS
def test_field_name_rule_matches_what_is_accepted(command: tuple[str, ...]) -> None:
    with NotifyRecorder() as recorder:
        env = {"NOTIFY_SOCKET": recorder.address}
        assert run(command, "notify", "FOO=bar", env=env) == (0, "")
        recorder.wait_for("FOO", 5)
        code, err = run(command, "notify", "lowercase=bar", env=env)
    assert code == 2, err
    assert "use uppercase letters, digits and underscores" in err, err
    assert "custom fields start with X_" not in err, err  # FOO is accepted


@PATHS
def test_wait_listen_timeout_names_only_the_awaited_listeners(command: tuple[str, ...]) -> None:
    """Without --pid the whole network namespace is watched: another program's listener is
    none of the message's business; an awaited one that listens is named."""
    with socket.socket() as other, socket.socket() as awaited, socket.socket() as gone:
        for sock in (other, awaited, gone):
            sock.bind(("127.0.0.1", 0))
        other.listen()
        awaited.listen()
        other_port, port = other.getsockname()[1], awaited.getsockname()[1]
        missing = gone.getsockname()[1]  # bound, never listening
        expect = f"127.0.0.1:{port},127.0.0.1:{missing}"
        code, err = run(command, "wait-listen", "--expect", expect, "--timeout", "0.3")
    assert code == 1, err
    assert f"expected but not found: 127.0.0.1:{missing}; found: 127.0.0.1:{port}" in err, err
    assert f":{other_port}" not in err, err


def test_exec_timeout_does_not_speak_of_startup_code() -> None:
    """sdready exec's command has no startup code of sdready's: the wait is for any socket."""
    with NotifyRecorder() as recorder:
        env = {"NOTIFY_SOCKET": recorder.address}
        code, err = run(SDREADY, "exec", "--ready-timeout", "0.3", "--", "sleep", "3", env=env)
        recorder.wait_for("READY=1", 10)
    assert code == 0, err
    assert "expected but not found: a listening socket;" in err, err
    assert "startup code" not in err, err
