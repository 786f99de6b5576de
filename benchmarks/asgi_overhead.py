"""What the ASGI plugins cost under uvicorn: requests per second, and readiness lag.

1. Throughput. A minimal ASGI app and a FastAPI app, each plain, with
   ``SystemdMiddleware`` and (FastAPI) with ``SystemdNotify``, every one served by its own
   uvicorn process (``--fd``, a socket made here, ``NOTIFY_SOCKET`` set as under systemd)
   and driven from a second process over loopback: wrk (Debian's ``wrk`` package) or, when
   it is missing, a bounded Python keep-alive client. Runs are paired (plain, variant, in
   alternating order, one after the other) and the ratio is taken per pair: the machine's
   drift between pairs cancels. Target: ratio >= 0.99.
2. Readiness lag: from the server's ``listen()`` to READY arriving at a NotifyRecorder in
   this process, over 200 starts of uvicorn in one child process (a fresh ``Server`` each
   time; ``socket.listen`` records a CLOCK_MONOTONIC timestamp, shared by all processes).
   Target: p99 < 5 ms.

Run: ``python benchmarks/asgi_overhead.py [--quick]``. Prints markdown tables; lag
samples also go to ``$SDREADY_BENCH_LAG_FILE`` (see run_all.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

from sdready.testing import NotifyRecorder

APPS = textwrap.dedent(
    """
    from sdready.plugins.asgi import SystemdMiddleware


    async def raw(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


    raw_middleware = SystemdMiddleware(raw)


    def _fastapi(kind):
        from fastapi import FastAPI
        from fastapi.responses import PlainTextResponse

        app = FastAPI()

        @app.get("/", response_class=PlainTextResponse)
        async def home():
            return "ok"

        if kind == "middleware":
            app.add_middleware(SystemdMiddleware)
        elif kind == "notify":
            from sdready.plugins.fastapi import SystemdNotify

            SystemdNotify(app)
        return app


    def __getattr__(name):
        if name.startswith("fastapi_"):
            return _fastapi(name[len("fastapi_"):])
        raise AttributeError(name)
    """
)

# The child for the lag measurement: N uvicorn starts in one process. It reports each
# listen() on one pipe and waits for our go-ahead on another before stopping that server.
LAG_CHILD = textwrap.dedent(
    """
    import asyncio, os, socket, sys, time
    import uvicorn
    import apps

    report, go = int(sys.argv[3]), int(sys.argv[4])
    _listen = socket.socket.listen

    def listen(self, *args):
        _listen(self, *args)
        os.write(report, b"%d\\n" % time.monotonic_ns())

    socket.socket.listen = listen

    async def one(app):
        config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on",
                                log_level="warning", loop="asyncio", access_log=False)
        server = uvicorn.Server(config)
        loop = asyncio.get_running_loop()
        loop.add_reader(go, lambda: (os.read(go, 1), setattr(server, "should_exit", True)))
        try:
            await server.serve()
        finally:
            loop.remove_reader(go)

    app = getattr(apps, sys.argv[1])
    for _ in range(int(sys.argv[2])):
        asyncio.run(one(app))
    """
)

RPS = re.compile(r"Requests/sec:\s+([\d.]+)")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@contextlib.contextmanager
def uvicorn_server(workdir: Path, target: str, recorder: NotifyRecorder) -> Iterator[int]:
    """A uvicorn process serving ``apps:<target>`` on loopback; yields its port.

    The port is held by a bound, never-listening SO_REUSEADDR socket of ours, so nobody
    else takes it while uvicorn (also SO_REUSEADDR) binds it. Not ``--fd``: uvicorn wraps
    that fd as AF_UNIX, so asyncio skips TCP_NODELAY and Nagle caps it near 25 req/s per
    connection.
    """
    guard = socket.socket()
    guard.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    guard.bind(("127.0.0.1", 0))
    port = guard.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(workdir), "NOTIFY_SOCKET": recorder.address}
    command = [
        sys.executable, "-m", "uvicorn", f"apps:{target}", "--host", "127.0.0.1",
        "--port", str(port), "--log-level", "warning", "--no-access-log", "--lifespan", "on",
    ]  # fmt: skip
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        command = ["taskset", "-c", "0", *command]  # the client gets the other CPU
    process = subprocess.Popen(
        command,
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_answering(port, 30)
        yield port
    finally:
        guard.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def _wait_answering(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if c.recv(64).startswith(b"HTTP/1.1 200"):
                return
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not answer within {timeout} s")


def load(port: int, seconds: float, connections: int) -> float:
    """Requests per second against 127.0.0.1:port, from a separate process."""
    wrk = shutil.which("wrk")
    if wrk is not None:
        command = [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", f"http://127.0.0.1:{port}/"]
        if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
            command = ["taskset", "-c", "1", *command]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 30, check=True
        )
        match = RPS.search(result.stdout)
        if match is None:
            raise RuntimeError(f"cannot read wrk's output: {result.stdout}")
        return float(match.group(1))
    result = subprocess.run(
        [sys.executable, "-c", PY_CLIENT, str(port), str(seconds), str(connections)],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    )
    return float(result.stdout)


# Fallback load generator: keep-alive connections, one thread each, bounded in time.
PY_CLIENT = textwrap.dedent(
    """
    import http.client, sys, threading, time
    port, seconds, connections = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    counts = [0] * connections
    deadline = time.monotonic() + seconds
    def worker(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        while time.monotonic() < deadline:
            conn.request("GET", "/")
            conn.getresponse().read()
            counts[i] += 1
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    started = time.monotonic()
    for t in threads: t.start()
    for t in threads: t.join()
    print(sum(counts) / (time.monotonic() - started))
    """
)


def throughput(workdir: Path, rounds: int, seconds: float) -> str:
    # (app, the plain server's target, [(row label, target)]); the A/A row runs a second,
    # identical plain server: its ratio shows how finely this machine can measure at all.
    groups = [
        (
            "minimal ASGI",
            "raw",
            [("none, 2nd process (A/A)", "raw"), ("SystemdMiddleware", "raw_middleware")],
        ),
        (
            "FastAPI",
            "fastapi_plain",
            [
                ("none, 2nd process (A/A)", "fastapi_plain"),
                ("add_middleware(SystemdMiddleware)", "fastapi_middleware"),
                ("SystemdNotify", "fastapi_notify"),
            ],
        ),
    ]
    connections = 16
    rows = []
    with NotifyRecorder(set_environment=False) as recorder:
        for app, plain, variants in groups:
            with contextlib.ExitStack() as stack:
                servers = [plain] + [target for _, target in variants]
                ports = [stack.enter_context(uvicorn_server(workdir, t, recorder)) for t in servers]
                for port in ports:  # warm up: first requests pay for lazy setup
                    load(port, 1, connections)
                base_rates: list[float] = []
                rates: list[list[float]] = [[] for _ in variants]
                ratios: list[list[float]] = [[] for _ in variants]
                for index in range(rounds):
                    for number in range(len(variants)):
                        pair = [ports[0], ports[number + 1]]
                        if index % 2:
                            pair.reverse()  # alternate who goes first
                        measured = {port: load(port, seconds, connections) for port in pair}
                        base = measured[ports[0]]
                        rate = measured[ports[number + 1]]
                        base_rates.append(base)
                        rates[number].append(rate)
                        ratios[number].append(rate / base)
            rows.append(f"| {app} | none | {statistics.median(base_rates):,.0f} | | |")
            for number, (label, _) in enumerate(variants):
                ratio = statistics.median(ratios[number])
                low, high = percentile(ratios[number], 25), percentile(ratios[number], 75)
                verdict = "" if "A/A" in label else ("yes" if ratio >= 0.99 else "no")
                rows.append(
                    f"| {app} | {label} | {statistics.median(rates[number]):,.0f} "
                    f"| {ratio:.3f} ({low:.3f}–{high:.3f}) | {verdict} |"
                )
    tool = "wrk -t1 -c16" if shutil.which("wrk") else "Python keep-alive client, 16 connections"
    return "\n".join(
        [
            f"### Requests per second under uvicorn ({tool}; {rounds} paired runs of "
            f"{seconds:g} s per row; medians, interquartile range of the ratios)",
            "",
            "| app | sdready | req/s | ratio to plain | >= 0.99 |",
            "|---|---|---:|---:|:---:|",
            *rows,
        ]
    )


def per_request_cost(workdir: Path) -> str:
    """In-process: what one http request costs the middleware, against the plain app."""
    code = textwrap.dedent(
        """
        import asyncio, statistics, sys, time
        import apps
        scope = {"type": "http", "path": "/", "method": "GET", "headers": []}
        async def receive():
            return {"type": "http.request", "body": b""}
        async def send(message):
            pass
        async def timed(app, n):
            started = time.perf_counter_ns()
            for _ in range(n):
                await app(scope, receive, send)
            return (time.perf_counter_ns() - started) / n
        async def main():
            plain, wrapped = [], []
            for _ in range(15):  # interleaved blocks; the minimum of each is the cost
                plain.append(await timed(apps.raw, 20000))
                wrapped.append(await timed(apps.raw_middleware, 20000))
            print(min(plain), min(wrapped))
        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(workdir)},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    plain_ns, wrapped_ns = map(float, result.stdout.split())
    extra = wrapped_ns - plain_ns
    lines = [
        "### Per-request cost of SystemdMiddleware, in-process (minimal ASGI app)",
        "",
        "| | ns per call | ",
        "|---|---:|",
        f"| plain app | {plain_ns:,.0f} |",
        f"| app wrapped in SystemdMiddleware | {wrapped_ns:,.0f} |",
        f"| added by the middleware | {extra:,.0f} |",
    ]
    return "\n".join(lines) + (
        f"\n\nAt 10,000 req/s (100 µs per request) {extra:,.0f} ns is "
        f"{extra / 1000:.2f} % of a request: a throughput ratio of "
        f"{1 / (1 + extra / 100_000):.4f}. SystemdNotify adds nothing per request."
    )


