"""Django: ``READY=1`` once the server in this process accepts connections.

In settings.py::

    INSTALLED_APPS = [..., "sdready.plugins.django"]
    SDREADY = {"ready_timeout": "60s", "health": "database"}   # optional

WSGI (waitress, runserver): the app config's ``ready()`` starts one waiter thread per
serving process, which sends READY once the server's socket listens (a socket that
listened before Django started must answer HTTP first: ``probe`` defaults to ``"auto"``).
Management commands (``migrate``, ``check``, ``shell``…), runserver's autoreloader parent
and gunicorn's workers stay inert: under gunicorn, ``-c python:sdready.plugins.gunicorn``
speaks from the arbiter. ASGI: Django refuses the lifespan scope, so serve
``sdready.plugins.django.get_asgi_application()`` instead of Django's (asgi.py): READY once
uvicorn listens, STOPPING on shutdown.

``SDREADY`` keys are :class:`~sdready.ReadyOptions` names, lower case (upper case is
accepted): ``ready_timeout``, ``on_timeout``, ``expect``, ``probe``, ``watchdog``,
``health``, ``notifier``. ``health`` may be a callable, a dotted path to one, or
``"database"`` (:func:`database_health`). An unknown key or a bad value raises
:class:`~django.core.exceptions.ImproperlyConfigured` when Django starts. Outside systemd
(no ``NOTIFY_SOCKET``) nothing happens. Django internals used: :mod:`._compat`.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from sdready.integration import OPTIONS, missing_framework

try:
    import django
    from django.core.exceptions import ImproperlyConfigured
except ImportError as exc:  # pragma: no cover
    raise missing_framework("django", "Django") from exc

from sdready import HealthCheck
from sdready.integration import ReadyOptions

from . import _process

if TYPE_CHECKING:
    from sdready.integration import ASGIApp, ReadyKeywords
    from typing_extensions import Unpack

__all__ = ["database_health", "get_asgi_application", "options_from_django_settings"]

_MIN_VERSION = (4, 2)
#: The SDREADY keys: every option but gunicorn's own (its plugin reads those).
_KEYS = tuple(name for name in OPTIONS if name not in ("ready_workers", "keep_sockets"))
#: The ``health`` value that means :func:`database_health`.
_DATABASE = "database"

if django.VERSION[:2] < _MIN_VERSION:
    raise RuntimeError(
        f"sdready.plugins.django needs Django >= 4.2, found {django.get_version()}: "
        "pip install 'sdready[django]'"
    )


def options_from_django_settings(**overrides: Unpack[ReadyKeywords]) -> ReadyOptions:
    """:class:`~sdready.ReadyOptions` from ``settings.SDREADY``; *overrides* win.

    Raises :class:`~django.core.exceptions.ImproperlyConfigured` for an unknown key (naming
    the closest valid one) or a bad value (with the option's own message).
    """
    return _read_options({}, dict(overrides))


def _read_options(defaults: Mapping[str, object], overrides: Mapping[str, object]) -> ReadyOptions:
    """*defaults*, then ``settings.SDREADY``, then *overrides*: the options, or the error."""
    from django.conf import settings

    configured = getattr(settings, "SDREADY", {})
    if not isinstance(configured, Mapping):
        raise ImproperlyConfigured(
            f"settings.SDREADY must be a dict of readiness options, not {configured!r}"
        )
    values: dict[str, object] = dict(defaults)
    for key, value in configured.items():
        name = str(key).lower()
        if name not in _KEYS:
            close = difflib.get_close_matches(name, _KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ImproperlyConfigured(
                f"unknown key {key!r} in settings.SDREADY{hint} (known: {', '.join(_KEYS)})"
            )
        values[name] = _health(value) if name == "health" else value
    values.update(overrides)
    try:
        return ReadyOptions.from_settings(values, label="SDREADY[{!r}]")
    except ValueError as exc:
        raise ImproperlyConfigured(f"settings.SDREADY: {exc}") from exc


def _health(value: object) -> object:
    """``"database"``, a dotted path, or the callable itself (checked by ReadyOptions)."""
    if value == _DATABASE:
        return database_health
    if isinstance(value, str):
        from django.utils.module_loading import import_string

        try:
            return import_string(value)
        except ImportError as exc:
            raise ImproperlyConfigured(f"settings.SDREADY['health']: {exc}") from exc
    return value


def database_health() -> bool:
    """True when the default database answers ``SELECT 1``: ``SDREADY = {"health": "database"}``.

    Gates each watchdog ping, from sdready's own thread (WSGI) or a worker thread (ASGI),
    outside any request: the connection it opens is closed again each time, since no
    request cycle will close it. An error counts as unhealthy.
    """
    from django.db import DEFAULT_DB_ALIAS, connections

    connection = connections[DEFAULT_DB_ALIAS]
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return bool(cursor.fetchone() == (1,))
    finally:
        connection.close()


def get_asgi_application(**options: Unpack[ReadyKeywords]) -> ASGIApp:
    """Django's ASGI application, speaking the lifespan protocol for sdready.

    Use it in asgi.py in place of ``django.core.asgi.get_asgi_application`` (it calls that,
    which sets Django up): under uvicorn, READY once the server listens, STOPPING when
    shutdown begins, watchdog pings from the event loop (a blocked loop stops them).
    Options: ``settings.SDREADY``, then *options*. A sync ``health`` runs in a worker
    thread, as Django's ORM refuses the event loop's. Outside systemd it only forwards.
    """
    from django.core.asgi import get_asgi_application as django_application
    from sdready.plugins.asgi import SystemdMiddleware

    _process.lifespan_reports()  # before django.setup(): the app config stays inert
    app = django_application()
    settings = options_from_django_settings(**options)
    keywords: dict[str, Any] = {f.name: getattr(settings, f.name) for f in fields(settings)}
    keywords["health"] = _off_the_loop(settings.health)
    return SystemdMiddleware(app, **keywords)


def _off_the_loop(health: HealthCheck | None) -> HealthCheck | None:
    if health is None or inspect.iscoroutinefunction(health):
        return health
    import asyncio

    async def in_a_thread() -> bool:
        return bool(await asyncio.to_thread(health))

    return in_a_thread
