"""``sdready notify``, ``status`` and ``wait-listen``, against a real notify socket.

Most tests call ``main()`` in this process (fast); a few run the command as a process, as
scripts do. ``sdready exec`` has its own files.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli_support import SDREADY, sdready_console_script
from sdready._commands._cli import _duration, main
from sdready.testing import NotifyRecorder

# -- notify ------------------------------------------------------------------------------------


def test_notify_ready_is_sent_and_confirmed(
    notify_socket: NotifyRecorder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["notify", "--ready", "--status", "up and running"]) == 0
    message = notify_socket.wait_for("READY=1", 2)
    assert message["STATUS"] == "up and running"
    assert message.pid == os.getpid()
    # The barrier follows, so the command returned only after the manager processed READY.
    assert notify_socket.messages[-1].text == "BARRIER=1"
    assert capsys.readouterr().err == ""


def test_notify_fields_in_one_message(notify_socket: NotifyRecorder) -> None:
    assert main(["notify", "--stopping", "X_PHASE=drain", "ERRNO=5"]) == 0
    message = notify_socket.wait_for("STOPPING=1", 2)
    assert dict(message.fields) == {"STOPPING": "1", "X_PHASE": "drain", "ERRNO": "5"}


def test_notify_reloading_carries_monotonic_usec(notify_socket: NotifyRecorder) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert main(["notify", "--reloading"]) == 0
    message = notify_socket.wait_for("RELOADING=1", 2)
    assert int(message["MONOTONIC_USEC"]) >= before


def test_notify_no_block_skips_the_barrier(notify_socket: NotifyRecorder) -> None:
    assert main(["notify", "--no-block", "--status", "x"]) == 0
    notify_socket.wait_for("STATUS=x", 2)
    messages = len(notify_socket)
    notify_socket.barrier()  # our own BARRIER follows everything the command sent
    assert "BARRIER" not in [name for m in notify_socket.messages[:messages] for name in m.fields]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may send another pid's credentials")
def test_notify_pid_parent_sends_on_behalf_of_the_caller(notify_socket: NotifyRecorder) -> None:
    result = subprocess.run(
        [*SDREADY, "notify", "--ready", "--pid", "parent"],
        check=False,
        env=notify_socket.env,
        timeout=30,
    )
    assert result.returncode == 0
    # The command's parent is this test process: the manager sees the message as ours.
    assert notify_socket.wait_for("READY=1", 2).pid == os.getpid()


def test_notify_explicit_pid(notify_socket: NotifyRecorder) -> None:
    assert main(["notify", "--status", "s", "--pid", "self"]) == 0
    assert notify_socket.wait_for("STATUS=s", 2).pid == os.getpid()


def test_notify_without_a_socket_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert main(["notify", "--ready"]) == 1
    assert "NOTIFY_SOCKET is not set" in capsys.readouterr().err


def test_notify_quiet_is_silent(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert main(["notify", "--quiet", "--ready"]) == 1
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    "argv",
    [
        ["notify"],  # nothing to send
        ["notify", "foo=1"],  # not a field name (systemd sends unknown well-formed ones on)
        ["notify", "READY"],  # not FIELD=VALUE
        ["notify", "--pid", "nobody", "--ready"],
        ["notify", "--timeout", "-1", "--ready"],
        ["notify", "--bogus"],
    ],
)
def test_notify_usage_errors_exit_2(
    argv: list[str], notify_socket: NotifyRecorder, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    assert code == 2
    assert "usage: sdready" in capsys.readouterr().err
    notify_socket.barrier()
    assert [m.text for m in notify_socket.messages] == ["BARRIER=1"]  # the barrier's own only


def test_notify_send_failure_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert main(["notify", "--ready"]) == 3
    assert "nobody-listens.sock" in capsys.readouterr().err


def test_notify_invalid_address_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/path")
    assert main(["notify", "--ready"]) == 3


def test_notify_unconfirmed_barrier_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    with NotifyRecorder(answer_barrier=False) as recorder:
        assert main(["notify", "--ready", "--timeout", "0.2"]) == 3
        recorder.wait_for("READY=1", 2)  # sent, but never confirmed
    assert "did not confirm" in capsys.readouterr().err


def test_notify_as_a_process_and_module(notify_socket: NotifyRecorder) -> None:
    result = subprocess.run(
        [*SDREADY, "notify", "--status", "from a script"],
        check=False,
        env=notify_socket.env,
        timeout=30,
    )
    assert result.returncode == 0
    message = notify_socket.wait_for("STATUS=from a script", 2)
    assert message.pid not in (None, os.getpid())  # sent by the command itself


def test_console_script_is_installed(notify_socket: NotifyRecorder) -> None:
    script = sdready_console_script()
    if script is None:
        pytest.skip("no sdready console script next to this interpreter (not pip-installed)")
    result = subprocess.run(
        [script, "notify", "--status", "script"], check=False, env=notify_socket.env, timeout=30
    )
    assert result.returncode == 0
    assert notify_socket.wait_for("STATUS=script", 2)


# -- status ------------------------------------------------------------------------------------


def test_status_reports_the_environment(
    notify_socket: NotifyRecorder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(os.getppid()))
    monkeypatch.setenv("LISTEN_FDS", "2")
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    assert main(["status", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["notify_socket"] == notify_socket.address
    assert report["notify_socket_valid"] is True
    assert report["watchdog_sec"] == 4.0
    assert report["listen_fds"] == 2 and report["listen_fds_for_this_process"] == 2
    assert report["main_pid"] == os.getppid()
    assert report["exec_discovery"].split()[0] in ("sockdiag", "pidfd", "proc")
    hints = " ".join(report["hints"])
    assert "NotifyAccess=all" in hints and "every 2 s" in hints


def test_status_text_output(
    notify_socket: NotifyRecorder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert any(
        line.split() == ["notify_socket", notify_socket.address] for line in out.splitlines()
    )
    assert "exec_discovery" in out


def test_status_without_a_socket_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert main(["status", "--json"]) == 1
    assert "not set" in json.loads(capsys.readouterr().out)["notify_socket_problem"]


def test_status_flags_a_missing_socket_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert main(["status", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["notify_socket_problem"] == (
        "the socket file does not exist"
    )


# -- wait-listen -------------------------------------------------------------------------------


@pytest.fixture
def unix_path(tmp_path: Path) -> Iterator[str]:
    # Short: sun_path holds 108 bytes and tmp_path can be long.
    path = f"/tmp/sdready-cli-{uuid.uuid4().hex[:10]}.sock"
    yield path
    if os.path.exists(path):
        os.unlink(path)


def test_wait_listen_finds_a_namespace_listener(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert main(["wait-listen", "--expect", f"127.0.0.1:{port}", "--timeout", "5"]) == 0
    assert f"listening on 127.0.0.1:{port}" in capsys.readouterr().err


def test_wait_listen_ignores_a_socket_that_does_not_listen(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        began = time.monotonic()
        assert main(["wait-listen", "--expect", str(port), "--timeout", "0.3"]) == 1
        assert time.monotonic() - began >= 0.3
    assert f"expected but not found: port {port}" in capsys.readouterr().err


def test_wait_listen_unix_and_late_listener(unix_path: str) -> None:
    code = (
        f"import socket, time; s = socket.socket(socket.AF_UNIX); s.bind({unix_path!r}); "
        "time.sleep(0.3); s.listen(); time.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        began = time.monotonic()
        result = subprocess.run(
            [*SDREADY, "wait-listen", "--pid", str(child.pid), "--expect", unix_path,
             "--timeout", "20"],
            check=False,
            timeout=30,
        )  # fmt: skip
        assert result.returncode == 0
        assert time.monotonic() - began >= 0.3
        assert main(["wait-listen", "--expect", unix_path, "--timeout", "1"]) == 0
    finally:
        child.kill()
        child.wait()


def test_wait_listen_pid_takes_its_first_listener() -> None:
    code = (
        "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
        "time.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        assert main(["wait-listen", "--pid", str(child.pid), "--timeout", "20"]) == 0
    finally:
        child.kill()
        child.wait()


def test_wait_listen_gives_up_when_the_process_exits(capsys: pytest.CaptureFixture[str]) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    try:
        began = time.monotonic()
        assert main(["wait-listen", "--pid", str(child.pid), "--timeout", "20"]) == 1
        assert time.monotonic() - began < 10
    finally:
        child.kill()
        child.wait()
    assert "exited before listening" in capsys.readouterr().err


def test_wait_listen_probe_http() -> None:
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    server.RequestHandlerClass.log_message = lambda *args: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        argv = ["wait-listen", "--expect", f"*:{port}", "--probe", "http:/", "--timeout", "5"]
        assert main(argv) == 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize(
    "argv",
    [
        ["wait-listen"],  # neither --expect nor --pid
        ["wait-listen", "--expect", "example.com:80"],  # names are not resolved
        ["wait-listen", "--expect", "70000"],
        ["wait-listen", "--expect", "8000", "--probe", "ftp:/"],
        ["wait-listen", "--expect", "8000", "--timeout", "soon"],
    ],
)
def test_wait_listen_usage_errors_exit_2(argv: list[str]) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == 2


def test_wait_listen_missing_pid_exits_1() -> None:
    assert main(["wait-listen", "--pid", "999999999", "--timeout", "1"]) == 1


# -- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("1.5s", 1.5), ("500ms", 0.5), ("2min", 120.0), ("1h", 3600.0), (" 3 s", 3.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert _duration(text) == pytest.approx(seconds)


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("notify", "exec", "status", "wait-listen"):
        assert command in out


def test_import_sdready_does_not_load_the_cli() -> None:
    code = (
        "import sys, sdready; "
        "print('sdready._commands._cli' in sys.modules, 'argparse' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=False, text=True, timeout=30
    )
    assert out.stdout.split() == ["False", "False"]
