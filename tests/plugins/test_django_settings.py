"""``settings.SDREADY``, the database health check and the Django internals we rely on.

In this process: Django is configured once (an sqlite file in a temporary folder, no
apps), each test overrides ``SDREADY`` with Django's own ``override_settings``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("django")

import django
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test.utils import override_settings
from sdready import Notifier
from sdready.plugins.django import (
    _compat,
    database_health,
    options_from_django_settings,
)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("django") / "db.sqlite3"
    if not settings.configured:
        databases = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}}
        settings.configure(DATABASES=databases, INSTALLED_APPS=[], USE_TZ=True)
        django.setup()
    from django.db import connections

    yield Path(connections["default"].settings_dict["NAME"])


def _options(sdready: object) -> Any:
    with override_settings(SDREADY=sdready):
        return options_from_django_settings()


def healthy() -> bool:
    return True


# -- settings.SDREADY -------------------------------------------------------------------------


def test_no_setting_means_the_defaults(database: Path) -> None:
    options = options_from_django_settings()
    assert (options.ready_timeout, options.on_timeout, options.health) == (30.0, "warn", None)


def test_keys_in_either_case_and_strings_converted(database: Path) -> None:
    options = _options({"ready_timeout": "2min", "WATCHDOG": "off", "expect": "8000"})
    assert (options.ready_timeout, options.watchdog, options.expect) == (120.0, False, [8000])


def test_overrides_win(database: Path) -> None:
    with override_settings(SDREADY={"ready_timeout": 5}):
        assert options_from_django_settings(ready_timeout=7).ready_timeout == 7


@pytest.mark.parametrize(
    ("key", "closest"), [("ready_timeot", "ready_timeout"), ("WATCHDOG_USEC", "watchdog")]
)
def test_unknown_key_names_the_closest(database: Path, key: str, closest: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=f"did you mean '{closest}'"):
        _options({key: 1})


@pytest.mark.parametrize("key", ["ready_workers", "keep_sockets"])
def test_gunicorn_only_options_are_not_django_keys(database: Path, key: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=f"unknown key '{key}'"):
        _options({key: 1})


@pytest.mark.parametrize(
    ("sdready", "message"),
    [
        ({"ready_timeout": "soon"}, r"SDREADY\['ready_timeout'\]"),
        ({"on_timeout": "never"}, "on_timeout"),
        ({"health": 42}, "health"),
        ({"health": "no_such_module.check"}, "No module named"),
        (["ready_timeout"], "must be a dict"),
    ],
)
def test_bad_values_raise_improperly_configured(
    database: Path, sdready: object, message: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=message) as raised:
        _options(sdready)
    assert "settings.SDREADY" in str(raised.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("database", database_health),
        (f"{__name__}.healthy", healthy),
        (healthy, healthy),
        (None, None),
    ],
    ids=["database", "dotted-path", "callable", "none"],
)
def test_health_forms(database: Path, value: object, expected: Callable[[], bool] | None) -> None:
    assert _options({"health": value}).health is expected


def test_notifier_from_settings(database: Path) -> None:
    notifier = Notifier(None)
    assert _options({"notifier": notifier}).notifier is notifier


# -- database_health ---------------------------------------------------------------------------


def _in_a_thread(work: Callable[[], object]) -> object:
    """*work*'s result (or exception) from a fresh thread, as the watchdog runs it."""
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(_capture(work)))
    thread.start()
    thread.join(10)
    assert result, "the thread did not finish"
    return result[0]


def _capture(work: Callable[[], object]) -> object:
    try:
        return work()
    except Exception as exc:
        return exc


def _check_and_report_connection(check: Callable[[], object]) -> tuple[object, object]:
    def work() -> tuple[object, object]:
        from django.db import connections

        outcome = _capture(check)
        return outcome, connections["default"].connection  # this thread's connection

    result = _in_a_thread(work)
    assert isinstance(result, tuple)
    return result


def test_database_health_answers_and_closes_its_connection(database: Path) -> None:
    outcome, connection = _check_and_report_connection(database_health)
    assert outcome is True
    assert connection is None  # closed: no request cycle would close it in this thread


def test_a_query_outside_a_request_leaves_the_connection_open(database: Path) -> None:
    """Control: the same query without the check's close keeps its connection."""

    def query() -> None:
        from django.db import connections

        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")

    _, connection = _check_and_report_connection(query)
    assert connection is not None
    connection.close()  # type: ignore[attr-defined]


def test_database_health_fails_while_the_database_cannot_open(database: Path) -> None:
    database.unlink(missing_ok=True)
    database.mkdir()  # sqlite cannot open a directory
    try:
        outcome, connection = _check_and_report_connection(database_health)
    finally:
        database.rmdir()
    assert type(outcome).__name__ == "OperationalError", outcome  # the watchdog skips a ping
    assert connection is None


# -- the Django internals of _compat ---------------------------------------------------------


def test_compat_internals_still_exist(database: Path) -> None:
    from django.core.management.commands import runserver
    from django.utils import autoreload

    assert autoreload.DJANGO_AUTORELOAD_ENV == _compat.AUTORELOAD_ENV
    parser = runserver.Command().create_parser("manage.py", "runserver")
    assert parser.parse_args([_compat.NORELOAD_OPTION]).use_reloader is False
    assert parser.parse_args([]).use_reloader is True
    assert {"runserver", "check", "migrate", "shell", "testserver"} <= _compat.command_names()


def test_database_health_is_refused_on_an_event_loop(database: Path) -> None:
    """Why get_asgi_application runs a sync health check in a thread: on the loop's own
    thread Django refuses to touch the database."""
    import asyncio

    from django.core.exceptions import SynchronousOnlyOperation

    async def on_the_loop() -> object:
        return _capture(database_health)

    assert isinstance(asyncio.run(on_the_loop()), SynchronousOnlyOperation)
