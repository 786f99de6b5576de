"""``python -m sdready`` and the ``sdready`` console script (see :mod:`sdready._cli`)."""

import sys


def main() -> int:
    """Run the ``sdready`` command line with ``sys.argv``; return the exit status."""
    # Scripts call notify at every step; exec and wait-listen stand in a service's start:
    # their common forms skip argparse and logging (see _cli_fast).
    command, argv = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    code: int | None = None
    if command == "notify":
        from ._cli_notify import fast_main

        code = fast_main(argv)
    elif command == "exec":
        from ._cli_exec import fast_main

        code = fast_main(argv)
    elif command == "wait-listen":
        from ._cli_wait import fast_main

        code = fast_main(argv)
    if code is not None:
        return code
    from ._cli import main as run  # only the command pays for argparse and friends

    return run()


if __name__ == "__main__":
    sys.exit(main())
