"""The notify sender against a real datagram socket (NotifyRecorder)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import weakref

import pytest
import sdready
from sdready import Notifier, NotifyError
from sdready._notify._notifier import NOTIFY_BUFFER_MAX, NotifyAddress
from sdready.testing import NotifyRecorder


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "sdready" and r.levelno >= logging.WARNING
    ]


# -- disabled --------------------------------------------------------------------------------


def test_without_notify_socket_every_call_is_a_silent_noop(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.status("x") is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False
    assert notifier.barrier(0.1) is False
    assert sdready.ready() is False
    assert [r for r in caplog.records if r.levelno > logging.DEBUG] == []


# -- the protocol ----------------------------------------------------------------------------


def test_each_method_sends_its_fields(notify_socket: NotifyRecorder) -> None:
    notifier = Notifier()
    assert notifier.enabled
    assert notifier.ready("up")
    assert notifier.status("busy")
    assert notifier.stopping("bye")
    assert notifier.watchdog()
    assert notifier.watchdog_trigger()
    assert notifier.extend_timeout(2.5)
    assert notifier.errno(5)
    assert notifier.mainpid(1234)
    assert notifier.barrier(2)
    texts = [m.text for m in notify_socket.messages]
    assert texts == [
        "READY=1\nSTATUS=up",
        "STATUS=busy",
        "STOPPING=1\nSTATUS=bye",
        "WATCHDOG=1",
        "WATCHDOG=trigger",
        "EXTEND_TIMEOUT_USEC=2500000",
        "ERRNO=5",
        "MAINPID=1234",
        "BARRIER=1",
    ]
    assert {m.pid for m in notify_socket.messages} == {os.getpid()}


def test_reloading_carries_monotonic_usec(notify_socket: NotifyRecorder) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert Notifier().reloading("Reloading config")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    message = notify_socket.wait_for("RELOADING=1", 2)
    assert before <= int(message["MONOTONIC_USEC"]) <= after
    assert message["STATUS"] == "Reloading config"


def test_send_accepts_mappings_and_preformatted_strings(notify_socket: NotifyRecorder) -> None:
    notifier = Notifier()
    assert notifier.send({"READY": True, "X_COUNT": 3, "X_FLAG": False, "STATUS": "a=b"})
    assert notifier.send("STATUS=one\nX_APP=two\n")
    first, second = notify_socket.wait_for_count(2)
    assert first.text == "READY=1\nX_COUNT=3\nX_FLAG=0\nSTATUS=a=b"
    assert second.fields == {"STATUS": "one", "X_APP": "two"}


def test_every_documented_field_is_accepted(notify_socket: NotifyRecorder) -> None:
    notifier = Notifier()
    fields = {
        "NOTIFYACCESS": "all",
        "BUSERROR": "org.example.Error",
        "VARLINKERROR": "org.example.Error",
        "EXIT_STATUS": 3,
        "MAINPIDFDID": 42,
        "MAINPIDFD": 1,
        "RESTART_RESET": 1,
        "WATCHDOG_USEC": 5_000_000,
        "FDSTOREREMOVE": 1,
        "FDNAME": "web",
        "X_SYSTEMD_CUSTOM": "ok",
    }
    for name, value in fields.items():
        assert notifier.send({name: value}), name
    messages = notify_socket.wait_for_count(len(fields))
    assert [m.text.split("=", 1)[0] for m in messages] == list(fields)


def test_text_is_sent_as_utf8(notify_socket: NotifyRecorder) -> None:
    Notifier().status("Grüße — 準備完了")
    message = notify_socket.wait_for("STATUS", 2)
    assert message.raw == "STATUS=Grüße — 準備完了".encode()


def test_overlong_status_is_truncated_on_a_character_boundary(
    notify_socket: NotifyRecorder,
) -> None:
    assert Notifier().ready("é" * 3000)  # 6000 bytes of UTF-8
    message = notify_socket.wait_for("READY=1", 2)
    assert len(message.raw) <= NOTIFY_BUFFER_MAX
    assert len(message.raw) >= NOTIFY_BUFFER_MAX - 1  # cut at most half a character short
    assert set(message["STATUS"]) == {"é"}
    assert notify_socket.dropped == []


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda n: n.status("two\nlines"), "newline"),
        (lambda n: n.send({"STATUS": "nul\0"}), "newline or NUL"),
        (lambda n: n.send("STATUS=a\0b"), "NUL"),
        (lambda n: n.send({"ready": 1}), "malformed sd_notify field name"),
        (lambda n: n.send({"X_lower": 1}), "malformed sd_notify field name"),
        (lambda n: n.send({"1READY": 1}), "malformed sd_notify field name"),
        (lambda n: n.send("=1"), "malformed sd_notify field name"),
        (lambda n: n.send("READY"), "NAME=VALUE"),
        (lambda n: n.send({}), "empty"),
        (lambda n: n.send({"STATUS": 1.5}), "str, int or bool"),
        (lambda n: n.send({"FDSTORE": 1, "FDNAME": "a:b"}), "FDNAME"),
        (lambda n: n.send({"FDSTORE": 1, "FDNAME": "x" * 256}), "FDNAME"),
        (lambda n: n.send({"FDSTORE": 1, "FDNAME": "naïve"}), "FDNAME"),
        (lambda n: n.send({"FDSTORE": 1, "FDNAME": "tab\there"}), "FDNAME"),
        (lambda n: n.send({"X_BIG": "x" * 5000}), "only STATUS can be shortened"),
        (lambda n: n.send({"FDSTORE": 1}, fds=[0] * 254), "at most 253 file"),
        (lambda n: n.send({"FDSTORE": 1}, fds=[-1]), "file descriptor"),
        (lambda n: n.extend_timeout(0), "positive"),
        (lambda n: n.errno(-1), "non-negative"),
        (lambda n: n.mainpid(0), "positive pid"),
    ],
)
def test_programming_errors_raise_value_error(
    notify_socket: NotifyRecorder, call: object, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        call(Notifier())  # type: ignore[operator]
    assert notify_socket.messages == []


def test_a_well_formed_unknown_field_is_sent_and_logged_once_at_debug(
    notify_socket: NotifyRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # READDY was a ValueError before: systemd ignores names it does not know, so a field
    # newer than sdready must get through. The DEBUG line is what is left to spot a typo.
    caplog.set_level(logging.DEBUG, logger="sdready")
    notifier = Notifier()
    assert notifier.send({"READDY": 1})
    assert notifier.send({"READDY": 1, "STATUS": "again"})
    assert Notifier().send("X_=1")
    messages = notify_socket.wait_for_count(3)
    assert [m.text for m in messages] == ["READDY=1", "READDY=1\nSTATUS=again", "X_=1"]
    logged = [r.getMessage() for r in caplog.records if "does not know" in r.getMessage()]
    assert len(logged) == 2
    assert "READDY" in logged[0]
    assert "X_" in logged[1]
    assert warnings_of(caplog) == []


def test_fdname_limit_is_inclusive(notify_socket: NotifyRecorder) -> None:
    assert Notifier().send({"FDSTOREREMOVE": 1, "FDNAME": "x" * 255})


# -- file descriptors, credentials, barrier ------------------------------------------------


def test_fdstore_passes_descriptors(notify_socket: NotifyRecorder) -> None:
    read_end, write_end = os.pipe()
    try:
        with socket.socket() as listener:
            assert Notifier().send(
                {"FDSTORE": 1, "FDNAME": "pair", "FDPOLL": 0}, fds=[read_end, listener]
            )
            message = notify_socket.wait_for("FDSTORE=1", 2)
            assert message["FDNAME"] == "pair"
            assert len(message.fds) == 2
            assert os.fstat(message.fds[0]).st_ino == os.fstat(read_end).st_ino
            assert os.fstat(message.fds[1]).st_ino == os.fstat(listener.fileno()).st_ino
    finally:
        os.close(read_end)
        os.close(write_end)


def test_pid_sends_credentials_or_falls_back(notify_socket: NotifyRecorder) -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"]) as child:
        try:
            assert Notifier().send({"STATUS": "on behalf"}, pid=child.pid)
            message = notify_socket.wait_for("STATUS", 2)
            # With CAP_SYS_ADMIN the kernel vouches for the child; without, libsystemd's
            # fallback sends our own credentials rather than losing the message.
            assert message.pid in (child.pid, os.getpid())
        finally:
            child.kill()
    assert Notifier().send({"STATUS": "own"}, pid=os.getpid())
    assert notify_socket.wait_for("STATUS=own", 2).pid == os.getpid()


def test_barrier_waits_for_the_manager() -> None:
    with NotifyRecorder(answer_barrier=False) as recorder:
        notifier = Notifier()
        assert notifier.barrier(timeout=0.2) is False  # nobody closes the pipe
        assert recorder.wait_for("BARRIER=1", 2).fds  # the manager would hold it
    with NotifyRecorder():
        assert Notifier().barrier(timeout=2) is True


# -- addresses and environment faults ---------------------------------------------------------


def test_abstract_address(monkeypatch: pytest.MonkeyPatch) -> None:
    with NotifyRecorder(abstract=True) as recorder:
        assert recorder.address.startswith("@")
        assert Notifier().ready()
        recorder.wait_for("READY=1", 2)


@pytest.mark.parametrize(
    ("text", "family_name", "kind", "sockaddr"),
    [
        ("/run/systemd/notify", "AF_UNIX", socket.SOCK_DGRAM, "/run/systemd/notify"),
        ("@sd", "AF_UNIX", socket.SOCK_DGRAM, "\0sd"),
        ("vsock:2:1234", "AF_VSOCK", None, (2, 1234)),
        ("vsock-stream:3:9", "AF_VSOCK", socket.SOCK_STREAM, (3, 9)),
        ("vsock-dgram:2:9", "AF_VSOCK", socket.SOCK_DGRAM, (2, 9)),
        ("vsock-seqpacket:2:9", "AF_VSOCK", socket.SOCK_SEQPACKET, (2, 9)),
    ],
)
def test_address_forms(text: str, family_name: str, kind: int | None, sockaddr: object) -> None:
    address = NotifyAddress.parse(text)
    assert address.family == getattr(socket, family_name, -1)
    assert (address.type, address.sockaddr, address.text) == (kind, sockaddr, text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "relative/path",
        "@",
        "vsock:x:1",
        "vsock:1",
        "tcp:1:2",
        "vsock:1:99999999999",
        "vsock::9",
        "vsock:4294967295:9",  # no CID: libsystemd refuses them (they were accepted)
    ],
)
def test_invalid_addresses_warn_once_and_return_false(
    text: str, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(text)
    assert not notifier.enabled
    assert [notifier.status("x") for _ in range(3)] == [False, False, False]
    warnings = warnings_of(caplog)
    assert len(warnings) == 1
    assert repr(text) in warnings[0] or "empty" in warnings[0]
    with pytest.raises(NotifyError):
        Notifier(text, strict=True)


def test_missing_socket_warns_once(tmp_path: object, caplog: pytest.LogCaptureFixture) -> None:
    address = f"{tmp_path}/absent.sock"
    notifier = Notifier(address)
    assert notifier.enabled
    assert [notifier.ready() for _ in range(3)] == [False, False, False]
    warnings = warnings_of(caplog)
    assert len(warnings) == 1 and address in warnings[0]
    with pytest.raises(NotifyError, match=r"absent\.sock"):
        Notifier(address, strict=True).ready()


def test_connection_refused_when_nobody_reads(
    tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    path = f"{tmp_path}/stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(path)
    stale.close()  # the file stays: a manager that died
    assert Notifier(path).status("x") is False
    assert "refused" in warnings_of(caplog)[0]


def test_vsock_failure_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    # No hypervisor here: whatever the kernel says, the app only gets False and one warning.
    notifier = Notifier("vsock:2:1")
    assert notifier.enabled
    assert notifier.status("x") is False
    assert notifier.status("y") is False
    assert len(warnings_of(caplog)) == 1


def test_manager_restart_is_survived(tmp_path: object, caplog: pytest.LogCaptureFixture) -> None:
    path = f"{tmp_path}/notify.sock"
    notifier = Notifier(path)
    with NotifyRecorder(path, set_environment=False) as first:
        assert notifier.status("one")
        first.wait_for("STATUS=one", 2)
    assert notifier.status("while gone") is False
    with NotifyRecorder(path, set_environment=False) as second:  # a re-executed manager
        assert notifier.status("two")
        second.wait_for("STATUS=two", 2)


def test_unset_environment_hides_the_socket_from_children(notify_socket: NotifyRecorder) -> None:
    notifier = Notifier(unset_environment=True)
    assert "NOTIFY_SOCKET" not in os.environ
    assert notifier.ready()
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ.get('NOTIFY_SOCKET'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "None"
    notify_socket.wait_for("READY=1", 2)


def test_non_main_pid_logs_a_notifyaccess_hint_once(
    notify_socket: NotifyRecorder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(os.getpid() + 1))
    notifier = Notifier()
    notifier.status("a")
    notifier.status("b")
    hints = [r for r in caplog.records if "NotifyAccess=all" in r.getMessage()]
    assert len(hints) == 1 and hints[0].levelno == logging.INFO
    caplog.clear()
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(os.getpid()))
    Notifier().status("c")
    assert not [r for r in caplog.records if "NotifyAccess" in r.getMessage()]


def test_module_helpers_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with NotifyRecorder() as first:
        assert sdready.status("to first")
        first.wait_for("STATUS=to first", 2)
        with NotifyRecorder() as second:
            assert sdready.notify({"X_N": 1})
            assert sdready.stopping()
            assert sdready.reloading()
            assert sdready.watchdog()
            second.wait_for("WATCHDOG=1", 2)
        assert len(first.messages) == 1
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdready.ready() is False


# -- persistence and fork ----------------------------------------------------------------------


def test_one_persistent_socket(notify_socket: NotifyRecorder) -> None:
    def sockets() -> dict[str, str]:
        """``{"socket:[inode]": fd}``: a socket by its inode, so that one closed meanwhile
        by an earlier test's leftover (another thread, the garbage collector) is no noise."""
        found = {}
        for name in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{name}")
            except OSError:  # the directory's own fd, already closed
                continue
            if target.startswith("socket:"):
                found[target] = name
        return found

    before = sockets()
    notifier = Notifier()
    for index in range(20):
        assert notifier.status(str(index))
    opened = {target: fd for target, fd in sockets().items() if target not in before}
    assert len(opened) == 1
    ((target, fd),) = opened.items()
    assert os.get_inheritable(int(fd)) is False  # close-on-exec
    notifier.close()
    assert target not in sockets()


