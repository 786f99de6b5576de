"""``sdready exec``: the command's logic, with its two drivers (as for ``notify``).

:mod:`._cli` reads every form of the command line with argparse; :func:`fast_main`, which
:mod:`.__main__` tries first, reads the common ones (no ``--listen``, ``--discovery`` or
``--help``). Both check the options with the rules :class:`~sdready.ReadyOptions` applies,
then :func:`run` spawns the command before the engine loads (see :mod:`._exec`).
"""

from .._cstd import TYPE_CHECKING
from .._log import logger, stderr_log
from ._cli_fast import Found, duration_of, expect_of, last, log_level, probe_of, read
from ._exec import SpawnError, Supervisor, exit_like

if TYPE_CHECKING:
    from .._options import ReadyKeywords

__all__ = ["fast_main", "run"]

_FLAGS = {
    "-q": "quiet",
    "--quiet": "quiet",
    "-v": "verbose",
    "--verbose": "verbose",
    "--watchdog": "watchdog",
    "--pass-notify": "pass_notify",
}
_VALUES = {
    "--expect": "expect",
    "--probe": "probe",
    "--ready-timeout": "ready_timeout",
    "--on-timeout": "on_timeout",
}


def run(supervisor: Supervisor) -> int:
    """Spawn the command, supervise it, and return the exit status to use (logged to the
    running command's log)."""
    try:
        supervisor.start()
    except SpawnError as exc:
        logger.error("cannot run %s: %s", supervisor.argv[0], exc.reason)
        return exc.code
    return exit_like(supervisor.supervise())  # the engine loads now, while the command boots


def fast_main(argv: list[str]) -> int | None:
    """Run ``sdready exec`` with *argv* (after ``exec``) if it takes no detour; None: the
    full command line must run it (a form left to argparse, or a usage error)."""
    parsed = read(argv, _FLAGS, _VALUES, remainder=True)
    if parsed is None:
        return None
    found, command = parsed
    if not command or command[0].startswith("-"):
        return None
    try:
        chosen = Supervisor(
            command, _ready_of(found), pass_notify="pass_notify" in found, method="auto"
        )
    except ValueError:
        return None  # argparse reports it
    with stderr_log("exec", log_level(found)):
        return run(chosen)


def _ready_of(found: Found) -> "ReadyKeywords":
    ready: ReadyKeywords = {
        "watchdog": "watchdog" in found,
        "probe": probe_of(found),
        "expect": expect_of(found),
    }
    timeout = duration_of(found, "ready_timeout")
    if timeout is not None:
        ready["ready_timeout"] = timeout
    policy = last(found, "on_timeout")
    if policy is not None:
        ready["on_timeout"] = policy  # type: ignore[typeddict-item]  # checked by Supervisor
    return ready