def readiness_lag(workdir: Path, starts: int) -> str:
    (workdir / "lag_child.py").write_text(LAG_CHILD)
    lag_file = os.environ.get("SDREADY_BENCH_LAG_FILE")
    rows = []
    for label, target in (
        ("uvicorn + SystemdMiddleware (minimal ASGI)", "raw_middleware"),
        ("uvicorn + FastAPI + SystemdNotify", "fastapi_notify"),
    ):
        lags = _lag_samples(workdir, target, starts)
        if lag_file:
            with open(lag_file, "a") as out:
                for lag in lags:
                    out.write(json.dumps({"server": label, "lag_ms": lag}) + "\n")
        p99 = percentile(lags, 99)
        rows.append(
            f"| {label} | {len(lags)} | {percentile(lags, 50):.2f} | {percentile(lags, 90):.2f} "
            f"| {p99:.2f} | {max(lags):.2f} | {'yes' if p99 < 5 else 'no'} |"
        )
    return "\n".join(
        [
            f"### Readiness lag: server's listen() to READY at the recorder ({starts} starts, ms)",
            "",
            "| server | starts | p50 | p90 | p99 | max | p99 < 5 ms |",
            "|---|---:|---:|---:|---:|---:|:---:|",
            *rows,
        ]
    )


def _lag_samples(workdir: Path, target: str, starts: int) -> list[float]:
    report_r, report_w = os.pipe()
    go_r, go_w = os.pipe()
    lags: list[float] = []
    with NotifyRecorder(set_environment=False) as recorder:
        env = {**os.environ, "PYTHONPATH": str(workdir), "NOTIFY_SOCKET": recorder.address}
        process = subprocess.Popen(
            [sys.executable, "lag_child.py", target, str(starts), str(report_w), str(go_r)],
            cwd=workdir,
            env=env,
            pass_fds=(report_w, go_r),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        os.close(report_w)
        os.close(go_r)
        reader = os.fdopen(report_r, "rb", buffering=0)
        try:
            seen = 0
            for _ in range(starts):
                listened_ns = _read_line(reader, 30)
                ready = recorder.wait_for("READY=1", 10, since=seen)
                seen = recorder.messages.index(ready) + 1
                lags.append((ready.time * 1e9 - listened_ns) / 1e6)
                os.write(go_w, b"x")
            process.wait(60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
            reader.close()
            os.close(go_w)
    return lags


def _read_line(reader: object, timeout: float) -> int:
    fileno = reader.fileno()  # type: ignore[attr-defined]
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fileno], [], [], remaining)[0]:
            raise RuntimeError("the child never reported its listen()")
        chunk = os.read(fileno, 1)
        if not chunk:
            raise RuntimeError("the child exited early")
        data += chunk
    return int(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs")
    parser.add_argument("--starts", type=int, default=None, help="starts for the lag (200)")
    parser.add_argument("--only", choices=("throughput", "lag"), help="run one half only")
    args = parser.parse_args()
    rounds, seconds = (4, 1.0) if args.quick else (15, 2.0)
    starts = args.starts or (50 if args.quick else 200)
    workdir = Path(tempfile.mkdtemp(prefix="sdready-asgi-bench-"))
    try:
        (workdir / "apps.py").write_text(APPS)
        print("## ASGI plugins (benchmarks/asgi_overhead.py)\n")
        if args.only != "lag":
            print(per_request_cost(workdir), end="\n\n", flush=True)
            print(throughput(workdir, rounds, seconds), end="\n\n", flush=True)
        if args.only != "throughput":
            print(readiness_lag(workdir, starts))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
