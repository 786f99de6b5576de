"""``sdready exec``: READY for a server without a plugin, against a real notify socket.

Real servers (http.server, node, hypercorn, granian) bind port 0 on loopback; the port is
read from the READY status, so parallel runs never collide. Each run is cleaned up by
``sdready_run`` (no process outlives its test).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _cli_support import NODE, SDREADY, Run, ready_address, sdready_run
from _servers import http_get, rounds
from sdready import texts
from sdready._listen._proctree import pidfd_getfd_support, sockdiag_support
from sdready.testing import NotifyMessage, NotifyRecorder

PY = sys.executable
HTTP_SERVER = (PY, "-m", "http.server", "--bind", "127.0.0.1", "0")
NODE_SERVER = (
    "node",
    "-e",
    "require('http').createServer((q, r) => r.end('ok')).listen(0, '127.0.0.1')",
)
SLEEPER = (PY, "-c", "import time; time.sleep(60)")
METHODS = [
    "proc",
    pytest.param(
        "pidfd",
        marks=pytest.mark.skipif(not pidfd_getfd_support()[0], reason=pidfd_getfd_support()[1]),
    ),
    pytest.param(
        "sockdiag",
        marks=pytest.mark.skipif(not sockdiag_support()[0], reason=sockdiag_support()[1]),
    ),
]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "sdready.log"


@pytest.fixture
def unix_path() -> Iterator[str]:
    path = f"/tmp/sdready-exec-{uuid.uuid4().hex[:10]}.sock"  # sun_path is 108 bytes at most
    yield path
    if os.path.exists(path):
        os.unlink(path)


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / f"child-{uuid.uuid4().hex[:6]}.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def assert_accepts_at_ready(run: Run, timeout: float = 20.0) -> tuple[str, int]:
    ready = run.wait_for("READY=1", timeout)
    host, port = ready_address(ready)
    # At the moment READY arrived:
    assert http_get((host, port), timeout=5.0).status == 200, run.output()
    return host, port


# -- READY only once the port accepts ----------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_http_server_ready_when_listening(
    notify_socket: NotifyRecorder, log: Path, method: str
) -> None:
    with sdready_run(
        notify_socket, "exec", "--discovery", method, "--", *HTTP_SERVER, log=log
    ) as run:
        waiting = run.wait_for("STATUS")
        assert waiting["STATUS"] == texts.WAITING
        assert_accepts_at_ready(run)
        ready = run.ready_messages()
        assert len(ready) == 1
        assert ready[0].pid == run.pid  # from the main process: NotifyAccess=main works
        assert f"(pid {run.child_pid()})" in ready[0]["STATUS"]
        run.wait_output(f"seen through {method}")


def _ready_from(pids: set[int]) -> Callable[[NotifyMessage], bool]:
    return lambda message: message.pid in pids and message.get("READY") == "1"


def _get_at_ready_many(
    recorder: NotifyRecorder, log_dir: Path, command: tuple[str, ...], runs: int, batch: int
) -> list[str]:
    """Start *runs* servers under ``sdready exec``, *batch* at a time; GET each as soon as its
    READY arrives. Returns the failures."""
    failures: list[str] = []
    for first in range(0, runs, batch):
        with contextlib.ExitStack() as stack:
            pending = {
                run.pid: run
                for run in (
                    stack.enter_context(
                        sdready_run(recorder, "exec", "--", *command, log=log_dir / f"{n}.log")
                    )
                    for n in range(first, min(first + batch, runs))
                )
            }
            since = len(recorder)
            while pending:
                ready = recorder.wait_for(_ready_from(set(pending)), 30, since=since)
                try:
                    # At once: READY means accepting.
                    status = http_get(ready_address(ready), timeout=5.0).status
                except OSError as exc:
                    failures.append(f"{ready.pid}: {exc!r}")
                else:
                    if status != 200:
                        failures.append(f"{ready.pid}: HTTP {status}")
                assert ready.pid is not None
                del pending[ready.pid]
    return failures


@pytest.mark.slow
def test_http_server_get_at_ready_every_round(
    notify_socket: NotifyRecorder, tmp_path: Path
) -> None:
    failures = _get_at_ready_many(notify_socket, tmp_path, HTTP_SERVER, runs=rounds(30), batch=6)
    assert failures == []


@pytest.mark.slow
@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_node_server_get_at_ready_every_round(
    notify_socket: NotifyRecorder, tmp_path: Path
) -> None:
    failures = _get_at_ready_many(notify_socket, tmp_path, NODE_SERVER, runs=rounds(30), batch=6)
    assert failures == []


def test_hypercorn(notify_socket: NotifyRecorder, log: Path, tmp_path: Path) -> None:
    pytest.importorskip("hypercorn")
    hypercorn = Path(sys.executable).parent / "hypercorn"
    (tmp_path / "cli_app.py").write_text(ASGI_APP)
    command = [str(hypercorn), "--bind", "127.0.0.1:0", "cli_app:app"]
    with sdready_run(
        notify_socket, "exec", "--", *command, log=log, env={"PYTHONPATH": str(tmp_path)}
    ) as run:
        assert_accepts_at_ready(run)
        run.signal(signal.SIGTERM)
        assert run.wait() == 0  # hypercorn shuts down cleanly on SIGTERM


def test_granian(notify_socket: NotifyRecorder, log: Path, tmp_path: Path) -> None:
    pytest.importorskip("granian")
    granian = Path(sys.executable).parent / "granian"
    (tmp_path / "cli_app.py").write_text(ASGI_APP)
    command = [str(granian), "--interface", "asgi", "--host", "127.0.0.1", "--port", "0"]
    with sdready_run(
        notify_socket,
        "exec",
        "--",
        *command,
        "--working-dir",
        str(tmp_path),
        "cli_app:app",
        log=log,
    ) as run:
        assert_accepts_at_ready(run)
        run.signal(signal.SIGTERM)
        assert run.wait() == 0


ASGI_APP = """\
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def test_listener_in_a_grandchild(notify_socket: NotifyRecorder, log: Path) -> None:
    # A shell without `exec`: the server is the shell's child, not sdready's.
    command = " ".join(HTTP_SERVER) + "; true"
    with sdready_run(notify_socket, "exec", "--", "/bin/sh", "-c", command, log=log) as run:
        assert_accepts_at_ready(run)
        assert len(run.children()) == 2


