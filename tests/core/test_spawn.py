"""``sdready exec``'s child: its ``PATH`` search is ``os.execvpe``'s, without loading more."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

#: Runs EXECVPE (the module's or os's) with argv and PATH from the command line, in a
#: process of its own: prints the error it raised, or the command's output.
CHILD = """
import os, sys
from sdready._commands._spawn import execvpe
{patch}
path, argv = sys.argv[1], sys.argv[2:]
env = {{"PATH": path}} if path != "-" else {{}}
try:
    {call}
except OSError as exc:
    print(type(exc).__name__, exc.errno, flush=True)
"""
OURS = "execvpe(argv, env)"
STDLIB = "os.execvpe(argv[0], argv, env)"
# os.get_exec_path imports warnings: the child must not call it.
NO_EXEC_PATH = "def refuse(env=None): raise SystemExit('os.get_exec_path called')\n" + (
    "os.get_exec_path = refuse"
)


def run(call: str, path: str, *argv: str, patch: str = "") -> subprocess.CompletedProcess[str]:
    code = CHILD.format(call=call, patch=patch)
    command = [sys.executable, "-c", code, path, *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def bin_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """Two directories: *blocked* holds a ``tool`` that may not be executed, *ok* one
    that prints ``ran``."""
    blocked, ok = tmp_path / "blocked", tmp_path / "ok"
    for directory, mode in ((blocked, 0o644), (ok, 0o755)):
        directory.mkdir()
        tool = directory / "tool"
        tool.write_text("#!/bin/sh\necho ran\n")
        tool.chmod(mode)
    return blocked, ok


@pytest.mark.parametrize(
    "case",
    ["found", "found-after-blocked", "missing", "blocked-only", "slash", "no-path", "not-a-dir"],
)
def test_execvpe_does_what_os_execvpe_does(case: str, bin_dirs: tuple[Path, Path]) -> None:
    blocked, ok = bin_dirs
    path, argv = {
        "found": (f"/nonexistent:{ok}", ["tool"]),
        "found-after-blocked": (f"{blocked}:{ok}", ["tool"]),  # runs the second, as os does
        "missing": (f"{ok}/nowhere:/nonexistent", ["tool"]),
        "blocked-only": (f"{blocked}:/nonexistent", ["tool"]),  # EACCES wins over ENOENT
        "slash": ("-", [str(ok / "tool")]),
        "no-path": ("-", ["sh", "-c", "echo ran"]),  # os.defpath
        "not-a-dir": (f"{ok / 'tool'}", ["tool"]),
    }[case]
    ours = run(OURS, path, *argv, patch=NO_EXEC_PATH)
    stdlib = run(STDLIB, path, *argv)
    assert (ours.returncode, ours.stdout) == (stdlib.returncode, stdlib.stdout)
    assert ours.stdout in (
        "ran\n",
        "FileNotFoundError 2\n",
        "PermissionError 13\n",
        "NotADirectoryError 20\n",
    )


def test_control_os_execvpe_calls_get_exec_path(bin_dirs: tuple[Path, Path]) -> None:
    _, ok = bin_dirs
    done = run(STDLIB, str(ok), "tool", patch=NO_EXEC_PATH)
    assert "os.get_exec_path called" in done.stderr
