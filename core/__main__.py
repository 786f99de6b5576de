"""``python -m sdready`` and the ``sdready`` console script (see :mod:`sdready._cli`)."""

from __future__ import annotations

import sys


def main() -> int:
    """Run the ``sdready`` command line with ``sys.argv``; return the exit status."""
    from ._cli import main as run  # only the command pays for argparse and friends

    return run()


if __name__ == "__main__":
    sys.exit(main())
