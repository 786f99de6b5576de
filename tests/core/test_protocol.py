"""The sd_notify wire format: field names, encoding, the field policy. No socket involved."""

from __future__ import annotations

import logging
import threading

import pytest
from sdready._notify import _notifier, _protocol
from sdready._notify._protocol import KNOWN_FIELDS, STATE_FIELDS, encode


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="sdready")
    return caplog


def unknown_field_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "sdready" and r.levelno == logging.DEBUG and "does not know" in r.getMessage()
    ]


def test_mapping_and_string_encode_alike() -> None:
    assert encode({"READY": True, "STATUS": "a=b", "X_N": 3}) == (
        b"READY=1\nSTATUS=a=b\nX_N=3",
        True,
    )
    assert encode("READY=1\nSTATUS=a=b\nX_N=3\n") == (b"READY=1\nSTATUS=a=b\nX_N=3", True)


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("MAINPIDFD", True),  # systemd 257: the main process as a pidfd, passed with the message
        ("RESTART_RESET", True),  # systemd 258: reset the restart counter
        ("MAINPID", True),
        ("READY", True),
        ("STATUS", False),
        ("WATCHDOG", False),
        ("MAINPIDFDID", False),  # accompanies MAINPID, which carries the state change
    ],
)
def test_known_fields_are_sent_silently(
    name: str, state: bool, debug_log: pytest.LogCaptureFixture
) -> None:
    assert name in KNOWN_FIELDS
    assert encode({name: 1}) == (f"{name}=1".encode(), state)
    assert unknown_field_lines(debug_log) == []


def test_every_state_field_is_known() -> None:
    assert STATE_FIELDS <= KNOWN_FIELDS


@pytest.mark.parametrize("name", ["READDY", "FUTURE_FIELD", "_PRIVATE", "A1_B2", "X_"])
def test_a_well_formed_unknown_name_is_sent_and_logged_once(
    name: str, debug_log: pytest.LogCaptureFixture
) -> None:
    assert encode({name: "v"}) == (f"{name}=v".encode(), False)
    assert encode(f"{name}=w\nSTATUS=x") == (f"{name}=w\nSTATUS=x".encode(), False)
    assert encode({name: 1, "READY": 1}) == (f"{name}=1\nREADY=1".encode(), True)
    (line,) = unknown_field_lines(debug_log)
    assert name in line
    assert [r.levelno for r in debug_log.records if r.levelno > logging.DEBUG] == []


def test_custom_x_fields_are_not_logged(debug_log: pytest.LogCaptureFixture) -> None:
    assert encode({"X_APP": 1, "X_APP_PHASE": "warm"}) == (b"X_APP=1\nX_APP_PHASE=warm", False)
    assert unknown_field_lines(debug_log) == []


def test_each_unknown_name_is_logged_once(debug_log: pytest.LogCaptureFixture) -> None:
    for _ in range(3):
        encode({"NEW_A": 1, "NEW_B": 2})
    first, second = unknown_field_lines(debug_log)
    assert "NEW_A" in first
    assert "NEW_B" in second


def test_threads_sending_a_new_name_at_once_log_it_once(
    debug_log: pytest.LogCaptureFixture,
) -> None:
    start = threading.Barrier(8)

    def send() -> None:
        start.wait()
        for _ in range(50):
            encode({"RACED_FIELD": 1})

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(unknown_field_lines(debug_log)) == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"ready": 1},  # systemd compares names case-sensitively: never a field
        {"Ready": 1},
        {"X_lower": 1},
        {"1READY": 1},
        {"": 1},
        {"A-B": 1},
        {"A B": 1},
        {"ÉTAT": 1},
        {5: 1},  # not a str at all
        "=1",
        "READY=1\nstatus=x",
    ],
)
def test_malformed_names_raise(fields: object, debug_log: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError, match="malformed sd_notify field name"):
        encode(fields)  # type: ignore[arg-type]
    assert unknown_field_lines(debug_log) == []


def test_values_are_still_checked_for_unknown_names() -> None:
    with pytest.raises(ValueError, match="newline or NUL"):
        encode({"FUTURE_FIELD": "a\nb"})
    with pytest.raises(ValueError, match="only STATUS can be shortened"):
        encode({"FUTURE_FIELD": "x" * 5000})


def test_the_notifier_module_still_exports_the_protocol_names() -> None:
    # The CLI, the test kit and other callers import these from sdready._notify._notifier.
    for name in ("NOTIFY_BUFFER_MAX", "SCM_MAX_FD", "NotifyAddress", "encode"):
        assert getattr(_notifier, name) is getattr(_protocol, name)
        assert name in _notifier.__all__
