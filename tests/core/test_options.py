"""ReadyOptions: every option, its one default, and the one way each is read from text."""

from __future__ import annotations

import math

import pytest
from sdready import ReadyOptions
from sdready._options import (
    DEFAULT_READY_TIMEOUT,
    OPTIONS,
    parse_bool,
    parse_duration,
    parse_expect,
    prefixed,
)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ready_timeout": 0}, "ready_timeout"),
        ({"ready_timeout": True}, "ready_timeout"),
        ({"on_timeout": "ignore"}, "on_timeout"),
        ({"probe": "tcp"}, "probe"),
        ({"expect": "not an address"}, "expect entry"),
        ({"health": 42}, "health"),
    ],
)
def test_options_are_validated_at_construction(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ReadyOptions(**kwargs)  # type: ignore[arg-type]


def test_options_from_loosely_typed_settings() -> None:
    options = ReadyOptions.from_settings(
        {"ready_timeout": "12.5", "watchdog": "off", "expect": "8000, /run/a.sock", "probe": "none"}
    )
    assert options.ready_timeout == 12.5
    assert options.watchdog is False
    assert options.expect == [8000, "/run/a.sock"]
    assert options.probe is None
    with pytest.raises(ValueError, match="unknown readiness option"):
        ReadyOptions.from_settings({"readytimeout": 1})
    with pytest.raises(ValueError, match="boolean"):
        ReadyOptions.from_settings({"watchdog": "perhaps"})
    with pytest.raises(ValueError, match="seconds"):
        ReadyOptions.from_settings({"ready_timeout": "soon"})


def test_defaults_are_the_documented_ones() -> None:
    options = ReadyOptions()
    assert options.ready_timeout == DEFAULT_READY_TIMEOUT == 30.0
    assert options.on_timeout == "warn"
    assert (options.expect, options.probe, options.health, options.notifier) == (None,) * 4
    assert options.watchdog is True
    assert options.ready_workers is None
    assert not options.auto_probe
    assert ReadyOptions(probe="auto").auto_probe


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("1.5s", 1.5), ("500ms", 0.5), ("2min", 120.0), ("1h", 3600.0), (" 2 s", 2.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration("x", text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["0", "-1", "soon", "inf", "nan", "", "5 parsecs"])
def test_bad_durations_name_the_option(text: str) -> None:
    with pytest.raises(ValueError, match=r"^ready_timeout must"):
        parse_duration("ready_timeout", text)


def test_booleans() -> None:
    assert [parse_bool("w", t) for t in ("1", "true", "Yes", " on ")] == [True] * 4
    assert [parse_bool("w", t) for t in ("0", "false", "NO", "off", "")] == [False] * 5
    with pytest.raises(ValueError, match=r"^w must be a boolean"):
        parse_bool("w", "perhaps")


def test_expect_lists() -> None:
    assert parse_expect("8000, 127.0.0.1:9000,, /run/a.sock") == [
        8000,
        "127.0.0.1:9000",
        "/run/a.sock",
    ]
    assert parse_expect(" , ") is None


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (1, True),
        (8, True),
        ("all", True),
        (0, False),
        (-1, False),
        (True, False),
        ("some", False),
        (1.5, False),
    ],
)
def test_ready_workers(value: object, ok: bool) -> None:
    if ok:
        assert ReadyOptions(ready_workers=value).ready_workers == value  # type: ignore[arg-type]
    else:
        with pytest.raises(ValueError, match="ready_workers"):
            ReadyOptions(ready_workers=value)  # type: ignore[arg-type]


def test_settings_name_options_as_the_user_wrote_them() -> None:
    with pytest.raises(ValueError, match=r"^sdready_ready_timeout must"):
        ReadyOptions.from_settings({"ready_timeout": "soon"}, label="sdready_{}")
    options = ReadyOptions.from_settings({"ready_timeout": "500ms", "ready_workers": "all"})
    assert (options.ready_timeout, options.ready_workers) == (0.5, "all")


