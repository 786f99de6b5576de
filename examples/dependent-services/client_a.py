"""Service A: needs B. Makes one HTTP GET to B at once, with a 1 s timeout.

Exit status 0 when B answered, 1 otherwise, so systemd marks A failed when B was not
really ready. ``--timestamp`` adds the ``time.monotonic()`` of the answer (the demo puts
it on its timeline; systemd's monotonic timestamps use the same clock).
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8000/")
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--timestamp", action="store_true")
    args = parser.parse_args()
    try:
        with urllib.request.urlopen(args.url, timeout=args.timeout) as response:
            answered = time.monotonic()
            body = response.read(200).decode("utf-8", "replace")
            status = response.status
    except (urllib.error.URLError, OSError) as exc:
        failed = time.monotonic()
        # URLError wraps the socket error; its reason is what a user wants to read.
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        print(f"A: GET {args.url} failed: {reason}", file=sys.stderr)
        if args.timestamp:
            print(f"monotonic={failed:.6f}")
        return 1
    print(f"A: GET {args.url} -> HTTP {status} {body}")
    if args.timestamp:
        print(f"monotonic={answered:.6f}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