@pytest.mark.filterwarnings("ignore:This process.*is multi-threaded:DeprecationWarning")
def test_a_dropped_notifier_is_freed_at_once(notify_socket: NotifyRecorder) -> None:
    # Its finalizer closes the socket; a reference cycle (say, through its retry queue)
    # would leave that to the garbage collector, whenever it runs.
    notifier = Notifier()
    assert notifier.ready("up")
    assert notifier.status("serving")
    freed = weakref.ref(notifier)
    del notifier
    assert freed() is None


def test_forked_child_gets_its_own_socket(notify_socket: NotifyRecorder) -> None:
    notifier = Notifier()
    assert notifier.status("parent")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            code = 0 if notifier.status("child") else 1
            os.write(
                write_end,
                str(
                    notifier._delivery.transport.sock.fileno()
                    if notifier._delivery and notifier._delivery.transport.sock
                    else -1
                ).encode(),
            )
        finally:
            os._exit(code)
    os.close(write_end)
    child_fd = os.read(read_end, 32)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    message = notify_socket.wait_for("STATUS=child", 2)
    assert message.pid == pid
    assert child_fd != b"-1"
    assert notifier.status("parent again")
    assert notify_socket.wait_for("STATUS=parent again", 2).pid == os.getpid()


# -- full queues -------------------------------------------------------------------------------


