"""The app config Django loads for ``"sdready.plugins.django"`` in ``INSTALLED_APPS``."""

from __future__ import annotations

from django.apps import AppConfig
from sdready.integration import AUTO_PROBE, contained

from . import _process, _read_options

#: A socket that already listens when Django starts (socket activation, a parent's fd)
#: accepts before the app serves: by default READY then waits for an HTTP answer.
_DEFAULTS = {"probe": AUTO_PROBE}

__all__ = ["SdreadyConfig"]


class SdreadyConfig(AppConfig):  # type: ignore[misc]  # Django ships no type information
    """Reads ``settings.SDREADY`` (a wrong setting fails here, loudly) and, in a process
    that serves, starts the READY waiter (see :mod:`sdready.plugins.django`)."""

    name = "sdready.plugins.django"
    label = "sdready"
    verbose_name = "sdready (systemd readiness)"
    default = True

    def ready(self) -> None:
        options = _read_options(_DEFAULTS, {})  # ImproperlyConfigured propagates
        # Our failure must never stop Django from starting.
        with contained("setting up readiness"):
            _process.start(options)
