"""gunicorn's workers: each reports once, over the arbiter's pipe, that it can serve.

WSGI workers can serve right after ``post_worker_init``; ASGI workers once their app's
lifespan startup completed (an observer wraps the app). A worker that fails to boot
reports why. With ``ready_path``/``live_path`` the worker's app is wrapped to answer them
from the arbiter's phase (:mod:`._endpoint`). Workers never see ``NOTIFY_SOCKET``: only
the arbiter speaks to systemd, and the app's ``sdready.progress()`` calls while it boots
go to the arbiter too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from sdready import texts
from sdready.integration import contained, relay_progress

from . import _compat
from ._arbiter import arbiter as _arbiter

if TYPE_CHECKING:
    from gunicorn.arbiter import Arbiter
    from gunicorn.workers.base import Worker

__all__ = ["forked", "worker_aborted", "worker_exiting", "worker_initialized"]

logger = logging.getLogger("sdready")

_MAX_REASON = 1000  # keeps a worker's report under PIPE_BUF, so the write is atomic


class _WorkerSide:
    """One worker's report to the arbiter: booted (serving) or failed, once."""

    def __init__(self) -> None:
        self.fd = -1
        self.reported = False
        self.age = 0

    def report_progress(self, text: str, extend: float) -> bool:
        """The app's ``sdready.progress()`` while this worker boots: the arbiter decides."""
        if self.fd < 0 or self.reported:
            return False
        line = json.dumps(
            {"age": self.age, "pid": os.getpid(), "event": "progress",
             "text": text[:_MAX_REASON], "extend": extend}
        )  # fmt: skip
        return self._write(line)

    def report_booted(self, worker: Worker) -> None:
        if self.fd < 0 or self.reported:
            return
        from sdready.integration import listening_sockets

        # By inode, not fd: the core reports a dup'ed socket once, under its lowest fd.
        own = {os.fstat(s.fileno()).st_ino for s in _compat.worker_sockets(worker)}
        listening = [item for item in listening_sockets() if item.inode in own]
        addresses = [item.address for item in listening][:32]
        complete = len(listening) == len(own)
        self._report(worker, event="booted", addresses=addresses, complete=complete)

    def report_failed(self, worker: Worker, reason: str | BaseException) -> None:
        """Report why this worker cannot serve: one line (a traceback's error line), and
        the errno of an OSError among an exception's causes (for ``ERRNO=``)."""
        if self.fd < 0 or self.reported:
            return
        errno = None
        if isinstance(reason, BaseException):
            reason, errno = texts.failure(reason)
        line = texts.one_line(texts.error_line(reason) or reason, _MAX_REASON)
        self._report(worker, event="failed", reason=line, errno=errno)

    def _report(self, worker: Worker, **fields: Any) -> None:
        self.reported = True
        self._write(json.dumps({"age": _compat.worker_age(worker), "pid": os.getpid(), **fields}))

    def _write(self, line: str) -> bool:
        try:
            os.write(self.fd, (line + "\n").encode())
        except OSError as exc:  # EAGAIN: the arbiter's thread is gone or far behind
            logger.debug("could not report to the arbiter: %s", exc)
            return False
        return True


_worker = _WorkerSide()


# -- ASGI workers: booted means lifespan startup completed ---------------------------------


class _LifespanObserver:
    """Wrap a worker's ASGI app; report once lifespan startup completed or failed.

    http and websocket scopes pass straight through; the app's messages and exceptions
    are untouched, so the server behaves exactly as without it.
    """

    def __init__(self, app: Any, worker: Worker, required: bool) -> None:
        self.app = app
        self._worker = worker
        self._required = required  # lifespan="on": an app without lifespan cannot boot

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        await self._lifespan(scope, receive, send)

    async def _lifespan(self, scope: Any, receive: Any, send: Any) -> None:
        async def observed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "lifespan.startup.complete":
                _worker.report_booted(self._worker)
            elif message["type"] == "lifespan.startup.failed":
                error = sys.exc_info()[1]  # uvicorn sends it from its except block
                reason = message.get("message") or "lifespan startup failed"
                _worker.report_failed(self._worker, error if error is not None else reason)

        try:
            await self.app(scope, receive, observed_send)
        except Exception as exc:
            self._ended(exc)
            raise
        self._ended("the app returned before lifespan startup completed")

    def _ended(self, reason: str | BaseException) -> None:
        # Lifespan unsupported: with lifespan="auto" the server serves anyway.
        if self._required:
            _worker.report_failed(self._worker, reason)
        else:
            _worker.report_booted(self._worker)


def worker_initialized(worker: Worker) -> None:
    if _worker.fd < 0:
        return
    asgi = _compat.asgi_lifespan(worker)
    attribute = _compat.app_attribute(worker, asgi)
    app = getattr(worker, attribute)
    if _arbiter.endpoint is not None:  # ready_path/live_path: answered before the app
        with contained("serving ready_path/live_path"):
            app = _arbiter.endpoint.wrap(app, asgi=asgi is not None)
    if asgi is None or asgi[1] == "off":
        setattr(worker, attribute, app)
        _worker.report_booted(worker)  # WSGI: the run loop starts right after this hook
        return
    setattr(worker, attribute, _LifespanObserver(app, worker, asgi[1] == "on"))


def forked(server: Arbiter, worker: Worker) -> None:
    _worker.fd = _arbiter.in_child()
    _worker.age = _compat.worker_age(worker)
    if _worker.fd >= 0:
        relay_progress(_worker.report_progress)


def worker_exiting(server: Arbiter, worker: Worker) -> None:
    # The arbiter calls it too, for a worker already gone.
    if os.getpid() != _compat.worker_pid(worker):
        _arbiter.worker_exited(worker)
        return
    if _worker.fd >= 0 and not _worker.reported:
        exc = sys.exc_info()[1]
        cause = exc.__context__ if isinstance(exc, SystemExit) and exc.__context__ else exc
        _worker.report_failed(worker, cause if cause is not None else "exited while booting")


def worker_aborted(worker: Worker) -> None:
    _worker.report_failed(worker, "aborted (SIGABRT, usually gunicorn's worker timeout)")
