"""Every part of Django this plugin relies on that is not in Django's documented API.

One place, so that a Django release that moves one of them breaks one test
(tests/plugins/test_django_compat.py checks each still exists) instead of readiness.
Everything else the plugin uses is documented API: ``AppConfig.ready()``, ``settings``,
``ImproperlyConfigured``, ``django.core.asgi.get_asgi_application``, ``connections``,
``import_string``.
"""

from __future__ import annotations

__all__ = ["AUTORELOAD_ENV", "NORELOAD_OPTION", "SERVING_COMMANDS", "command_names"]

#: ``django.utils.autoreload.DJANGO_AUTORELOAD_ENV`` (4.2-5.2): set to ``"true"`` in the
#: child that runserver's autoreloader starts; that child binds and serves.
AUTORELOAD_ENV = "RUN_MAIN"

#: runserver's flag that runs without the autoreloader (dest ``use_reloader``, 4.2-5.2).
NORELOAD_OPTION = "--noreload"

#: Management commands that serve HTTP in their own process (testserver calls runserver
#: without the reloader). Every other command (migrate, check, shell…) never serves.
SERVING_COMMANDS = frozenset({"runserver", "testserver"})


def command_names() -> frozenset[str]:
    """The management commands of this project: ``django.core.management.get_commands()``
    (not in Django's docs; a dict of name → app since 1.x, cached)."""
    from django.core.management import get_commands

    return frozenset(get_commands())