def test_full_queue_drops_status_with_one_warning_and_fails_fast(
    notify_socket: NotifyRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    notify_socket.pause()
    notifier = Notifier()
    started = time.monotonic()
    results = [notifier.status(f"s{i}") for i in range(2000)]
    elapsed = time.monotonic() - started
    # The kernel queue holds a handful (net.unix.max_dgram_qlen); the rest fail fast
    # after a single bounded wait instead of each waiting (2,000 x 50 ms would be 100 s).
    assert 1 <= sum(results) <= 600
    assert elapsed < 20, elapsed
    assert len(warnings_of(caplog)) == 1
    assert "full" in warnings_of(caplog)[0]
    notify_socket.resume()
    notify_socket.wait_for_count(sum(results), 5)  # the manager caught up
    assert notifier.status("flows again")
    notify_socket.wait_for("STATUS=flows again", 5)


def test_state_changes_survive_a_full_queue_in_order(
    notify_socket: NotifyRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    notify_socket.pause()
    notifier = Notifier()
    for index in range(50):
        notifier.status(f"filler {index}")
    assert notifier.ready("R")  # queued for the background retry
    assert notifier.status("after ready")  # must not overtake READY
    assert notifier.stopping("S")
    assert notifier.flush(0.1) is False  # nothing can drain while paused
    notify_socket.resume()
    assert notifier.flush(10)
    notify_socket.wait_for("STOPPING=1", 5)
    texts = [m.text for m in notify_socket.messages if not m.text.startswith("STATUS=filler")]
    assert texts == ["READY=1\nSTATUS=R", "STATUS=after ready", "STOPPING=1\nSTATUS=S"]
    assert any("in order from a background thread" in w for w in warnings_of(caplog))


def test_state_change_gives_up_after_the_deadline(
    notify_socket: NotifyRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    notify_socket.pause()
    notifier = Notifier()
    notifier.RETRY_DEADLINE = 0.2  # type: ignore[misc]
    for index in range(30):
        notifier.status(f"filler {index}")
    assert notifier.ready()
    assert notifier.flush(5)
    assert any(
        r.levelno == logging.ERROR and "gave up delivering READY=1" in r.getMessage()
        for r in caplog.records
    )


def test_strict_raises_on_a_full_queue_but_still_queues_state(
    notify_socket: NotifyRecorder,
) -> None:
    notify_socket.pause()
    notifier = Notifier(strict=True)
    with pytest.raises(NotifyError, match="notify"):
        for index in range(50):
            notifier.status(f"filler {index}")
    assert notifier.ready()
    notify_socket.resume()
    assert notifier.flush(10)
    notify_socket.wait_for("READY=1", 2)
