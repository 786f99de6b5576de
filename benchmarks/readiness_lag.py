"""Readiness lag per server: from the server's first ``listen()`` to READY at the recorder.

Each start is a fresh server process (as under systemd) with ``NOTIFY_SOCKET`` pointing at
a NotifyRecorder in this process. A ``sitecustomize`` on the child's path wraps
``socket.socket.listen`` to append a CLOCK_MONOTONIC timestamp to a file, the same clock
the recorder stamps messages with, so the lag needs no clock alignment. uvicorn's lag is
measured by ``asgi_overhead.py`` (200 starts in one process).

What the lag means differs by design: for waitress, hypercorn and ``sdready exec`` it is
detection latency; for gunicorn it includes a worker loading the app, because the
arbiter listens first and READY waits until a worker can serve.

Run: ``python benchmarks/readiness_lag.py [--quick] [--starts N]``. Prints a markdown table;
samples also go to ``$SDREADY_BENCH_LAG_FILE`` (see run_all.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from sdready.testing import NotifyRecorder

SITECUSTOMIZE = """
import os, socket, time
_path = os.environ.get("SDREADY_LAG_LISTEN_FILE")
if _path:
    _listen = socket.socket.listen

    def listen(self, *args):
        # Stamped just before the syscall: a waiter thread may send READY before this
        # thread runs again, so a later stamp could come after READY. The lag measured is
        # thus at most a few microseconds too long, never too short.
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        _listen(self, *args)
        with open(_path, "a") as handle:
            handle.write(f"{before}\\n")

    socket.socket.listen = listen
"""

APPS = """
from flask import Flask

from sdready.plugins.asgi import SystemdMiddleware
from sdready.plugins.flask import SystemdNotify

flask_app = Flask(__name__)
SystemdNotify(flask_app)


@flask_app.get("/")
def home():
    return "ok"


async def _asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


asgi_app = SystemdMiddleware(_asgi)
"""

WAITRESS = "import waitress, apps; waitress.serve(apps.flask_app, host='127.0.0.1', port=0)"


def servers(python: str, bindir: str) -> dict[str, list[str]]:
    return {
        "waitress + Flask": [python, "-c", WAITRESS],
        "hypercorn + middleware": [
            os.path.join(bindir, "hypercorn"),
            "--bind",
            "127.0.0.1:0",
            "apps:asgi_app",
        ],
        "gunicorn sync + plugin": [
            os.path.join(bindir, "gunicorn"),
            "-c",
            "python:sdready.plugins.gunicorn",
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--no-control-socket",
            "apps:flask_app",
        ],
        "sdready exec + http.server": [
            os.path.join(bindir, "sdready"),
            "exec",
            "--",
            python,
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "0",
        ],
    }


def one_start(command: list[str], workdir: Path, recorder: NotifyRecorder) -> float | None:
    stamps = workdir / "listen.txt"
    stamps.unlink(missing_ok=True)
    env = {
        **os.environ,
        "NOTIFY_SOCKET": recorder.address,
        "SDREADY_LAG_LISTEN_FILE": str(stamps),
        "PYTHONPATH": os.pathsep.join([str(workdir), os.environ.get("PYTHONPATH", "")]),
    }
    since = len(recorder.messages)
    proc = subprocess.Popen(
        command,
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ready = recorder.wait_for("READY=1", timeout=30, since=since)
        # READY may beat the child's write of its timestamp.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            lines = stamps.read_text().split() if stamps.exists() else []
            if lines:
                return (ready.time * 1e9 - int(lines[0])) / 1e6
            time.sleep(0.005)
        return None
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5 starts per server")
    parser.add_argument("--starts", type=int, default=40, help="starts per server (max 500)")
    args = parser.parse_args()
    starts = 5 if args.quick else max(1, min(args.starts, 500))
    bindir = os.path.dirname(sys.executable)
    workdir = Path(tempfile.mkdtemp(prefix="sdready-lag-"))
    (workdir / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    (workdir / "apps.py").write_text(APPS)
    lag_file = os.environ.get("SDREADY_BENCH_LAG_FILE")
    rows = []
    try:
        with NotifyRecorder(set_environment=False) as recorder:
            for name, command in servers(sys.executable, bindir).items():
                if not os.path.exists(command[0]):
                    rows.append(f"| {name} | (not installed) | | | | |")
                    continue
                lags = [
                    lag
                    for lag in (one_start(command, workdir, recorder) for _ in range(starts))
                    if lag is not None
                ]
                if lag_file:
                    with open(lag_file, "a") as handle:
                        for lag in lags:
                            handle.write(json.dumps({"server": name, "lag_ms": lag}) + "\n")
                cells = [statistics.median(lags), *(percentile(lags, q) for q in (0.9, 0.99))]
                figures = " | ".join(f"{value:.2f}" for value in [*cells, max(lags)])
                rows.append(f"| {name} | {len(lags)} | {figures} |")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"### Readiness lag per server: first listen() to READY ({starts} starts, ms)\n")
    print("| server | starts | p50 | p90 | p99 | max |")
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(
        "\ngunicorn: the arbiter listens first; READY waits until a worker has loaded the app "
        "and can serve, so its lag is the worker's boot, by design."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