@pytest.mark.parametrize("method", METHODS)
def test_expect_waits_for_the_named_listener(
    notify_socket: NotifyRecorder, log: Path, tmp_path: Path, unix_path: str, method: str
) -> None:
    child = script(
        tmp_path,
        f"""
        import socket, time
        aux = socket.socket(); aux.bind(("127.0.0.1", 0)); aux.listen()  # a metrics port
        time.sleep(0.4)
        main = socket.socket(socket.AF_UNIX); main.bind({unix_path!r}); main.listen()
        time.sleep(60)
        """,
    )
    args = ("exec", "--discovery", method, "--expect", unix_path, "--", PY, child)
    with sdready_run(notify_socket, *args, log=log) as run:
        began = time.monotonic()
        ready = run.wait_for("READY=1", 20)
        assert ready["STATUS"] == texts.READY.format(addresses=unix_path, pid=run.child_pid())
        assert ready.time - began >= 0.3  # not at the auxiliary port


def test_without_expect_the_first_listener_counts(
    notify_socket: NotifyRecorder, log: Path, tmp_path: Path
) -> None:
    child = script(
        tmp_path,
        """
        import socket, time
        time.sleep(0.1)
        first = socket.socket(socket.AF_INET6); first.bind(("::1", 0)); first.listen()
        time.sleep(60)
        """,
    )
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    with sdready_run(notify_socket, "exec", "--", PY, child, log=log) as run:
        assert "[::1]:" in run.wait_for("READY=1", 20)["STATUS"]


def test_probe_http(notify_socket: NotifyRecorder, log: Path) -> None:
    args = ("exec", "--probe", "http:/", "--", *HTTP_SERVER)
    with sdready_run(notify_socket, *args, log=log) as run:
        assert_accepts_at_ready(run)


def test_notify_socket_is_withheld_from_the_command(
    notify_socket: NotifyRecorder, log: Path, tmp_path: Path
) -> None:
    child = script(
        tmp_path,
        """
        import os, socket, sys, time
        print("child sees NOTIFY_SOCKET =", os.environ.get("NOTIFY_SOCKET"), flush=True)
        print("own process group:", os.getpgid(0) == os.getpid(), flush=True)
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
        time.sleep(60)
        """,
    )
    with sdready_run(notify_socket, "exec", "--", PY, child, log=log) as run:
        run.wait_for("READY=1", 20)
        output = run.output()
        assert "child sees NOTIFY_SOCKET = None" in output
        assert "own process group: True" in output


