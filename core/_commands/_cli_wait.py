"""``sdready wait-listen``: wait until the expected listening sockets exist, send nothing.

The command's logic, with two drivers, as for ``notify``: :mod:`._cli` (argparse: every
form of the command line) and :func:`fast_main`, which :mod:`.__main__` tries first. Run once per
service start (``ExecStartPost=sdready wait-listen --pid $MAINPID ...``), so it too must
start about as fast as the interpreter: nothing on this path imports typing, logging,
dataclasses or the socket module (see ``benchmarks/cli_startup.py``).
"""

import time

from .. import texts
from .._cstd import TYPE_CHECKING
from .._listen._proctree import TreeListeners, alive, namespace_listeners
from .._listen._wait import ListenTimeoutError, _Wait
from .._log import logger, stderr_log
from .._values import DEFAULT_PROBE_TIMEOUT, DEFAULT_READY_TIMEOUT
from ._cli_fast import duration_of, expect_of, last, log_level, probe_of, read

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._listen._proctree import Method
    from .._listen._sockets import Listener

__all__ = ["EXIT_OK", "EXIT_TIMEOUT", "fast_main", "wait_listen"]

EXIT_OK = 0
EXIT_TIMEOUT = 1  # timed out, or the process exited (or never existed)

_FLAGS = {"-q": "quiet", "--quiet": "quiet", "-v": "verbose", "--verbose": "verbose"}
_VALUES = {"--expect": "expect", "--probe": "probe", "--timeout": "timeout", "--pid": "pid"}


def wait_listen(
    expect: list[int | str] | None,
    *,
    pid: int | None,
    timeout: float,
    probe: str | None,
    method: "Method" = "auto",
) -> int:
    """Wait for *expect* (in *pid*'s tree, else anywhere in this network namespace); log
    the outcome and return the exit status. Without *pid*, *expect* must be given, and
    *method* counts only as ``"proc"`` (the tables) or not."""
    watch: TreeListeners | None = None
    source: Callable[[], list[Listener]]
    if pid is None:
        assert expect is not None, "the drivers refuse a wait for anything, anywhere"

        def source() -> "list[Listener]":
            # "proc": the /proc/net tables even where netlink answers. There a unix
            # listener is asked by a connection: only those the wait looks for.
            return namespace_listeners(tables=method == "proc", wanted=waiter.wanted)
    else:
        if not alive(pid):
            logger.error("pid %d does not exist", pid)
            return EXIT_TIMEOUT
        watch = TreeListeners(pid, method)
        source = watch
    waiter = _Wait(timeout, expect, None, probe, DEFAULT_PROBE_TIMEOUT, source=source)
    try:
        try:
            selected = waiter.run_blocking(proceed=None if pid is None else lambda: alive(pid))
        except ListenTimeoutError as exc:
            logger.error("%s", exc if pid is not None else _awaited_only(exc, waiter))
            return EXIT_TIMEOUT
        if selected is None:
            logger.error("pid %d exited before listening", pid)
            return EXIT_TIMEOUT
        logger.info(
            "listening on %s after %.0f ms",
            texts.format_addresses(selected),
            (time.monotonic() - waiter.started) * 1000,
        )
        return EXIT_OK
    finally:
        if watch is not None:
            watch.close()


def _awaited_only(exc: ListenTimeoutError, waiter: _Wait) -> str:
    """The timeout without a --pid: the namespace's other listeners (other programs') are
    left out; only the awaited ones that do listen are named."""
    expectations = waiter.expectations or ()
    awaited = [item for item in exc.found if any(e.matches(item) for e in expectations)]
    text = f"timed out after {waiter.timeout:g} s waiting for listening sockets: "
    if exc.missing:
        text += f"expected but not found: {'; '.join(exc.missing)}"
        return text + (f"; found: {texts.format_addresses(awaited)}" if awaited else "")
    return text + (
        f"found {texts.format_addresses(awaited)}, but probe {waiter.probe} failed: "
        f"{exc.probe_failure}"
    )


def fast_main(argv: list[str]) -> int | None:
    """Run ``sdready wait-listen`` with *argv* (after ``wait-listen``) if it takes no
    detour; None: the full command line must run it (a form left to argparse, such as
    ``--pid parent`` or ``--discovery``, or a usage error)."""
    parsed = read(argv, _FLAGS, _VALUES)
    if parsed is None or parsed[1]:
        return None
    found = parsed[0]
    pid_text = last(found, "pid")
    if pid_text is not None and not (pid_text.isdigit() and int(pid_text) > 0):
        return None  # 'parent', 'self' or a mistake: argparse's type decides
    pid = None if pid_text is None else int(pid_text)
    try:
        expect = expect_of(found)
        probe = probe_of(found)
        timeout = duration_of(found, "timeout")
    except ValueError:
        return None
    if pid is None and expect is None:
        return None  # the full command says what is missing
    with stderr_log("wait-listen", log_level(found)):
        return wait_listen(
            expect,
            pid=pid,
            timeout=DEFAULT_READY_TIMEOUT if timeout is None else timeout,
            probe=probe,
        )
