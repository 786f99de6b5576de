"""What the gunicorn plugin uses of gunicorn beyond its documented API, in one place.

gunicorn documents its settings and the hooks' signatures, not the attributes of the
``server`` (arbiter) and ``worker`` objects the hooks receive: every such attribute the
plugin reads or writes is reached through a function here, whose comment says which
gunicorn releases have it and why the plugin needs it. :data:`INTERNALS` lists them all;
tests/plugins/test_compat.py checks each against the installed gunicorn (and the oldest
release the ``gunicorn`` extra allows, in the oldest-versions CI job).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gunicorn.arbiter import Arbiter
    from gunicorn.workers.base import Worker

__all__ = [
    "ASGI_WORKERS",
    "INTERNALS",
    "app_attribute",
    "asgi_lifespan",
    "bind_addresses",
    "configured_hook",
    "exec_environment",
    "graceful_timeout",
    "halt_reason",
    "keep_unix_socket_files",
    "last_heartbeat",
    "listening_sockets",
    "master_pid",
    "num_workers",
    "reexec_pid",
    "reuse_port",
    "set_hook",
    "spawned_age",
    "still_running",
    "validate_hook",
    "worker_age",
    "worker_pid",
    "worker_sockets",
    "worker_timeout",
    "workers",
]

#: (name, distribution, first release that has it): every internal the plugin touches.
#: "23.0" is the oldest release the ``gunicorn`` extra allows, checked there and on the
#: newest; a later first release means the plugin copes without it on older ones.
INTERNALS: tuple[tuple[str, str, str], ...] = (
    ("Arbiter.systemd", "gunicorn", "23.0"),
    ("Arbiter.cfg.env_orig", "gunicorn", "23.0"),
    ("Arbiter.WORKERS", "gunicorn", "23.0"),
    ("Arbiter.LISTENERS", "gunicorn", "23.0"),
    ("gunicorn.sock.create_sockets", "gunicorn", "23.0"),
    ("Arbiter.reexec_pid", "gunicorn", "23.0"),
    ("Arbiter.master_pid", "gunicorn", "23.0"),
    ("Arbiter.worker_age", "gunicorn", "23.0"),
    ("Arbiter.num_workers", "gunicorn", "23.0"),
    ("Arbiter.timeout", "gunicorn", "23.0"),
    ("Arbiter.dirty_arbiter_pid", "gunicorn", "25.0"),
    ("Arbiter.cfg.graceful_timeout", "gunicorn", "23.0"),
    ("Arbiter.cfg.reuse_port", "gunicorn", "23.0"),
    ("Arbiter.cfg.address", "gunicorn", "23.0"),
    ("Arbiter.cfg.settings", "gunicorn", "23.0"),
    ("Arbiter.cfg.set", "gunicorn", "23.0"),
    ("Listener.sock", "gunicorn", "23.0"),
    ("HaltServer.reason", "gunicorn", "23.0"),
    ("gunicorn.config.validate_callable", "gunicorn", "23.0"),
    ("hook arity", "gunicorn", "23.0"),
    ("Worker.age", "gunicorn", "23.0"),
    ("Worker.pid", "gunicorn", "23.0"),
    ("Worker.sockets", "gunicorn", "23.0"),
    ("Worker.tmp.last_update", "gunicorn", "23.0"),
    ("Worker.wsgi", "gunicorn", "23.0"),
    ("gunicorn.workers.gasgi.ASGIWorker", "gunicorn", "24.0"),
    ("ASGIWorker.asgi", "gunicorn", "24.0"),
    ("ASGIWorker.cfg.asgi_lifespan", "gunicorn", "24.0"),
    ("uvicorn_worker._workers.UvicornWorker", "uvicorn-worker", "0.2"),
    ("UvicornWorker.config.lifespan", "uvicorn-worker", "0.2"),
    ("UvicornWorker.wsgi", "uvicorn-worker", "0.2"),
    ("uvicorn.workers.UvicornWorker", "uvicorn", "0.23"),
)

# -- the arbiter (the hooks' ``server``) -----------------------------------------------------


def keep_unix_socket_files(server: Arbiter) -> None:
    """gunicorn >= 23.0: ``systemd`` true keeps unix socket files at exit and hands the
    sockets on as fds 3… on USR2, as for sockets systemd passed; kept sockets need both."""
    server.systemd = True


def exec_environment(server: Arbiter) -> MutableMapping[str, str]:
    """gunicorn >= 23.0: ``cfg.env_orig``, the environment USR2's re-exec runs with (a copy
    from config load: NOTIFY_SOCKET, taken from os.environ, must be put back there)."""
    env: MutableMapping[str, str] = server.cfg.env_orig
    return env


def workers(server: Arbiter) -> list[Worker]:
    """gunicorn >= 23.0: ``WORKERS`` (pid: worker), the live workers the watchdog checks."""
    return list(server.WORKERS.values())


def still_running(server: Arbiter) -> int:
    """Processes still finishing requests after a stop signal: ``WORKERS`` (>= 23.0) and the
    dirty arbiter (``dirty_arbiter_pid``, gunicorn >= 25.0; absent before, so 0)."""
    return len(server.WORKERS) + (1 if getattr(server, "dirty_arbiter_pid", 0) else 0)


def listening_sockets(server: Arbiter) -> list[socket.socket]:
    """gunicorn >= 23.0: ``LISTENERS``' sockets (``.sock``), kept in the fd store when READY."""
    return [listener.sock for listener in server.LISTENERS]


