"""In an OCI container (podman, runc): READY=1 in a datagram of its own, and one WARNING.

conmon forwards a datagram containing ``READY=1`` as ``READY=1`` and drops the rest; runc
passes on only a datagram that *begins* with ``READY=``. The READY of a process that took
over the unit (gunicorn's USR2 master) begins with ``MAINPID=``: on a host that is right
(one atomic message), in a container runc drops it. The real podman run is in
tests/plugins/test_podman_systemd.py.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from sdready import Notifier, Readiness, ReadyOptions, texts
from sdready._env import container, oci_container
from sdready.testing import NotifyMessage, NotifyRecorder


def runc_passes(messages: list[NotifyMessage]) -> bool:
    """runc's notify proxy (``notify_socket.go``): only a datagram that begins with READY=."""
    return any(m.raw.startswith(b"READY=") for m in messages)


@pytest.fixture
def in_podman(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("container", "podman")


@pytest.fixture
def on_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("container", raising=False)
    monkeypatch.setattr("sdready._env.CONTAINERENV", str(tmp_path / "absent"))


def test_container_detection(tmp_path: Path) -> None:
    marker = tmp_path / ".containerenv"
    absent = str(tmp_path / "absent")
    assert container({}, absent) is None
    assert container({"container": "systemd-nspawn"}, absent) == "systemd-nspawn"
    assert oci_container({"container": "systemd-nspawn"}, absent) is None  # nspawn: no proxy
    assert oci_container({"container": "podman"}, absent) == "podman"
    marker.touch()  # podman with --rootfs sets no $container, but writes this file
    assert container({}, str(marker)) == "podman"
    assert oci_container({}, str(marker)) == "podman"
    assert oci_container({"container": "oci"}, str(marker)) == "oci"


@pytest.mark.usefixtures("in_podman")
def test_ready_goes_first_and_alone_in_a_container(notify_socket: NotifyRecorder) -> None:
    notifier = Notifier()
    assert notifier.container == "podman"
    assert notifier.send({"MAINPID": os.getpid(), "READY": 1, "STATUS": "Ready: up"})
    assert notifier.ready("Ready again")
    assert notifier.send("READY=1")  # already alone: one datagram
    notify_socket.barrier()
    assert [m.raw for m in notify_socket.messages] == [
        b"READY=1",
        f"MAINPID={os.getpid()}\nSTATUS=Ready: up".encode(),
        b"READY=1",
        b"STATUS=Ready again",
        b"READY=1",
        b"BARRIER=1",
    ]
    assert notify_socket.statuses == ["Ready: up", "Ready again"]  # nothing lost on a host


@pytest.mark.usefixtures("in_podman")
def test_engine_ready_passes_runc_and_warns_once(
    notify_socket: NotifyRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sdready")
    for _ in range(2):  # two engines in one process (two apps): one WARNING
        readiness = Readiness(ReadyOptions(notifier=Notifier()))
        readiness.took_over(os.getppid())
        readiness.starting()
        assert readiness.ready("Ready: 1 worker")
    notify_socket.barrier()
    assert runc_passes(notify_socket.messages)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [texts.CONTAINER_PROXY % "podman"]
    for dropped in ("STATUS", "STOPPING", "EXTEND_TIMEOUT_USEC", "FDSTORE", "progress", "fd store"):
        assert dropped in warnings[0]


@pytest.mark.usefixtures("on_host")
def test_control_on_a_host_ready_is_one_datagram_runc_would_drop(
    notify_socket: NotifyRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    # The same engine outside a container: one atomic datagram that begins with MAINPID=,
    # which runc's proxy would drop (the test above can fail), and no WARNING.
    caplog.set_level(logging.WARNING, logger="sdready")
    readiness = Readiness(ReadyOptions(notifier=Notifier()))
    assert readiness.notifier.container is None
    readiness.took_over(os.getppid())
    readiness.starting()
    assert readiness.ready("Ready: 1 worker")
    notify_socket.barrier()
    assert not runc_passes(notify_socket.messages)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.usefixtures("in_podman")
def test_state_change_after_ready_keeps_its_order(notify_socket: NotifyRecorder) -> None:
    notifier = Notifier()
    notifier.send({"READY": 1, "STATUS": "Ready"})
    notifier.stopping("Stopping")
    notify_socket.barrier()
    assert [m.raw for m in notify_socket.messages][:3] == [
        b"READY=1",
        b"STATUS=Ready",
        b"STOPPING=1\nSTATUS=Stopping",
    ]
