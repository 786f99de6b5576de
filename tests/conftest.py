"""Shared fixtures. ``notify_socket`` comes from sdready's own pytest plugin (pytest11)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from _systemd import user_manager, user_manager_254  # noqa: F401  (session fixtures)


@pytest.fixture(autouse=True)
def _sdready_logging(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    # Every test sees sdready's DEBUG records, so tests can assert what was (not) logged.
    caplog.set_level(logging.DEBUG, logger="sdready")
    yield
