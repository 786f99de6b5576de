"""Readiness lag per server: from the server's first ``listen()`` to READY at the recorder.

Each start is a fresh server process (as under systemd) with ``NOTIFY_SOCKET`` pointing at
a NotifyRecorder in this process. A ``sitecustomize`` on the child's path wraps
``socket.socket.listen`` to append a CLOCK_MONOTONIC timestamp to a file, the same clock
the recorder stamps messages with, so the lag needs no clock alignment. uvicorn's lag is
measured by ``asgi_overhead.py`` (200 starts in one process).

What the lag means differs by design: for waitress, hypercorn and ``sdready exec`` it is
detection latency; for gunicorn it includes a worker loading the app, because the
arbiter listens first and READY waits until a worker can serve. So gunicorn is measured
a second way, from the moment its one worker can serve to READY: the lag sdready adds.
That moment is stamped by the config's own ``post_worker_init`` (sync worker; it runs
after sdready's, at the end of gunicorn's hook chain) or by the app, once the server has
taken its ``lifespan.startup.complete`` (ASGI workers). A negative lag would mean READY
came before the worker could serve. Target (issue 16): p99 <= 5 ms.

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


def stamp_serving():
    # The moment a gunicorn worker can serve (see the module docstring).
    with open(os.environ["SDREADY_LAG_SERVE_FILE"], "a") as handle:
        handle.write(f"{time.clock_gettime_ns(time.CLOCK_MONOTONIC)}\\n")


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
import sitecustomize
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


async def serving_asgi(scope, receive, send):
    # For gunicorn's ASGI workers, whose plugin observes lifespan itself.
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.startup":
                sitecustomize.stamp_serving()  # the server has the startup's completion
            if message["type"] == "lifespan.shutdown":
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""

GUNICORN_CONF = """
import os, sitecustomize
from sdready.plugins.gunicorn import install


def post_worker_init(worker):
    if os.environ.get("SDREADY_LAG_SERVE_FROM") == "hook":  # WSGI: serving after the hooks
        sitecustomize.stamp_serving()


install(globals())  # sdready's hooks run first, this one after
"""

WAITRESS = "import waitress, apps; waitress.serve(apps.flask_app, host='127.0.0.1', port=0)"
#: P99 target of the lag from "a gunicorn worker can serve" to READY, ms (issue 16).
SERVE_TARGET = 5.0


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


def gunicorn_serving(bindir: str) -> dict[str, tuple[list[str], str]]:
    """gunicorn runs measured from "the worker can serve": (command, who stamps it)."""
    gunicorn = [
        os.path.join(bindir, "gunicorn"),
        "-c",
        "python:gunicorn_conf",
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--no-control-socket",
    ]
    return {
        "gunicorn sync + plugin": ([*gunicorn, "apps:flask_app"], "hook"),
        "gunicorn asgi worker + plugin": ([*gunicorn, "-k", "asgi", "apps:serving_asgi"], "app"),
        "gunicorn + UvicornWorker + plugin": (
            [*gunicorn, "-k", "uvicorn_worker.UvicornWorker", "apps:serving_asgi"],
            "app",
        ),
    }


def one_start(
    command: list[str],
    workdir: Path,
    recorder: NotifyRecorder,
    *,
    since_stamp: str = "listen.txt",
    serve_from: str = "",
) -> float | None:
    """READY minus the first stamp in *since_stamp*: ``listen.txt`` (the first listen())
    or ``serve.txt`` (a gunicorn worker can serve; *serve_from*: ``hook`` or ``app``)."""
    stamps = workdir / since_stamp
    for name in ("listen.txt", "serve.txt"):
        (workdir / name).unlink(missing_ok=True)
    env = {
        **os.environ,
        "NOTIFY_SOCKET": recorder.address,
        "SDREADY_LAG_LISTEN_FILE": str(workdir / "listen.txt"),
        "SDREADY_LAG_SERVE_FILE": str(workdir / "serve.txt"),
        "SDREADY_LAG_SERVE_FROM": serve_from,
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
    (workdir / "gunicorn_conf.py").write_text(GUNICORN_CONF)
    lag_file = os.environ.get("SDREADY_BENCH_LAG_FILE")
    rows = []
    serving_rows: list[tuple[str, str | None]] = []
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
            for name, (command, serve_from) in gunicorn_serving(bindir).items():
                serving_rows.append(
                    serving_row(
                        name,
                        command,
                        serve_from,
                        starts=starts,
                        workdir=workdir,
                        recorder=recorder,
                        lag_file=lag_file,
                    )
                )
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
    print(f"\n### gunicorn: the worker can serve, to READY at the recorder ({starts} starts, ms)\n")
    print(f"| server | from | starts | p50 | p90 | p99 | max | p99 <= {SERVE_TARGET:g} ms |")
    print("|---|---|---:|---:|---:|---:|---:|:---:|")
    print("\n".join(row for row, _ in serving_rows))
    print(
        "\nfrom: 'hook', the end of gunicorn's post_worker_init chain (sdready's hook runs "
        "first); 'app', once the server took the app's lifespan.startup.complete."
    )
    print("\n" + "\n".join(target for _, target in serving_rows if target))
    return 0


def serving_row(
    name: str,
    command: list[str],
    serve_from: str,
    *,
    starts: int,
    workdir: Path,
    recorder: NotifyRecorder,
    lag_file: str | None,
) -> tuple[str, str | None]:
    """The table row of one gunicorn setup, and its target line (None: not measured)."""
    if not os.path.exists(command[0]):
        return f"| {name} | {serve_from} | (not installed) | | | | | |", None
    lags = [
        lag
        for lag in (
            one_start(command, workdir, recorder, since_stamp="serve.txt", serve_from=serve_from)
            for _ in range(starts)
        )
        if lag is not None
    ]
    if not lags:
        return f"| {name} | {serve_from} | 0 (no stamp) | | | | | |", None
    if lag_file:
        with open(lag_file, "a") as handle:
            for lag in lags:
                record = {"server": f"{name}, from serving", "lag_ms": lag}
                handle.write(json.dumps(record) + "\n")
    cells = [statistics.median(lags), *(percentile(lags, q) for q in (0.9, 0.99)), max(lags)]
    p99 = percentile(lags, 0.99)
    verdict = "yes" if p99 <= SERVE_TARGET else "NO"
    figures = " | ".join(f"{value:.2f}" for value in cells)
    row = f"| {name} | {serve_from} | {len(lags)} | {figures} | {verdict} |"
    target = f"target: {name}, the worker can serve to READY, p99: {p99:.2f} ms, "
    return row, f"{target}<= {SERVE_TARGET:g} ms: {verdict}"


if __name__ == "__main__":
    sys.exit(main())