def test_pass_notify_lets_the_command_speak(
    notify_socket: NotifyRecorder, log: Path, tmp_path: Path
) -> None:
    child = script(
        tmp_path,
        """
        import sdready, time
        sdready.status("from the child")
        time.sleep(60)
        """,
    )
    with sdready_run(notify_socket, "exec", "--pass-notify", "--", PY, child, log=log) as run:
        message = notify_socket.wait_for("STATUS=from the child", 20)
        assert message.pid == run.child_pid()


def test_socket_activation_is_passed_on(
    notify_socket: NotifyRecorder, log: Path, tmp_path: Path
) -> None:
    child = script(
        tmp_path,
        """
        import os, socket, time
        assert os.environ["LISTEN_PID"] == str(os.getpid()), os.environ["LISTEN_PID"]
        sock = socket.socket(fileno=3)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        print("child got fd 3 with LISTEN_PID set to its pid", flush=True)
        time.sleep(60)
        """,
    )
    with socket.socket() as activated:
        activated.bind(("127.0.0.1", 0))
        activated.listen()
        fd = activated.fileno()
        # Plays systemd: the socket becomes fd 3 and LISTEN_PID is sdready's own pid.
        become = (
            "import os, sys; os.dup2(int(sys.argv[1]), 3); "
            "os.environ['LISTEN_PID'] = str(os.getpid()); os.execv(sys.argv[2], sys.argv[2:])"
        )
        prefix = (PY, "-c", become, str(fd))
        with sdready_run(
            notify_socket,
            "exec",
            "--",
            PY,
            child,
            log=log,
            env={"LISTEN_FDS": "1"},
            pass_fds=(fd,),
            prefix=prefix,
        ) as run:
            ready = run.wait_for("READY=1", 20)
            assert str(activated.getsockname()[1]) in ready["STATUS"]
            deadline = time.monotonic() + 10
            while "child got fd 3" not in run.output():
                assert time.monotonic() < deadline, run.output()
                time.sleep(0.02)


# -- the command that never listens, or dies --------------------------------------------------


def test_timeout_warn_sends_ready_with_a_warning(notify_socket: NotifyRecorder, log: Path) -> None:
    args = ("exec", "--ready-timeout", "0.3", "--", *SLEEPER)
    with sdready_run(notify_socket, *args, log=log) as run:
        began = time.monotonic()
        ready = run.wait_for("READY=1", 20)
        assert ready.time - began >= 0.25
        assert ready["STATUS"] == texts.TIMEOUT_WARN.format(timeout=0.3, pid=run.child_pid())
        assert "sending READY although no listening socket was seen" in run.output()


def test_timeout_ready_sends_ready_quietly(notify_socket: NotifyRecorder, log: Path) -> None:
    args = ("exec", "--ready-timeout", "0.3", "--on-timeout", "ready", "--", *SLEEPER)
    with sdready_run(notify_socket, *args, log=log) as run:
        ready = run.wait_for("READY=1", 20)
        assert ready["STATUS"] == texts.READY_UNCHECKED.format(pid=run.child_pid())


def test_timeout_fail_never_sends_ready(notify_socket: NotifyRecorder, log: Path) -> None:
    args = ("exec", "--ready-timeout", "0.3", "--on-timeout", "fail", "--", *SLEEPER)
    with sdready_run(notify_socket, *args, log=log) as run:
        run.wait_for(f"STATUS={texts.TIMEOUT_FAIL.format(timeout=0.3)}", 20)
        assert run.process.poll() is None  # still running: systemd's TimeoutStartSec decides
        time.sleep(0.2)
        run.signal(signal.SIGTERM)
        assert run.wait() == -signal.SIGTERM
        notify_socket.barrier()  # everything the dead command sent is recorded
        assert run.ready_messages() == []


