"""``sdready notify``'s fast path (``sdready._commands._cli_notify``): the same messages,
statuses and errors as the full command line, without loading what sending does not need.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from sdready.testing import NotifyRecorder

FAST = [sys.executable, "-m", "sdready", "notify"]  # __main__: the fast path first
# The control: the same command through argparse alone.
FULL = [
    sys.executable,
    "-c",
    "import sys; sys.argv[0] = 'sdready'; "
    "from sdready._commands._cli import main; sys.exit(main())",
    "notify",
]
HEAVY = ("argparse", "logging", "dataclasses", "typing", "socket", "threading", "enum", "re")


def run(
    command: list[str], args: list[str], recorder: NotifyRecorder, **env: str
) -> tuple[int, str, list[bytes]]:
    since = len(recorder.messages)
    environment = {**os.environ, "NOTIFY_SOCKET": recorder.address, **env}
    done = subprocess.run(
        [*command, *args], env=environment, capture_output=True, text=True, check=False
    )
    deadline = time.monotonic() + 5
    while "--no-block" in args and len(recorder.messages) == since:  # no barrier: not yet read
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return done.returncode, done.stderr, [message.raw for message in recorder.messages[since:]]


@pytest.mark.parametrize(
    "args",
    [
        ["--status", "Loading"],
        ["--ready", "--status=Serving on :8000"],
        ["--stopping", "--no-block", "-q"],
        ["--status", "x", "--timeout", "2", "X_STEP=3", "X_OF=5"],
        ["X_STEP=3", "--timeout=0.5", "--ready"],
        ["--reloading"],
        # left to argparse by the fast path: the same outcome either way
        ["X_A=1", "--ready", "X_B=2"],  # a second FIELD=VALUE block
        ["--status", "-x"],
        ["--stat", "abbreviated"],
        ["NOPE"],
        ["nope=1"],
        [],
        ["--help"],
    ],
)
def test_the_fast_path_does_what_argparse_does(
    notify_socket: NotifyRecorder, args: list[str]
) -> None:
    fast = run(FAST, args, notify_socket)
    full = run(FULL, args, notify_socket)
    if "--reloading" in args:  # MONOTONIC_USEC differs from one run to the next
        fast = (fast[0], fast[1], [m.split(b"\n")[0] for m in fast[2]])
        full = (full[0], full[1], [m.split(b"\n")[0] for m in full[2]])
    assert fast == full


def test_errors_after_sending_are_reported_alike(notify_socket: NotifyRecorder) -> None:
    missing = {"NOTIFY_SOCKET": "/nonexistent/notify.sock"}
    assert run(FAST, ["--ready"], notify_socket, **missing) == run(
        FULL, ["--ready"], notify_socket, **missing
    )
    code, stderr, _ = run(FAST, ["--ready"], notify_socket, **missing)
    assert code == 3 and stderr.startswith("sdready notify: cannot notify")


def test_no_notify_socket_is_left_to_the_full_command(notify_socket: NotifyRecorder) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    fast = subprocess.run([*FAST, "--ready"], env=env, capture_output=True, text=True, check=False)
    assert (fast.returncode, fast.stderr) == (
        1,
        "sdready notify: NOTIFY_SOCKET is not set: not started by systemd as Type=notify\n",
    )


def test_the_fast_path_loads_none_of_the_heavy_modules(notify_socket: NotifyRecorder) -> None:
    code = (  # what the interpreter loaded itself (an editable install's finder) is not ours
        "import sys; before = set(sys.modules); "
        "sys.argv = ['sdready', 'notify', '--status', 'x']; "
        "from sdready.__main__ import main; status = main(); "
        f"print(status, [m for m in {HEAVY!r} if m in sys.modules and m not in before])"
    )
    env = {**os.environ, "NOTIFY_SOCKET": notify_socket.address}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert out.stdout.split(None, 1) == ["0", "[]\n"]
    # The control: the full command line loads them.
    full = code.replace(
        "from sdready.__main__ import main", "from sdready._commands._cli import main"
    )
    out = subprocess.run(
        [sys.executable, "-c", full], env=env, capture_output=True, text=True, check=False
    )
    assert out.stdout.startswith("0 ") and "argparse" in out.stdout
