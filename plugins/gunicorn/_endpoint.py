"""``ready_path`` and ``live_path`` under gunicorn: answered in the workers, which serve,
from the arbiter's phase.

The arbiter's engine publishes every move of its phase into a
:class:`~sdready.integration.PhaseCell` made before the first fork; a worker wraps its app
(WSGI: :class:`~sdready.integration.WSGIProbeApp`; ASGI: the ASGI plugin's
``ProbeMiddleware``) and answers a probe from that cell: ``200 ready`` only between the
arbiter's READY and its stop, the phase otherwise. The app never sees a probe. The
``health`` check (``sdready_health`` in the config file) runs in the worker that answers.
"""

from __future__ import annotations

from typing import Any

from sdready.integration import PhaseCell, Probes, ReadyOptions, WSGIProbeApp

__all__ = ["Endpoint"]


class Endpoint:
    """The phase the workers answer from, and the paths they answer (none by default)."""

    def __init__(self) -> None:
        #: Made in the arbiter before any worker forks; the engine publishes into it.
        self.cell = PhaseCell()
        self.probes = Probes(ReadyOptions())

    def configure(self, options: ReadyOptions) -> None:
        """The paths of *options*, for the workers forked from now on (a SIGHUP re-reads)."""
        self.probes = Probes(options)

    def wrap(self, app: Any, *, asgi: bool) -> Any:
        """*app* answering the probes in front of it; *app* itself when no path is set."""
        if not self.probes:
            return app
        if asgi:
            from sdready.plugins.asgi import ProbeMiddleware

            return ProbeMiddleware(app, probes=self.probes, readiness=self._source)
        return WSGIProbeApp(app, self.probes, self._source)

    def _source(self) -> PhaseCell:
        return self.cell
