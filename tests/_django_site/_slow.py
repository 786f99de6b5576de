"""What asgi.py and wsgi.py do once the app exists: slow startup work, a failure, a mark."""

import os
import sys
import threading
import time


def after_app() -> None:
    time.sleep(float(os.environ.get("SITE_GAP", "0")))
    if os.environ.get("SITE_FAIL") == "1":
        raise RuntimeError("simulated failure after the app was created")
    threads = ",".join(sorted(t.name for t in threading.enumerate()))
    print(f"APP_LOADED {time.monotonic()} THREADS {threads}", file=sys.stderr, flush=True)
