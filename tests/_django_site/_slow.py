"""What asgi.py and wsgi.py do once the app exists: slow startup work, a failure, a mark."""

import os
import sys
import time


def after_app() -> None:
    time.sleep(float(os.environ.get("SITE_GAP", "0")))
    if os.environ.get("SITE_FAIL") == "1":
        raise RuntimeError("simulated failure after the app was created")
    print(f"APP_LOADED {time.monotonic()}", file=sys.stderr, flush=True)
