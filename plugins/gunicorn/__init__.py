"""gunicorn: ``READY=1`` from the arbiter only once workers really serve.

gunicorn sends ``READY=1`` itself as soon as the arbiter has bound its sockets, before any
worker has imported the app. This module is a gunicorn configuration module that takes
that job over::

    gunicorn -c python:sdready.plugins.gunicorn app:app

or, as the last lines of your own ``gunicorn.conf.py`` (your hooks keep running)::

    from sdready.plugins.gunicorn import install
    install(globals())

Options, as ``sdready_<name>`` variables in the config file or ``SDREADY_<NAME>``
environment variables (the environment wins, as with ``GUNICORN_CMD_ARGS``):
``ready_workers`` (1, or ``"all"``; ``"all"`` under ``reuse_port``), ``ready_timeout``
(30 s), ``on_timeout`` (``"warn"``), ``watchdog`` (true), ``keep_sockets`` (true when
systemd sets ``$FDSTORE``: the listening sockets go into the unit's fd store once READY,
so that restarts refuse no connection; see :mod:`._keep`), ``ready_path`` and
``live_path`` (answered in the workers from the arbiter's phase; ``sdready_health`` gates
them: see :mod:`._endpoint`), ``shutdown_delay`` (0: seconds the arbiter holds SIGTERM
while its workers keep serving; see :mod:`._stop`). With ``ready_path`` or
``shutdown_delay`` set, the arbiter's engine runs without ``NOTIFY_SOCKET`` too
(Kubernetes). See README for the table.

How: before gunicorn's own ``READY`` (and before ``--preload`` imports the app) the
arbiter takes ``NOTIFY_SOCKET`` out of the environment, so gunicorn and everything in the
workers stay silent. Each worker reports over a pipe created before the fork once it can
serve (WSGI: after ``post_worker_init``; ASGI: once its lifespan startup completed) and
which of its sockets listen; a thread in the arbiter reads the pipe and sends READY,
STATUS and STOPPING (RELOADING comes from ``on_reload``). Without ``NOTIFY_SOCKET`` (and
without ``ready_path`` and ``shutdown_delay``) nothing happens: no pipe, no thread,
nothing logged above DEBUG.
"""

from __future__ import annotations

import logging as _logging
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from sdready.integration import contained, require_framework

from . import _compat, _keep
from ._arbiter import OptionError as _OptionError
from ._arbiter import arbiter as _arbiter
from ._worker import forked as _forked
from ._worker import worker_aborted as _worker_aborted
from ._worker import worker_exiting as _worker_exiting
from ._worker import worker_initialized as _worker_initialized

if TYPE_CHECKING:
    from gunicorn.arbiter import Arbiter

require_framework("gunicorn", "gunicorn", "gunicorn")  # the hooks import it only when called

__all__ = ["install"]

_logger = _logging.getLogger("sdready")

# -- hook chaining ---------------------------------------------------------------------------


def _starting(server: Arbiter) -> None:
    _arbiter.starting(server)
    if _arbiter.active:
        _ensure_hooks(server)
        with contained("binding what the fd store did not give back"):
            _keep.bind_what_the_store_lost(server, _arbiter.readiness.options)


def _reloading(server: Arbiter) -> None:
    if _arbiter.active:
        _ensure_hooks(server)
    _arbiter.reloading(server)


def _workers_changed(server: Arbiter) -> None:
    # gunicorn sets num_workers in Arbiter.setup(), before a --preload app is imported:
    # the earliest moment to hide NOTIFY_SOCKET from the app.
    _arbiter.take_notify_socket(server)
    _arbiter.workers_changed()


# name: (arity, our part, run ours after theirs)
_HOOKS: dict[str, tuple[int, Callable[..., None], bool]] = {
    "on_starting": (1, _starting, False),
    "nworkers_changed": (3, lambda server, new, old: _workers_changed(server), False),
    "when_ready": (1, _arbiter.when_ready, False),
    "on_reload": (1, _reloading, False),
    "pre_fork": (2, lambda server, worker: _arbiter.forking(worker), False),
    "post_fork": (2, _forked, False),
    "post_worker_init": (1, _worker_initialized, True),
    "worker_abort": (1, _worker_aborted, False),
    "worker_exit": (2, _worker_exiting, False),
    "child_exit": (2, lambda server, worker: _arbiter.worker_exited(worker), False),
    "pre_exec": (1, _arbiter.before_exec, False),
    "on_exit": (1, _arbiter.exiting, False),
}


def _chain(name: str, theirs: Callable[..., None] | None) -> Callable[..., None]:
    arity, ours, ours_last = _HOOKS[name]

    def call(args: tuple[Any, ...]) -> None:
        if not ours_last:
            _contained(name, ours, args)
        if theirs is not None:
            theirs(*args)  # the user's errors propagate, as without sdready
        if ours_last:
            _contained(name, ours, args)

    # gunicorn checks the exact positional arity of every hook: no *args wrapper.
    hook: Callable[..., None]
    if arity == 1:

        def hook(a: Any) -> None:
            call((a,))
    elif arity == 2:

        def hook(a: Any, b: Any) -> None:
            call((a, b))
    else:

        def hook(a: Any, b: Any, c: Any) -> None:
            call((a, b, c))

    hook.__name__ = hook.__qualname__ = name
    hook.__dict__["__sdready__"] = True  # install() and _ensure_hooks() skip it
    return hook


def _contained(name: str, ours: Callable[..., None], args: tuple[Any, ...]) -> None:
    # Invalid sdready_* options fail loudly, like any bad gunicorn setting; anything else
    # of ours must never stop gunicorn.
    with contained(f"the {name} hook", allow=(_OptionError,)):
        ours(*args)


def _ensure_hooks(server: Arbiter) -> None:
    """Wrap hooks that escaped install(), e.g. defined below it: else READY never comes."""
    for name in _HOOKS:
        current = _compat.configured_hook(server, name)
        if not getattr(current, "__sdready__", False):
            _logger.warning(
                "%s was set after install(globals()); sdready wrapped it now. "
                "Call install() at the end of the config file.",
                name,
            )
            _compat.set_hook(server, name, _chain(name, current))


def install(namespace: MutableMapping[str, Any]) -> None:
    """Add sdready's hooks to a gunicorn config module's namespace (``globals()``).

    Hooks already defined there keep running, with their arguments and errors intact;
    calling it twice changes nothing. Call it last, after your own hook definitions.
    Options are the ``sdready_*`` variables of the same namespace, read when gunicorn
    starts (and again on ``SIGHUP``); see the module docstring.

    Example (``gunicorn.conf.py``)::

        workers = 4
        sdready_ready_workers = "all"

        def post_worker_init(worker):
            connect_database()

        from sdready.plugins.gunicorn import install
        install(globals())
    """
    for name, (arity, _ours, _last) in _HOOKS.items():
        theirs = namespace.get(name)
        if getattr(theirs, "__sdready__", False):
            continue
        if theirs is not None:
            theirs = _compat.validate_hook(arity, theirs)  # gunicorn's own check and message
        namespace[name] = _chain(name, theirs)
    _arbiter.namespace = namespace


install(globals())