def test_command_that_dies_gets_no_ready_and_its_status(
    notify_socket: NotifyRecorder, log: Path
) -> None:
    args = ("exec", "--", PY, "-c", "import time, sys; time.sleep(0.1); sys.exit(3)")
    with sdready_run(notify_socket, *args, log=log) as run:
        assert run.wait() == 3
        failed = run.statuses()[-1]
        assert failed.startswith(texts.STARTUP_FAILED.format(message=""))
        assert "exited with status 3 before listening" in failed
        assert run.ready_messages() == []


@pytest.mark.parametrize("code", [0, 3])
def test_a_command_that_daemonizes_is_named_as_such(
    notify_socket: NotifyRecorder, log: Path, code: int
) -> None:
    # A daemon forks into the background and its first process exits 0 before listening;
    # control: a command failing with another status gets no such hint.
    args = ("exec", "--", PY, "-c", f"import sys; sys.exit({code})")
    with sdready_run(notify_socket, *args, log=log) as run:
        assert run.wait() == code
        failed = run.statuses()[-1]
        assert f"exited with status {code} before listening" in failed
        assert (texts.EXEC_DAEMONIZED in failed) is (code == 0)
        assert len(failed) <= texts.STATUS_BUDGET
        assert run.ready_messages() == []


@pytest.mark.parametrize("expect", [True, False])
def test_a_timeout_with_expect_says_what_was_expected(
    notify_socket: NotifyRecorder, log: Path, expect: bool
) -> None:
    # The command listens, but not where --expect says: "no listening socket seen" would be
    # untrue (control: without --expect nothing listens, and that text stands).
    server = [PY, "-m", "http.server", "--bind", "127.0.0.1", "0"]
    command = server if expect else list(SLEEPER)
    options = ["--expect", "127.0.0.1:9"] if expect else []
    args = ("exec", "--ready-timeout", "1", *options, "--", *command)
    with sdready_run(notify_socket, *args, log=log) as run:
        ready = run.wait_for("READY=1", 20)
        text = texts.TIMEOUT_WARN_EXPECTED if expect else texts.TIMEOUT_WARN
        assert ready["STATUS"] == text.format(timeout=1, pid=run.child_pid())


def test_command_killed_by_a_signal_before_listening(
    notify_socket: NotifyRecorder, log: Path
) -> None:
    args = ("exec", "--", "/bin/sh", "-c", "kill -KILL $$")
    with sdready_run(notify_socket, *args, log=log) as run:
        assert run.wait() == -signal.SIGKILL  # sdready ends itself the same way
        assert "killed by SIGKILL before listening" in run.statuses()[-1]
        assert run.ready_messages() == []


@pytest.mark.parametrize("code", [0, 1, 42])
def test_exit_status_is_the_commands(notify_socket: NotifyRecorder, log: Path, code: int) -> None:
    with sdready_run(notify_socket, "exec", "--", "/bin/sh", "-c", f"exit {code}", log=log) as run:
        assert run.wait() == code


def test_command_not_found_and_not_executable(
    notify_socket: NotifyRecorder, tmp_path: Path
) -> None:
    missing = subprocess.run(
        [*SDREADY, "exec", "--", "no-such-command-sdready"],
        env=notify_socket.env,
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert missing.returncode == 127
    assert b"command not found" in missing.stderr
    plain = tmp_path / "plain.txt"
    plain.write_text("not a program")
    denied = subprocess.run(
        [*SDREADY, "exec", "--", str(plain)], capture_output=True, check=False, timeout=30
    )
    assert denied.returncode == 126


@pytest.mark.parametrize(
    "args",
    [
        ["exec"],
        ["exec", "--"],
        ["exec", "--ready-timeout", "0", "--", "true"],
        ["exec", "--on-timeout", "maybe", "--", "true"],
        ["exec", "--expect", "nowhere", "--", "true"],
    ],
)
def test_exec_usage_errors_exit_2(args: list[str]) -> None:
    result = subprocess.run([*SDREADY, *args], capture_output=True, check=False, timeout=30)
    assert result.returncode == 2, result.stderr
    assert b"usage: sdready" in result.stderr


# -- signals -------------------------------------------------------------------------------------

RECORDING_CHILD = """
import os, signal, socket, sys, time
names = {signal.SIGHUP: "HUP", signal.SIGUSR1: "USR1", signal.SIGUSR2: "USR2",
         signal.SIGINT: "INT", signal.SIGTERM: "TERM", signal.SIGQUIT: "QUIT"}
got = []
def record(signum, frame):
    got.append(names[signum])
    print("child got", names[signum], flush=True)
    if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        sys.exit(7)
for signum in names:
    signal.signal(signum, record)
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
while True:
    time.sleep(0.05)
"""


def wait_output(run: Run, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in run.output():
        assert time.monotonic() < deadline, f"{text!r} not in output:\n{run.output()}"
        time.sleep(0.01)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT])
