"""What the FastAPI plugin uses of FastAPI and Starlette beyond their documented API.

Each use goes through a function here whose comment names the releases that have it and
why the plugin needs it; :data:`INTERNALS` lists them, and tests/plugins/test_compat.py
checks each against the installed versions (the newest, and the extras' floors in the
oldest-versions CI job).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import fastapi

__all__ = ["INTERNALS", "lifespan_handler", "replace_lifespan_handler"]

#: (name, distribution, first release that has it), as in the gunicorn plugin's compat.
INTERNALS: tuple[tuple[str, str, str], ...] = (("Router.lifespan", "starlette", "0.27"),)


def lifespan_handler(app: fastapi.FastAPI) -> Callable[..., Any] | None:
    """Starlette >= 0.27 (FastAPI >= 0.100): ``Router.lifespan``, the one handler every
    version runs the lifespan scope through (``lifespan=`` and ``on_event`` both); Starlette
    looks it up on the instance, so a replacement set there sees every lifespan message."""
    handler = getattr(app.router, "lifespan", None)
    return handler if callable(handler) else None


def replace_lifespan_handler(app: fastapi.FastAPI, handler: Callable[..., Any]) -> None:
    """Put *handler* where :func:`lifespan_handler` found the router's own."""
    app.router.lifespan = handler  # type: ignore[method-assign]
