"""pytest plugin (entry point ``pytest11``): the ``notify_socket`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._recorder import NotifyRecorder


@pytest.fixture
def notify_socket() -> Iterator[NotifyRecorder]:
    """A started :class:`~sdready.testing.NotifyRecorder` with ``NOTIFY_SOCKET`` set for the test.

    Child processes started with the default environment report to it too.
    """
    with NotifyRecorder() as recorder:
        yield recorder
