"""Helpers for the ``sdready`` command-line tests: run it, find its READY, clean up after it.

Every run goes through :func:`sdready_run`, which never leaves a process behind: at the end
it asks ``sdready`` to stop (SIGTERM, forwarded to the command), then kills whatever is
left of the process tree. Servers bind port 0; the port is read from the READY status.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from _servers import ServerProcess, child_env
from sdready import Notifier
from sdready._listen._proctree import process_tree
from sdready.testing import NotifyMessage, NotifyRecorder

__all__ = [
    "NODE",
    "SDREADY",
    "Run",
    "ready_address",
    "sdready_console_script",
    "sdready_run",
]

#: How the tests start the command: the running interpreter, so a 3.10 venv tests itself.
SDREADY = (sys.executable, "-m", "sdready")
NODE = shutil.which("node")
_ADDRESS = re.compile(r"listening on (\S+?)(?:,| and| \(pid)")


def sdready_console_script() -> str | None:
    """The ``sdready`` console script installed next to this interpreter, if any."""
    path = Path(sys.executable).parent / "sdready"
    return str(path) if path.exists() else None


def ready_address(message: NotifyMessage) -> tuple[str, int]:
    """``(host, port)`` of the first address in a READY message's STATUS."""
    status = message.get("STATUS") or ""
    match = _ADDRESS.search(status)
    assert match, f"no address in STATUS {status!r}"
    host, _, port = match.group(1).rpartition(":")
    return host.strip("[]"), int(port)


class Run(ServerProcess):
    """One ``sdready`` process reporting to ``recorder``; its log holds its and the command's
    output.

    Not a process group of its own: ``sdready`` is what gets signalled, as systemd would
    (it forwards to the command); :meth:`cleanup` ends the remembered tree after it.
    """

    name = "sdready"
    exit_timeout = 10.0
    recorder: NotifyRecorder

    def __init__(
        self,
        argv: Sequence[str],
        recorder: NotifyRecorder,
        *,
        env: Mapping[str, str],
        log: Path,
        pass_fds: Sequence[int] = (),
    ) -> None:
        super().__init__(
            argv, env=env, log=log, pass_fds=pass_fds, own_group=False, recorder=recorder
        )
        self._tree: set[int] = set()

    def wait(self, timeout: float | None = None) -> int:
        """The exit code, once what sdready sent before exiting is recorded too: it sends its
        last STATUS just before it exits, and the recorder reads in a thread of its own."""
        code = super().wait(timeout)
        assert Notifier(self.recorder.address).barrier(5), "the recorder did not answer"
        return code

    def messages(self) -> list[NotifyMessage]:
        """What this run sent (the recorder may be shared by concurrent runs)."""
        return [m for m in self.recorder.messages if m.pid == self.pid]

    def wait_for(self, name: str, timeout: float = 10.0) -> NotifyMessage:
        """The first message from this run carrying field *name* (or ``NAME=value``)."""
        key, _, value = name.partition("=")

        def mine(message: NotifyMessage) -> bool:
            if message.pid != self.pid or key not in message:
                return False
            return not value or message[key] == value

        try:
            return self.recorder.wait_for(mine, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- output:\n{self.output()}") from None

    def statuses(self) -> list[str]:
        return [m["STATUS"] for m in self.messages() if "STATUS" in m]

    def ready_messages(self) -> list[NotifyMessage]:
        return [m for m in self.messages() if m.get("READY") == "1"]

    def children(self) -> list[int]:
        """The command's process tree (remembered for cleanup)."""
        tree = process_tree(self.pid)[1:]
        self._tree.update(tree)
        return tree

    def child_pid(self, timeout: float = 5.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            tree = self.children()
            if tree:
                return tree[0]
            assert time.monotonic() < deadline, f"no child of sdready appeared\n{self.output()}"
            time.sleep(0.01)

    def signal(self, signum: int) -> None:
        self.children()
        super().signal(signum)

    def output(self, tail: int | None = 4000) -> str:
        return super().output(tail)

    def wait_output(self, text: str, timeout: float = 10.0) -> str:
        """The output once it holds *text*: sdready logs a line just after the message it
        describes went out, so a test that saw the message may read the log a moment early."""
        deadline = time.monotonic() + timeout
        while text not in (output := self.output(None)):
            assert time.monotonic() < deadline, f"{text!r} not logged:\n{output[-4000:]}"
            time.sleep(0.01)
        return output

    def cleanup(self) -> None:
        if self.process.poll() is None:
            self.children()
        self.close()  # SIGTERM to sdready (it forwards), SIGKILL after 5 s
        for pid in self._tree:  # anything that outlived sdready (it never should)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def sdready_run(
    recorder: NotifyRecorder,
    *args: str,
    log: Path,
    env: Mapping[str, str] | None = None,
    pass_fds: Sequence[int] = (),
    prefix: Sequence[str] = (),
) -> Iterator[Run]:
    """Start ``sdready ARGS`` with ``NOTIFY_SOCKET`` pointing at *recorder*; clean up after.

    *prefix* runs before it (e.g. a shell that sets ``LISTEN_PID=$$``).
    """
    environment = child_env(env, notify=recorder)
    run = Run([*prefix, *SDREADY, *args], recorder, env=environment, log=log, pass_fds=pass_fds)
    try:
        yield run
    finally:
        run.cleanup()