def listen_on(server: Arbiter, fds: list[int], addresses: list[Any]) -> None:
    """gunicorn >= 23.0: ``LISTENERS`` set before ``start()`` are used as they are (it binds
    or adopts only when empty): the passed *fds*, as gunicorn adopts systemd's
    (``sock.create_sockets`` with fds), plus *addresses* bound anew (``create_sockets`` over
    a view of the config naming only them); ``systemd`` true, as for passed sockets."""
    from gunicorn import sock

    adopted = sock.create_sockets(server.cfg, server.log, fds)
    bound = sock.create_sockets(_Binding(server.cfg, addresses), server.log)
    server.LISTENERS = adopted + bound
    server.systemd = True


class _Binding:
    """gunicorn's config with ``address`` narrowed to the addresses to bind."""

    def __init__(self, cfg: Any, addresses: list[Any]) -> None:
        self._cfg = cfg
        self.address = addresses

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cfg, name)


def reexec_pid(server: Arbiter) -> int:
    """gunicorn >= 23.0: the USR2 child's pid (0 if none): the new master speaks from then on."""
    return int(server.reexec_pid)


def master_pid(server: Arbiter) -> int:
    """gunicorn >= 23.0: the old master's pid in a USR2 child (0 otherwise): READY takes over."""
    return int(server.master_pid)


def spawned_age(server: Arbiter) -> int:
    """gunicorn >= 23.0: ``worker_age``, the age of the last worker forked; a reload's
    workers are younger, which is how the plugin tells the generations apart."""
    return int(server.worker_age)


def num_workers(server: Arbiter) -> int:
    """gunicorn >= 23.0: the current worker count (TTIN/TTOU change it, not ``cfg.workers``)."""
    return int(server.num_workers)


def worker_timeout(server: Arbiter) -> float:
    """gunicorn >= 23.0: the arbiter's effective worker ``timeout``, its heartbeat limit."""
    return float(server.timeout)


def graceful_timeout(server: Arbiter) -> float:
    """gunicorn >= 23.0: how long workers may finish after a stop signal (``cfg``'s value)."""
    return float(server.cfg.graceful_timeout)


def reuse_port(server: Arbiter) -> bool:
    """gunicorn >= 23.0: ``reuse_port`` as configured (each worker then binds its own)."""
    return bool(server.cfg.reuse_port)


