"""``python -m sdready`` and the ``sdready`` console script (see :mod:`sdready._cli`)."""

from __future__ import annotations

import sys


def main() -> int:
    """Run the ``sdready`` command line with ``sys.argv``; return the exit status."""
    if sys.argv[1:2] in (["notify"], ["exec"]):
        # Scripts call notify at every step, and exec stands before the server's start:
        # their common forms skip argparse and logging (see _cli_fast).
        from ._cli_fast import main as fast

        code = fast(sys.argv[1:])
        if code is not None:
            return code
    from ._cli import main as run  # only the command pays for argparse and friends

    return run()


if __name__ == "__main__":
    sys.exit(main())
