"""Play a server's side of the ASGI lifespan protocol in-process, as uvicorn does.

The test itself then "binds" by opening a listening socket on loopback: the middleware
watches this process's own sockets, so that is exactly what a server would do to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

Message = dict[str, Any]


class LifespanServer:
    """Drives ``app``'s lifespan: ``await startup()``, then ``await shutdown()``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self.scope: dict[str, Any] = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        self.replies: list[Message] = []
        self.task: asyncio.Task[None] | None = None
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()

    async def _receive(self) -> Message:
        return await self._to_app.get()

    async def _send(self, message: Message) -> None:
        self.replies.append(message)
        await self._from_app.put(message)

    async def startup(self, timeout: float = 5.0) -> Message | None:
        """Send lifespan.startup; return the app's answer, or None if the app ended first."""
        self.task = asyncio.get_running_loop().create_task(
            self.app(self.scope, self._receive, self._send)
        )
        await self._to_app.put({"type": "lifespan.startup"})
        return await self._answer(timeout)

    async def shutdown(self, timeout: float = 5.0) -> Message | None:
        """Send lifespan.shutdown; return the answer (None if the app had ended)."""
        await self._to_app.put({"type": "lifespan.shutdown"})
        answer = await self._answer(timeout)
        assert self.task is not None
        await asyncio.wait_for(asyncio.shield(self.task), timeout)
        return answer

    async def _answer(self, timeout: float) -> Message | None:
        assert self.task is not None
        getter = asyncio.ensure_future(self._from_app.get())
        done, _ = await asyncio.wait(
            {getter, self.task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in done:
            return getter.result()
        getter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await getter
        if not done:
            raise TimeoutError(f"no lifespan answer within {timeout} s; got {self.replies}")
        return None

    def app_exception(self) -> BaseException | None:
        """What the app's lifespan call raised (None if it returned or still runs)."""
        if self.task is None or not self.task.done() or self.task.cancelled():
            return None
        return self.task.exception()


@contextlib.contextmanager
def listening(host: str = "127.0.0.1") -> Iterator[socket.socket]:
    """A TCP socket listening on *host*, port 0: what a server binds after lifespan startup."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.bind((host, 0))
        sock.listen(16)
        yield sock
    finally:
        sock.close()


def address(sock: socket.socket) -> str:
    """``127.0.0.1:PORT``, as the READY status shows it."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
