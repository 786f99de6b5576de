"""Test helpers for services that use sd_notify: a real notify socket that records messages.

``NotifyRecorder`` stands in for systemd; the pytest plugin (registered through the
``pytest11`` entry point) gives every test suite a ``notify_socket`` fixture::

    def test_ready(notify_socket):
        start_my_service()  # inherits NOTIFY_SOCKET
        assert notify_socket.wait_for("READY=1", timeout=5)
"""

from __future__ import annotations

from ._recorder import NotifyMessage, NotifyRecorder, RecorderTimeout

__all__ = ["NotifyMessage", "NotifyRecorder", "RecorderTimeout"]
