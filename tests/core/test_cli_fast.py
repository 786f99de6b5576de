"""The command's fast paths (each command's ``fast_main``, reading with
``sdready._commands._cli_fast``): argparse's reading of the common forms, ``sdready exec``
starting its command before loading the engine, ``wait-listen`` loading nothing heavy.
"""

from __future__ import annotations

import argparse
import ast
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sdready._commands._cli import _build_parser
from sdready._commands._cli_exec import _FLAGS as _EXEC_FLAGS
from sdready._commands._cli_exec import _VALUES as _EXEC_VALUES
from sdready._commands._cli_fast import read
from sdready._commands._cli_notify import _FLAGS as _NOTIFY_FLAGS
from sdready._commands._cli_notify import _VALUES as _NOTIFY_VALUES
from sdready._commands._cli_wait import _FLAGS as _WAIT_FLAGS
from sdready._commands._cli_wait import _VALUES as _WAIT_VALUES
from sdready.testing import NotifyRecorder

#: The command through argparse alone: the control of every fast path.
FULL = (
    "import sys; sys.argv[0] = 'sdready'; from sdready._commands._cli import main; sys.exit(main())"
)
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
        ["wait-listen", "--expect", "127.0.0.1:8000", "--timeout=5", "-v"],
        ["wait-listen", "--pid", "123", "--expect", "/run/a.sock", "--probe", "connect", "-q"],
        # left to argparse: the fast path must say so rather than guess
        ["exec", "--ready", "5", "--", "x"],  # an abbreviation
        ["exec", "--listen", "127.0.0.1:80", "--", "x"],
        ["exec", "--expect", "-1", "--", "x"],
        ["exec", "-qv", "--", "x"],
        ["exec", "--help"],
        ["notify", "X_A=1", "--ready", "X_B=2"],  # a second FIELD=VALUE block
        ["notify", "--status"],
        ["wait-listen", "--discovery", "proc", "--pid", "1"],
    ],
)
def test_read_agrees_with_argparse_or_declines(argv: list[str]) -> None:
    command, rest = argv[0], argv[1:]
    if command == "exec":
        found = read(rest, _EXEC_FLAGS, _EXEC_VALUES, remainder=True)
    elif command == "wait-listen":
        found = read(rest, _WAIT_FLAGS, _WAIT_VALUES)
    else:
        found = read(rest, _NOTIFY_FLAGS, _NOTIFY_VALUES)
    full = argparse_reads(argv)
    if found is None:  # declined: argparse decides, whatever it makes of it
        return
    assert full is not None, f"read {argv} where argparse refuses it"
    options, positional = found
    names = {**_EXEC_FLAGS, **_NOTIFY_FLAGS, **_WAIT_FLAGS}.values()
    for name in set(names) & set(vars(full)):
        assert (name in options) == bool(getattr(full, name)), name
    if command != "notify":
        expect = [item for group in full.expect or [] for item in group]
        given = [part.strip() for text in options.get("expect", []) for part in text.split(",")]
        assert [str(item) for item in expect] == given
        assert (options.get("probe") or [None])[-1] == full.probe
    if command == "wait-listen":
        assert positional == []
        assert [str(full.pid)] == options.get("pid", ["None"])
        assert (options.get("timeout") or ["30"])[-1] in (str(full.timeout), f"{full.timeout:g}")
    elif command == "exec":
        command_line = list(full.argv)
        assert positional == (command_line[1:] if command_line[:1] == ["--"] else command_line)
        assert full.on_timeout == (options.get("on_timeout") or ["warn"])[-1]
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
real = os.fork  # sdready exec forks its command (core/_commands/_spawn.py)

def spawn(*args, **kwargs):
    loaded = [m for m in heavy if m in sys.modules and m not in before]
    print("loaded at spawn:", ",".join(loaded) or "-", flush=True)
    return real(*args, **kwargs)

os.fork = spawn
sys.argv = ["sdready", {args}]
from {module} import main
sys.exit(main())
"""


def python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """This interpreter run with *args*, its output captured as text."""
    command = [sys.executable, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, check=False)


def spawn_report(module: str, args: list[str], recorder: NotifyRecorder) -> tuple[int, str]:
    code = SPAWN_PROBE.format(heavy=HEAVY, args=", ".join(map(repr, args)), module=module)
    done = python("-c", code, env={**os.environ, "NOTIFY_SOCKET": recorder.address})
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
    # The control: the full command line has argparse, dataclasses and more loaded by then.
    code, out = spawn_report("sdready._commands._cli", args, notify_socket)
    assert code == 0
    assert "argparse" in out and "dataclasses" in out


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


#: All that ``sdready notify`` may load: the sending path, nothing for a failure it may never
#: meet (the log, the error class, select for a full queue). A new entry costs start-up.
NOTIFY_LOADS = {
    "_socket",
    "errno",
    "sdready",
    "sdready.__main__",
    "sdready._commands",  # the subpackages' own __init__, a docstring each
    "sdready._commands._cli_fast",
    "sdready._commands._cli_notify",
    "sdready._cstd",
    "sdready._env",
    "sdready._notify",
    "sdready._notify._notifier",
    "sdready._notify._protocol",
    "sdready._record",
    "sdready._notify._transport",
}


def notify_loads(env: dict[str, str]) -> tuple[str, set[str]]:
    """``sdready notify --status x``'s exit status and the modules it loaded."""
    code = (
        "import sys; before = set(sys.modules); sys.argv = ['sdready', 'notify', '--status', 'x']; "
        "from sdready.__main__ import main; status = main(); "
        "print(status, sorted(set(sys.modules) - before))"
    )
    status, loaded = python("-c", code, env=env).stdout.split(" ", 1)
    return status, set(ast.literal_eval(loaded))