def test_prefixed_settings() -> None:
    environ = {"SDREADY_READY_TIMEOUT": "60", "SDREADY_REQUIRE_SYSTEMD": "1", "PATH": "/bin"}
    assert prefixed(environ, "SDREADY_", strict=False) == {"ready_timeout": "60"}
    with pytest.raises(ValueError, match="unknown sdready setting 'SDREADY_REQUIRE_SYSTEMD'"):
        prefixed(environ, "SDREADY_")
    config = {"sdready_on_timeout": "fail", "bind": "127.0.0.1:8000", "workers": 4}
    assert prefixed(config, "sdready_") == {"on_timeout": "fail"}
    with pytest.raises(ValueError, match="known: sdready_ready_timeout"):
        prefixed({"sdready_ready_worker": 2}, "sdready_")


def test_a_misspelt_setting_is_named_with_the_closest_valid_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = {"SDREADY_READY_TIMEOT": "5", "SDREADY_TEST_STARTUP_DELAY": "1"}
    assert prefixed(environ, "SDREADY_", strict=False) == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    # A typo of ours warns; another tool's SDREADY_-prefixed name (control) does not.
    assert warnings == [
        "ignoring unknown sdready setting 'SDREADY_READY_TIMEOT' "
        "(did you mean 'SDREADY_READY_TIMEOUT'?)"
    ]
    with pytest.raises(ValueError, match=r"did you mean 'sdready_ready_workers'\?"):
        prefixed({"sdready_ready_worker": 2}, "sdready_")
    with pytest.raises(ValueError, match=r"ready_timeot \(did you mean 'ready_timeout'\?\)"):
        ReadyOptions.from_settings({"ready_timeot": "5"})


@pytest.mark.parametrize("value", ["no", "false", 0, 1, None])
def test_booleans_must_be_booleans(value: object) -> None:
    with pytest.raises(ValueError, match="watchdog must be True or False"):
        ReadyOptions(watchdog=value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keep_sockets must be True, False or None"):
        ReadyOptions(keep_sockets="no")  # type: ignore[arg-type]
    # Control: real booleans, and text read by the settings' parser, are accepted.
    assert ReadyOptions(watchdog=False).watchdog is False
    assert ReadyOptions.from_settings({"watchdog": "no"}).watchdog is False


def test_every_option_has_a_default_and_a_place_in_the_docs() -> None:
    from pathlib import Path

    reference = (Path(__file__).parents[2] / "docs" / "reference.md").read_text()
    for name in OPTIONS:
        if name != "notifier":
            assert f"`{name}`" in reference or f"_{name}`" in reference, name
    assert not math.isinf(ReadyOptions().ready_timeout)


def test_each_default_is_decided_once() -> None:
    # Every front end takes the defaults from sdready._values: the options, the CLI, the
    # doctor's reading of a unit, and the waits' probe bound (the probe's own, which
    # _values reads from the probe's module).
    import inspect

    from sdready._commands._cli import _build_parser
    from sdready._listen import _listeners
    from sdready._units import _appfacts
    from sdready._values import (
        DEFAULT_ON_TIMEOUT,
        DEFAULT_PROBE_TIMEOUT,
        DEFAULT_READY_TIMEOUT,
        ON_TIMEOUT,
    )

    options = ReadyOptions()
    assert (options.ready_timeout, options.on_timeout) == (
        DEFAULT_READY_TIMEOUT,
        DEFAULT_ON_TIMEOUT,
    )
    facts = _appfacts.AppFacts()
    assert (facts.ready_timeout, facts.on_timeout) == (DEFAULT_READY_TIMEOUT, DEFAULT_ON_TIMEOUT)
    for waiter in (_listeners.wait_until_listening, _listeners.async_wait_until_listening):
        bound = inspect.signature(waiter).parameters["probe_timeout"].default
        assert bound == DEFAULT_PROBE_TIMEOUT
    parser = _build_parser()
    args = parser.parse_args(["exec", "--", "true"])
    assert (args.ready_timeout, args.on_timeout) == (DEFAULT_READY_TIMEOUT, DEFAULT_ON_TIMEOUT)
    with pytest.raises(SystemExit):  # argparse's own choices are the one list
        parser.parse_args(["exec", "--on-timeout", "bogus", "--", "true"])
    for choice in ON_TIMEOUT:
        assert (
            parser.parse_args(["exec", "--on-timeout", choice, "--", "true"]).on_timeout == choice
        )