def test_signals_are_forwarded_and_stop_sends_stopping(
    notify_socket: NotifyRecorder, log: Path, tmp_path: Path, stop: signal.Signals
) -> None:
    child = script(tmp_path, RECORDING_CHILD)
    with sdready_run(notify_socket, "exec", "--", PY, child, log=log) as run:
        run.wait_for("READY=1", 20)
        for signum in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            run.signal(signum)
            wait_output(run, f"child got {signum.name[3:]}")
        assert not [m for m in run.messages() if "STOPPING" in m]  # not a stop request
        run.signal(stop)
        assert run.wait() == 7  # the command's own exit status
        wait_output(run, f"child got {stop.name[3:]}")
        stopping = run.wait_for("STOPPING=1", 2)
        assert stopping["STATUS"] == texts.STOPPING


def test_stop_before_ready_abandons_the_wait(notify_socket: NotifyRecorder, log: Path) -> None:
    with sdready_run(notify_socket, "exec", "--", *SLEEPER, log=log) as run:
        run.wait_for("STATUS", 20)
        run.child_pid()
        run.signal(signal.SIGTERM)
        assert run.wait() == -signal.SIGTERM
        run.wait_for("STOPPING=1", 2)
        assert run.ready_messages() == []


def test_killed_by_sigterm_looks_like_sigterm_to_a_shell(
    notify_socket: NotifyRecorder, log: Path
) -> None:
    # The command does not handle SIGTERM (like node): sdready dies of SIGTERM too, which
    # systemd counts as a clean stop and a shell reports as 128+15.
    command = " ".join([*SDREADY, "exec", "--", *HTTP_SERVER]) + "; echo status=$?"
    shell = subprocess.Popen(
        ["/bin/sh", "-c", command],
        env=notify_socket.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        ready = notify_socket.wait_for("READY=1", 20)
        assert ready.pid is not None
        os.kill(ready.pid, signal.SIGTERM)
        out, _ = shell.communicate(timeout=20)
        assert out.strip().splitlines()[-1] == "status=143"
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()


# -- watchdog ------------------------------------------------------------------------------------


def test_watchdog_pings_while_the_command_runs(notify_socket: NotifyRecorder, log: Path) -> None:
    env = {"WATCHDOG_USEC": "200000"}
    with sdready_run(
        notify_socket, "exec", "--watchdog", "--", *HTTP_SERVER, log=log, env=env
    ) as run:
        run.wait_for("READY=1", 20)
        began = time.monotonic()
        while len([m for m in run.messages() if m.text == "WATCHDOG=1"]) < 4:
            assert time.monotonic() - began < 10, run.messages()
            time.sleep(0.05)
        run.signal(signal.SIGTERM)
        run.wait()
        notify_socket.barrier()  # every ping sent before the exit is recorded
        count = len([m for m in run.messages() if m.text == "WATCHDOG=1"])
        time.sleep(0.3)
        notify_socket.barrier()
        assert len([m for m in run.messages() if m.text == "WATCHDOG=1"]) == count


def test_unfed_watchdog_is_warned_about(notify_socket: NotifyRecorder, log: Path) -> None:
    env = {"WATCHDOG_USEC": "200000"}
    with sdready_run(notify_socket, "exec", "--", *HTTP_SERVER, log=log, env=env) as run:
        run.wait_for("READY=1", 20)
        time.sleep(0.3)
        notify_socket.barrier()  # every ping sent so far is recorded
        assert not [m for m in run.messages() if m.text == "WATCHDOG=1"]
        assert "WatchdogSec= is set but nobody feeds it" in run.output()


def test_without_a_notify_socket_exec_still_supervises(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    result = subprocess.run(
        [*SDREADY, "exec", "--", "/bin/sh", "-c", "exit 5"],
        env=env,
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 5