def test_notify_loads_only_what_sending_needs(notify_socket: NotifyRecorder) -> None:
    code, loaded = notify_loads(notify_socket.env)
    assert (code, loaded - NOTIFY_LOADS) == ("0", set())  # the interpreter may have loaded some
    notify_socket.wait_for("STATUS=x", 2)
    # The control: a failure loads what reports it (and the probe sees it).
    code, loaded = notify_loads({**notify_socket.env, "NOTIFY_SOCKET": "/nonexistent/notify"})
    assert code == "3"
    assert {"sdready._exceptions", "sdready._log"} <= loaded - NOTIFY_LOADS


#: Prints the sdready modules loaded when the command forks its child (exec) or ends.
LOADED_PROBE = """
import os, sys
real = os.fork

def spawn(*args, **kwargs):
    print(sorted(m for m in sys.modules if m.startswith("sdready")), flush=True)
    os._exit(0)

os.fork = spawn
sys.argv = ["sdready", *{args!r}]
from sdready.__main__ import main
main()
print(sorted(m for m in sys.modules if m.startswith("sdready")), flush=True)
"""


def imports_future(module: str) -> bool:
    """Whether *module*'s source has ``from __future__ import ...``."""
    path = Path(__import__(module, fromlist=["_"]).__file__ or "")
    return any(
        isinstance(node, ast.ImportFrom) and node.module == "__future__"
        for node in ast.parse(path.read_text()).body
    )


def test_no_module_on_the_fast_paths_imports_future(notify_socket: NotifyRecorder) -> None:
    """``from __future__ import annotations`` loads ``__future__`` (about 0.3 ms of start-up):
    the modules the commands load before their work is done evaluate their annotations."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        commands = [
            ["notify", "--status", "x"],
            ["wait-listen", "--expect", f"127.0.0.1:{server.getsockname()[1]}"],
            ["exec", "-q", "--", "true"],
        ]
        loaded: set[str] = set()
        for args in commands:
            done = python("-c", LOADED_PROBE.format(args=args), env=notify_socket.env)
            loaded |= set(ast.literal_eval(done.stdout.splitlines()[0]))
    assert {
        "sdready._commands._cli_notify",
        "sdready._commands._cli_wait",
        "sdready._commands._spawn",
    } <= loaded
    assert [module for module in sorted(loaded) if imports_future(module)] == []
    # The control: the engine, loaded once exec's command runs, does import it.
    assert imports_future("sdready._options")


#: The console script (``run``) in a process that says whether the interpreter's teardown ran.
RUN_PROBE = """
import atexit, sys
atexit.register(print, "teardown ran", flush=True)
{preload}
sys.argv = ["sdready", *{args!r}]
from sdready.__main__ import run
run()
"""


def test_the_script_skips_the_teardown_of_a_command_that_left_nothing_to_run() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        args = ["wait-listen", "--expect", f"127.0.0.1:{server.getsockname()[1]}"]
        done = python("-c", RUN_PROBE.format(preload="", args=args))
        # The control: with threading loaded (a thread might have work left), the usual exit.
        control = python("-c", RUN_PROBE.format(preload="import threading", args=args))
    assert (done.returncode, done.stdout) == (0, "")
    assert (control.returncode, control.stdout) == (0, "teardown ran\n")
    # The output was flushed all the same.
    assert done.stderr.startswith("sdready wait-listen: listening on 127.0.0.1:")
    assert done.stderr.split(" after")[0] == control.stderr.split(" after")[0]


def test_wait_listen_loads_none_of_the_heavy_modules() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        argv = ["sdready", "wait-listen", "--expect", f"127.0.0.1:{server.getsockname()[1]}"]
        code = (  # what the interpreter loaded itself (an editable install's finder) is not ours
            f"import sys; before = set(sys.modules); sys.argv = {argv!r}; "
            "from sdready.__main__ import main; status = main(); "
            f"print(status, [m for m in {HEAVY!r} if m in sys.modules and m not in before])"
        )
        done = python("-c", code)
        assert done.stdout == "0 []\n"
        assert done.stderr.startswith("sdready wait-listen: listening on 127.0.0.1:")
        # The control: the full command line loads them, and says the same.
        full = code.replace(
            "from sdready.__main__ import main", "from sdready._commands._cli import main"
        )
        control = python("-c", full)
        assert control.stdout.startswith("0 ") and "argparse" in control.stdout
        assert control.stderr.split(" after")[0] == done.stderr.split(" after")[0]


@pytest.mark.parametrize(
    "args",
    [
        ["8000"],  # a positional argument
        ["--pid", "0"],
        ["--timeout", "1", "--probe", "ftp:/", "--expect", "1"],
        ["--expect", "example.com:80"],
        ["--timeout", "0.2"],  # neither --expect nor --pid
    ],
)
def test_wait_listen_declines_to_the_full_command(args: list[str]) -> None:
    fast = python("-m", "sdready", "wait-listen", *args)
    full = python("-c", FULL, "wait-listen", *args)
    assert (fast.returncode, fast.stderr) == (full.returncode, full.stderr)
    assert fast.returncode == 2 and "usage: sdready" in fast.stderr
