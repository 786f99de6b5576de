"""Shared fixtures. ``notify_socket`` comes from sdready's own pytest plugin (pytest11)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from _state import ProcessState
from _systemd import UserManager, user_manager, user_manager_254  # noqa: F401  (session fixtures)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that starts a private manager is a real-systemd test, marked or not: `-m "not
    # systemd"` (the sdist check) leaves it to `make test`.
    for item in items:
        if {"user_manager", "user_manager_254"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.systemd)


@pytest.fixture(autouse=True)
def _sdready_logging(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    # Every test sees sdready's DEBUG records, so tests can assert what was (not) logged.
    caplog.set_level(logging.DEBUG, logger="sdready")
    yield


@pytest.fixture(autouse=True)
def process_state() -> Iterator[ProcessState]:
    """sdready's process-wide globals as a new process has them, restored after the test
    (tests/_state.py lists them); ask for it by name to set one (``refuse_netlink()``)."""
    state = ProcessState()
    state.start()
    yield state
    state.restore()


@pytest.fixture
def systemd(user_manager: UserManager) -> Iterator[UserManager]:  # noqa: F811
    """The session's private manager; units the test writes or starts are removed after it."""
    with user_manager.scoped() as manager:
        yield manager


@pytest.fixture(params=["user_manager", "user_manager_254"])
def manager(request: pytest.FixtureRequest) -> UserManager:
    """Each private manager in turn: the host's systemd 252, then the 254 tree (whose
    ``$FDSTORE`` and ``FileDescriptorStorePreserve=`` a test may need to see both ways)."""
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]
