"""The public API for integrations: what a front end for a server or framework builds on.

Every bundled plugin (ASGI, FastAPI, Flask, Django, gunicorn) imports sdready only from
here and from :mod:`sdready` itself; an integration for another server needs nothing
else. A plugin *translates its framework's lifecycle* into :class:`Readiness` calls and
decides no policy: the engine decides what systemd is told, when, and how often.

A new server's integration, from scratch (see docs/reference.md, "Writing an integration")::

    from sdready.integration import Readiness, ReadyOptions, contained

    class MyServerIntegration:
        def __init__(self, **options):
            self.readiness = Readiness(ReadyOptions(**options))  # no side effects

        def before_app_startup(self):           # the server is about to run the app's startup
            with contained("reporting startup"):
                self.readiness.starting()        # STATUS=Starting…, snapshot of listeners

        def after_app_startup(self):            # before the server goes on to listen
            with contained("reporting startup"):
                self.readiness.waiting()
            threading.Thread(target=self.readiness.waiter.announce_blocking, daemon=True).start()

        def startup_failed(self, exc):
            with contained("reporting the failed startup"):
                self.readiness.startup_failed(f"{type(exc).__name__}: {exc}")

        def shutdown(self):                      # SIGTERM, before the server's own drain
            with contained("reporting shutdown"):
                self.readiness.stopping()

The pieces:

- :class:`Readiness`, the engine, and its :class:`Phase`; :class:`ReadyOptions` and
  :class:`ReadyKeywords` (a front end's keyword options), :func:`options_from_settings`
  (``SDREADY_*`` settings with the same parsers everywhere);
- containment and signals: :func:`contained`, :func:`chain_signal`, :func:`die_of`;
- load balancers and Kubernetes: :class:`Probes` (the readiness/liveness endpoints'
  :class:`Answer`, from the phase; :data:`PROBE_HEADERS`), :class:`WSGIProbeApp` (serving
  them in front of a WSGI app), :class:`PhaseCell` (the phase shared with forked workers
  that answer for the engine; :data:`PhaseSource`, either) and :class:`ShutdownDelay`
  (SIGTERM held while serving);
- a plugin's import guard: :func:`missing_framework`, :func:`require_framework`;
- facts about this process: :func:`notify_socket`, :func:`main_pid`, :func:`is_main_process`,
  :func:`watchdog_interval`, :func:`listen_fds_count`, :func:`listen_fdnames`,
  :func:`listening_sockets`, :class:`Listener`, :func:`listen_fds`,
  :func:`unset_listen_fds`;
- a server whose app runs in workers: :func:`relay_progress`, :class:`TimeoutTexts`;
- systemd's fd store: :func:`keep_sockets`, :func:`forget_sockets`, :func:`fdname_for`,
  :func:`keep_wanted`, :func:`socket_address`;
- ASGI's types: ``ASGIApp``, ``Scope``, ``Receive``, ``Send``, ``Message``.

Names here follow semantic versioning like :mod:`sdready`'s own: they stay, or keep an
alias for a release with a CHANGELOG line.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._contain import chain_signal, contained, die_of
from ._engine._delay import ShutdownDelay
from ._engine._phase import Phase
from ._engine._phase_cell import PhaseCell
from ._engine._probes import HEADERS as PROBE_HEADERS
from ._engine._probes import Answer, PhaseSource, Probes, WSGIProbeApp
from ._engine._progress import relay_progress
from ._engine._readiness import Readiness, TimeoutTexts
from ._env import (
    is_main_process,
    listen_fdnames,
    listen_fds,
    listen_fds_count,
    main_pid,
    notify_socket,
    unset_listen_fds,
    watchdog_interval,
)
from ._exceptions import missing_framework, require_framework
from ._listen._activation import fdname_for, forget_sockets, keep_sockets, keep_wanted
from ._listen._listeners import Listener, listening_sockets
from ._listen._sockets import describe
from ._options import (
    AUTO_PROBE,
    INHERITED_PROBE,
    OPTIONS,
    ReadyKeywords,
    ReadyOptions,
    prefixed,
)
from ._types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "AUTO_PROBE",
    "INHERITED_PROBE",
    "OPTIONS",
    "PROBE_HEADERS",
    "ASGIApp",
    "Answer",
    "Listener",
    "Message",
    "Phase",
    "PhaseCell",
    "PhaseSource",
    "Probes",
    "Readiness",
    "ReadyKeywords",
    "ReadyOptions",
    "Receive",
    "Scope",
    "Send",
    "ShutdownDelay",
    "TimeoutTexts",
    "WSGIProbeApp",
    "chain_signal",
    "contained",
    "die_of",
    "fdname_for",
    "forget_sockets",
    "is_main_process",
    "keep_sockets",
    "keep_wanted",
    "listen_fdnames",
    "listen_fds",
    "listen_fds_count",
    "listening_sockets",
    "main_pid",
    "missing_framework",
    "notify_socket",
    "options_from_settings",
    "prefixed",
    "relay_progress",
    "require_framework",
    "socket_address",
    "unset_listen_fds",
    "watchdog_interval",
]


def options_from_settings(
    settings: Mapping[str, object], prefix: str = "SDREADY_", *, strict: bool = True
) -> ReadyOptions:
    """:class:`ReadyOptions` from prefixed settings (a config mapping, ``os.environ``).

    ``options_from_settings({"SDREADY_READY_TIMEOUT": "2min"})`` → ``ready_timeout=120``.
    Values are read with the parsers every front end uses (durations, booleans, lists);
    with *strict* an unknown ``SDREADY_*`` name raises :class:`ValueError`, as does a bad
    value, naming the setting as the user wrote it.
    """
    label = prefix + "{}"
    return ReadyOptions.from_settings(prefixed(settings, prefix, strict=strict), label=label)


def socket_address(family: int, sockname: object) -> str:
    """A socket's address as sdready writes it (``127.0.0.1:8000``, ``/run/app.sock``,
    ``@abstract``): for logs, STATUS texts and fd store names."""
    return describe(family, sockname)[0]
