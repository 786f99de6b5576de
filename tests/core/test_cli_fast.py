"""The command's fast paths (``sdready._cli_fast``): argparse's reading of the common forms,
and ``sdready exec`` starting its command before loading the engine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sdready._cli import _build_parser
from sdready._cli_fast import _EXEC_FLAGS, _EXEC_VALUES, _NOTIFY_FLAGS, _NOTIFY_VALUES, read
from sdready.testing import NotifyRecorder

# Loaded by the engine, the listener walk or argparse: none is needed to start a command.
HEAVY = ("argparse", "logging", "dataclasses", "typing", "socket", "threading", "enum", "re")


def argparse_reads(argv: list[str]) -> argparse.Namespace | None:
    try:
        return _build_parser().parse_args(argv)
    except SystemExit:
        return None


@pytest.mark.parametrize(
    "argv",
    [
        ["exec", "--", "python3", "-m", "http.server", "0"],
        ["exec", "-q", "--expect", "8000", "--expect=127.0.0.1:9000,/run/a.sock", "--", "x"],
        ["exec", "--ready-timeout", "1.5s", "--on-timeout=fail", "--watchdog", "x", "-v"],
        ["exec", "--probe", "http:/health", "--pass-notify", "--", "x", "--", "y"],
        ["exec", "-v", "node", "server.js", "--port", "1"],
        ["notify", "--ready", "--status=Serving", "X_A=1", "X_B=2"],
        ["notify", "--status", "x", "--timeout", "2", "--no-block", "-q"],
        # left to argparse: the fast path must say so rather than guess
        ["exec", "--ready", "5", "--", "x"],  # an abbreviation
        ["exec", "--listen", "127.0.0.1:80", "--", "x"],
        ["exec", "--expect", "-1", "--", "x"],
        ["exec", "-qv", "--", "x"],
        ["exec", "--help"],
        ["notify", "X_A=1", "--ready", "X_B=2"],  # a second FIELD=VALUE block
        ["notify", "--status"],
    ],
)
def test_read_agrees_with_argparse_or_declines(argv: list[str]) -> None:
    command, rest = argv[0], argv[1:]
    if command == "exec":
        found = read(rest, _EXEC_FLAGS, _EXEC_VALUES, remainder=True)
    else:
        found = read(rest, _NOTIFY_FLAGS, _NOTIFY_VALUES)
    full = argparse_reads(argv)
    if found is None:  # declined: argparse decides, whatever it makes of it
        return
    assert full is not None, f"read {argv} where argparse refuses it"
    options, positional = found
    names = {**_EXEC_FLAGS, **_NOTIFY_FLAGS}.values()
    for name in set(names) & set(vars(full)):
        assert (name in options) == bool(getattr(full, name)), name
    if command == "exec":
        command_line = list(full.argv)
        assert positional == (command_line[1:] if command_line[:1] == ["--"] else command_line)
        expect = [item for group in full.expect or [] for item in group]
        given = [part.strip() for text in options.get("expect", []) for part in text.split(",")]
        assert [str(item) for item in expect] == given
        assert (full.on_timeout, full.probe) == (
            (options.get("on_timeout") or ["warn"])[-1],
            (options.get("probe") or [None])[-1],
        )
    else:
        assert positional == full.assignments
        assert (options.get("status") or [None])[-1] == full.status


def test_read_declines_what_it_does_not_know() -> None:
    assert read(["--nope"], _EXEC_FLAGS, _EXEC_VALUES, remainder=True) is None
    assert read(["--expect"], _EXEC_FLAGS, _EXEC_VALUES, remainder=True) is None
    assert read(["A=1", "-q", "B=2"], _NOTIFY_FLAGS, _NOTIFY_VALUES) is None
    # The control: the same options in the forms it knows.
    assert read(["-q", "A=1", "B=2"], _NOTIFY_FLAGS, _NOTIFY_VALUES) == (
        {"quiet": True},
        ["A=1", "B=2"],
    )


SPAWN_PROBE = """
import os, sys
heavy = {heavy!r}
before = set(sys.modules)  # the interpreter's own start-up is not ours
real = os.posix_spawnp

def spawn(*args, **kwargs):
    loaded = [m for m in heavy if m in sys.modules and m not in before]
    print("loaded at spawn:", ",".join(loaded) or "-", flush=True)
    return real(*args, **kwargs)

os.posix_spawnp = spawn
sys.argv = ["sdready", {args}]
from {module} import main
sys.exit(main())
"""


def spawn_report(module: str, args: list[str], recorder: NotifyRecorder) -> tuple[int, str]:
    code = SPAWN_PROBE.format(heavy=HEAVY, args=", ".join(map(repr, args)), module=module)
    env = {**os.environ, "NOTIFY_SOCKET": recorder.address}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    return done.returncode, done.stdout


def test_exec_spawns_its_command_before_loading_the_engine(
    notify_socket: NotifyRecorder, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    args = ["exec", "-q", "--expect", "127.0.0.1:1", "--ready-timeout", "0.2", "--on-timeout",
            "fail", "--", "touch", str(marker)]  # fmt: skip
    code, out = spawn_report("sdready.__main__", args, notify_socket)
    assert (code, out) == (0, "loaded at spawn: -\n")
    assert marker.exists()
    # The control: the full command line has argparse, logging and the rest loaded by then.
    code, out = spawn_report("sdready._cli", args, notify_socket)
    assert code == 0
    assert "argparse" in out and "logging" in out and "dataclasses" in out


@pytest.mark.parametrize(
    "args",
    [
        ["--ready-timeout", "0", "--", "true"],
        ["--on-timeout", "maybe", "--", "true"],
        ["--expect", "nowhere", "--", "true"],
        ["--expect", ",", "--", "true"],
        ["--probe", "auto", "--", "true"],
        ["--probe", "tcp", "--", "true"],
    ],
)
def test_a_usage_error_spawns_nothing(
    args: list[str], notify_socket: NotifyRecorder, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    argv = [*args[:-1], "touch", str(marker)]
    code, out = spawn_report("sdready.__main__", ["exec", *argv], notify_socket)
    assert code == 2
    assert "loaded at spawn" not in out and not marker.exists()
