"""sdready's process-wide state, known in one place: every test starts as a new process would.

A few module globals live as long as the process: memories of what was logged once, the
engine that decides ``progress()``, the sockets systemd passed, a plugin's one waiter per
process, kernel probes asked once. A test that left one behind would change what the next
test sees, so no test resets them by hand: ``conftest.py``'s autouse fixture gives each test
the state a fresh process has (``fresh``) and puts the process's own back afterwards, and a
test that needs another value (netlink refused) asks :class:`ProcessState` for it.

Entries whose ``fresh`` is None are facts of this process (a kernel probe, a pid-keyed cache,
the default notifier that follows ``NOTIFY_SOCKET``): kept as they are, restored only if a
test changed them. ``LEFT_OUT`` names the rest and why resetting them would do harm.
tests/test_process_state.py checks that every module global of core/ and plugins/ that is
process-wide state is in one of the two.

A module not imported yet is left alone: its import will give it the fresh state.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NamedTuple


class Global(NamedTuple):
    module: str
    name: str
    fresh: Callable[[], object] | None  # what a new process holds; None: kept as it is
    why: str


def _passed() -> object:
    from sdready._listen._activation import _Passed

    return _Passed()


STATE = (
    Global(
        "sdready._notify._protocol", "_unknown_logged", set, "an unknown field name is logged once"
    ),
    Global(
        "sdready._listen._proctables", "_warned", set, "a doubtful /proc/net line is warned once"
    ),
    Global("sdready._engine._progress", "_engines", dict, "progress() goes to the last engine"),
    Global("sdready._engine._progress", "_relays", dict, "progress() goes to a worker's relay"),
    Global(
        "sdready._listen._activation",
        "_passed",
        _passed,
        "LISTEN_FDS taken once; store warned once",
    ),
    Global(
        "sdready._engine._selfcheck", "_CONTAINER_SAID", list, "the container WARNING is said once"
    ),
    Global("sdready.plugins.flask", "_process", lambda: None, "one waiter per process"),
    Global("sdready.plugins.flask", "_gunicorn_hint_logged", lambda: False, "a hint logged once"),
    Global("sdready.plugins.django._process", "_waiter", lambda: None, "one waiter per process"),
    Global("sdready.plugins.django._process", "_lifespan", lambda: False, "its lifespan reports"),
    Global("sdready.plugins.gunicorn._keep", "_kept", set, "arbiters by id: ids are reused"),
    Global("sdready._listen._proctree", "_diag_support", None, "netlink sock_diag probed once"),
    Global("sdready._listen._proctree", "_support", None, "pidfd_getfd probed once"),
    Global("sdready._listen._proctree", "_syscall", None, "the syscall() found by that probe"),
    Global("sdready._env", "_own_pidfd_id", None, "this pid's pidfd id, asked once"),
    Global("sdready._listen._listeners", "_shared_walker", None, "socket facts cached by inode"),
    Global("sdready._notify._notifier", "_default", None, "follows NOTIFY_SOCKET by itself"),
    Global("sdready._log", "_sink", None, "the running command's log"),
    Global("sdready._log", "_real_logger", None, "logging's sdready logger, found once"),
)

#: Process-wide, but never reset: each holds live objects a reset would orphan.
LEFT_OUT = {
    ("sdready._notify._notifier", "_live"): "every notifier, weakly, for the fork handler",
    ("sdready._notify._retry", "_started"): "every retry queue with a thread, for the exit flush",
    ("sdready._units._unitcheck", "_held"): "the unit check's claim, held for the process's life",
    (
        "sdready._engine._selfcheck",
        "_STARTED",
    ): "one unit check thread per process, already running",
    ("sdready.plugins.gunicorn._arbiter", "arbiter"): "imported by name; gunicorn's process only",
    ("sdready.plugins.gunicorn._worker", "_worker"): "gunicorn's worker processes only",
}

_KNOWN = {(item.module, item.name) for item in STATE}


class ProcessState:
    """The process-wide globals of one test: fresh at its start, the process's own after it."""

    def __init__(self) -> None:
        self._saved: dict[tuple[str, str], object] = {}

    def start(self) -> None:
        for item in STATE:
            if item.fresh is not None and item.module in sys.modules:
                self._set(item.module, item.name, item.fresh())

    def restore(self) -> None:
        for (module, name), value in self._saved.items():
            setattr(sys.modules[module], name, value)
        self._saved.clear()

    def refuse_netlink(self) -> None:
        """From now on sock_diag answers as where netlink is refused (a container's seccomp)."""
        import sdready._listen._proctree  # noqa: F401  (the cache lives there)

        self._set(
            "sdready._listen._proctree", "_diag_support", (False, "netlink refused by the test")
        )

    def _set(self, module: str, name: str, value: object) -> None:
        assert (module, name) in _KNOWN, f"{module}.{name} is not in tests/_state.py's STATE"
        target = sys.modules[module]
        self._saved.setdefault((module, name), getattr(target, name))
        setattr(target, name, value)