def bind_addresses(server: Arbiter) -> list[Any]:
    """gunicorn >= 23.0: ``cfg.address``, ``bind`` parsed into (host, port) tuples and paths."""
    return list(server.cfg.address)


def configured_hook(server: Arbiter, name: str) -> Callable[..., None]:
    """gunicorn >= 23.0: the hook now set, via ``cfg.settings[name].get()``: one defined
    below ``install()`` in the config file escaped it and must be wrapped late."""
    hook: Callable[..., None] = server.cfg.settings[name].get()
    return hook


def set_hook(server: Arbiter, name: str, hook: Callable[..., None]) -> None:
    """gunicorn >= 23.0: ``cfg.set``, which validates *hook*'s arity as the config file does."""
    server.cfg.set(name, hook)


def validate_hook(arity: int, hook: Callable[..., None]) -> Callable[..., None]:
    """gunicorn >= 23.0: ``gunicorn.config.validate_callable``, so a user's hook with the
    wrong arity fails with gunicorn's own message, as without sdready."""
    from gunicorn.config import validate_callable

    checked: Callable[..., None] = validate_callable(arity)(hook)
    return checked


def halt_reason(exc: BaseException | None) -> Any:
    """gunicorn >= 23.0: ``HaltServer.reason`` (a str), None for any other exception;
    on_exit runs while HaltServer is handled, and its reason says why gunicorn gave up."""
    return getattr(exc, "reason", None)


# -- workers -----------------------------------------------------------------------------


def worker_age(worker: Worker) -> int:
    """gunicorn >= 23.0: a worker's ``age``, unique and growing: its key in the reports."""
    return int(worker.age)


def worker_pid(worker: Worker) -> object:
    """gunicorn >= 23.0: the worker's pid (worker_exit runs in the worker and the arbiter;
    ``"[booting]"`` before the fork)."""
    pid: object = worker.pid
    return pid


def worker_sockets(worker: Worker) -> list[socket.socket]:
    """gunicorn >= 23.0: the listeners the worker serves, whose listening it reports."""
    return list(worker.sockets)


def last_heartbeat(worker: Worker) -> float:
    """gunicorn >= 23.0: ``tmp.last_update()``, the worker's last heartbeat on the monotonic
    clock (gunicorn's own timeout rule); OSError or ValueError once the worker is reaped."""
    return float(worker.tmp.last_update())


#: (module, class) of ASGI worker classes, whose app is ready only after lifespan startup:
#: gunicorn's own (>= 24.0), uvicorn-worker's (>= 0.2) and uvicorn's older copy (>= 0.23).
ASGI_WORKERS = {
    ("gunicorn.workers.gasgi", "ASGIWorker"),
    ("uvicorn_worker._workers", "UvicornWorker"),
    ("uvicorn.workers", "UvicornWorker"),
}


def app_attribute(worker: Worker, asgi: tuple[str, str] | None) -> str:
    """The worker attribute holding the app it serves: *asgi*'s (:func:`asgi_lifespan`),
    else ``wsgi`` (gunicorn >= 23.0: sync and gthread workers look it up per request, after
    post_worker_init, so a wrapper put there answers)."""
    return "wsgi" if asgi is None else asgi[0]


def asgi_lifespan(worker: Worker) -> tuple[str, str] | None:
    """``(app attribute, lifespan mode)`` for an ASGI worker class, None for WSGI.

    gunicorn's ASGIWorker (>= 24.0) serves ``worker.asgi`` with ``cfg.asgi_lifespan``;
    the uvicorn workers serve ``worker.wsgi`` with their uvicorn ``config.lifespan``.
    Both read the attribute after post_worker_init, so an observer put there sees lifespan.
    """
    for cls in type(worker).__mro__:
        if (cls.__module__, cls.__name__) in ASGI_WORKERS:
            if cls.__name__ == "ASGIWorker":
                return "asgi", str(getattr(worker.cfg, "asgi_lifespan", "auto"))
            return "wsgi", str(getattr(worker.config, "lifespan", "auto"))
    return None
