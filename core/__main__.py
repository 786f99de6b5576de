"""``python -m sdready`` and the ``sdready`` console script (see :mod:`sdready._commands._cli`)."""

import os
import sys

from ._cstd import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import NoReturn


def main() -> int:
    """Run the ``sdready`` command line with ``sys.argv``; return the exit status."""
    # Scripts call notify at every step; exec and wait-listen stand in a service's start:
    # their common forms skip argparse and logging (see _cli_fast).
    command, argv = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    code: int | None = None
    if command == "notify":
        from ._commands._cli_notify import fast_main

        code = fast_main(argv)
    elif command == "exec":
        from ._commands._cli_exec import fast_main

        code = fast_main(argv)
    elif command == "wait-listen":
        from ._commands._cli_wait import fast_main

        code = fast_main(argv)
    if code is not None:
        return code
    from ._commands._cli import main as full_main  # only the command pays for argparse and friends

    return full_main()


def run() -> "NoReturn":
    """The console script: run :func:`main` and exit with its status.

    A command that loaded neither ``threading`` nor ``logging`` left nothing to run at exit
    (no thread to join, no ``atexit`` handler: sdready's retry queue and logging bring
    theirs with those modules), so once its output is flushed it ends with ``os._exit``:
    the interpreter's teardown (2-3 ms here) is longer than all of ``sdready notify``'s
    work, and a shell script waits for it at every step (benchmarks/cli_startup.py).
    """
    code = main()
    if "threading" not in sys.modules and "logging" not in sys.modules:
        try:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None:  # None: started with that descriptor closed
                    stream.flush()
        except OSError:  # a closed pipe: the usual exit reports it
            pass
        else:
            os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
