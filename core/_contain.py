"""Never hurt the host app: our failures contained, its own signals and errors intact.

Two helpers every front end uses: :func:`contained` logs and swallows sdready's own
failures (the app's exceptions are never ours to catch), and :func:`chain_signal` runs our
part of a signal before whatever handled it already, which then runs exactly as without us.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from types import FrameType

from ._log import logger

__all__ = ["chain_signal", "contained", "die_of", "pass_on"]

SignalHandler = Callable[[int, "FrameType | None"], object]


@contextlib.contextmanager
def contained(what: str, *, allow: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Log and swallow sdready's own failures in the block: notifying must never break the app.

    Exceptions of the *allow* types propagate (a bad option must stop a server's start).
    """
    try:
        yield
    except allow:
        raise
    except Exception:
        logger.exception("sdready: %s failed; the app is unaffected", what)


def chain_signal(
    signum: int, ours: Callable[[int], object], *, only_default: bool = False
) -> Callable[[], None] | None:
    """Run ``ours(signum)`` when *signum* arrives, then the handler that was there before.

    A previous Python handler runs with its arguments and errors intact; the default
    action is carried out as without us (the process dies of the signal); an ignored signal
    stays ignored. ``ours`` runs only in the process that chained it (a forked child
    inherits the handler) and contained. With ``only_default`` nothing is chained unless the
    outcome is known: the default action, or Python's KeyboardInterrupt (another handler
    may not stop the process at all). Returns a function that undoes the chaining (unless
    another handler replaced ours since), or None when nothing was chained. Main thread only.
    """
    previous = signal.getsignal(signum)
    if only_default and previous not in (signal.SIG_DFL, signal.default_int_handler):
        logger.debug("not chaining %s: its handler is %r", signal.Signals(signum).name, previous)
        return None
    pid = os.getpid()

    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() == pid:
            with contained(f"handling {signal.Signals(signum).name}"):
                ours(signum)
        pass_on(previous, signum, frame)

    signal.signal(signum, handler)

    def unchain() -> None:
        if signal.getsignal(signum) is handler:
            signal.signal(signum, previous)

    return unchain


def pass_on(previous: object, signum: int, frame: FrameType | None) -> None:
    """Handle *signum* as *previous* (a handler :func:`signal.getsignal` returned) would:
    a Python handler runs with its arguments and errors intact, the default action ends the
    process as without us, an ignored signal stays ignored."""
    if callable(previous):
        previous(signum, frame)
    elif previous in (signal.SIG_DFL, None):
        die_of(signum)  # the default action, exactly as without us


def die_of(signum: int) -> None:
    """End this process by *signum*'s default action, as a process without handlers would:
    what systemd expects of a service it stopped (a clean stop, ``ExecMainStatus=15``)."""
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
