"""sdready.testing: the recorder and the pytest plugin our users rely on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
from sdready import Notifier
from sdready.testing import NotifyRecorder, RecorderTimeout

pytest_plugins = ["pytester"]


def test_context_manager_sets_and_restores_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/previous")
    with NotifyRecorder() as recorder:
        assert os.environ["NOTIFY_SOCKET"] == recorder.address
        path = recorder.address
        assert os.path.exists(path)
    assert os.environ["NOTIFY_SOCKET"] == "/previous"
    assert not os.path.exists(path)  # no socket file left behind
    monkeypatch.delenv("NOTIFY_SOCKET")
    with NotifyRecorder():
        pass
    assert "NOTIFY_SOCKET" not in os.environ


def test_records_messages_from_a_child_process() -> None:
    with NotifyRecorder() as recorder:
        child = subprocess.run(
            [sys.executable, "-c", "import sdready; sdready.ready('from child')"],
            env=recorder.env,
            check=True,
        )
        message = recorder.wait_for("READY=1", 5)
        assert child.returncode == 0
        assert message["STATUS"] == "from child"
        assert message.pid is not None and message.pid != os.getpid()
        assert message.uid == os.getuid()


def test_wait_for_forms_and_since(notify_socket: NotifyRecorder) -> None:
    notifier = Notifier()
    notifier.status("one")
    notifier.status("two")
    assert notify_socket.wait_for("STATUS", 2)["STATUS"] == "one"
    assert notify_socket.wait_for("STATUS=two", 2)["STATUS"] == "two"
    assert notify_socket.wait_for(lambda m: m.get("STATUS") == "two", 2).text == "STATUS=two"
    assert notify_socket.wait_for("STATUS", 2, since=1)["STATUS"] == "two"
    assert notify_socket.statuses == ["one", "two"]
    assert notify_socket.values("READY") == []
    assert len(notify_socket) == 2 and [m["STATUS"] for m in notify_socket] == ["one", "two"]


def test_timeout_error_lists_what_arrived(notify_socket: NotifyRecorder) -> None:
    Notifier().status("only this")
    notify_socket.wait_for_count(1)
    with pytest.raises(RecorderTimeout, match="READY=1") as info:
        notify_socket.wait_for("READY=1", timeout=0.05)
    assert "STATUS=only this" in str(info.value)
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, AssertionError)


def test_oversized_datagrams_are_dropped_like_systemd(notify_socket: NotifyRecorder) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as raw:
        raw.sendto(b"STATUS=" + b"x" * 5000, notify_socket.address)
        raw.sendto(b"STATUS=small", notify_socket.address)
    notify_socket.wait_for("STATUS=small", 2)
    assert notify_socket.dropped == [5007]
    assert len(notify_socket.messages) == 1


def test_barrier_is_answered(notify_socket: NotifyRecorder) -> None:
    assert Notifier().barrier(2)
    assert notify_socket.wait_for("BARRIER=1", 2).fds == ()


def test_pause_lets_the_kernel_queue_fill(notify_socket: NotifyRecorder) -> None:
    notify_socket.pause()
    sent = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as raw:
        raw.setblocking(False)
        for index in range(5000):
            try:
                raw.sendto(f"STATUS={index}".encode(), notify_socket.address)
            except BlockingIOError:
                break
            sent += 1
    assert 0 < sent < 5000
    notify_socket.resume()
    assert len(notify_socket.wait_for_count(sent, 5)) == sent


def test_clear_forgets_messages(notify_socket: NotifyRecorder) -> None:
    Notifier().status("x")
    notify_socket.wait_for_count(1)
    notify_socket.clear()
    assert notify_socket.messages == []


def test_path_and_abstract_recorders(tmp_path: object) -> None:
    path = f"{tmp_path}/given.sock"
    with NotifyRecorder(path) as recorder:
        assert recorder.address == path
        Notifier().ready()
        recorder.wait_for("READY", 2)
    assert not os.path.exists(path)
    with NotifyRecorder(abstract=True, set_environment=False) as recorder:
        assert "NOTIFY_SOCKET" not in os.environ or os.environ["NOTIFY_SOCKET"] != recorder.address
        Notifier(recorder.address).ready()
        recorder.wait_for("READY", 2)


def test_pytest_plugin_provides_the_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        textwrap.dedent(
            """
            import os
            import sdready

            def test_it(notify_socket):
                assert os.environ["NOTIFY_SOCKET"] == notify_socket.address
                sdready.ready("hello")
                assert notify_socket.wait_for("READY=1", 2)["STATUS"] == "hello"
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
