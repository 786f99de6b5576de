"""``python -m sdready`` and the ``sdready`` console script (see :mod:`sdready._cli`)."""

from __future__ import annotations

import sys


def main() -> int:
    """Run the ``sdready`` command line with ``sys.argv``; return the exit status."""
    if sys.argv[1:2] == ["notify"]:
        # Scripts call it at every step: its common forms skip argparse and logging.
        from ._cli_notify import fast_main

        code = fast_main(sys.argv[2:])
        if code is not None:
            return code
    from ._cli import main as run  # only the command pays for argparse and friends

    return run()


if __name__ == "__main__":
    sys.exit(main())
