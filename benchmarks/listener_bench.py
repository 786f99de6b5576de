"""Cost of finding this process's listening sockets, and how fast a new listener is seen.

Prints markdown tables:

1. One walk with 10, 100 and 1,000 open descriptors (half of them sockets), while another
   process holds 2,000 established loopback connections: ``sdready.listening_sockets()``
   (steady state, and the first walk of a fresh waiter), the same with the directory listed
   every time (what kernels before 6.2 get), a straightforward fstat + dup + getsockopt walk,
   and parsing ``/proc/net/tcp`` + ``tcp6`` (whose size grows with the whole host).
2. Detection latency, from ``listen()`` in another thread to ``wait_until_listening``
   (and ``async_wait_until_listening``) returning, with the listen delayed after the wait
   began; p50/p99, and the CPU the waiting thread spent while polling.

Usage: ``python benchmarks/listener_bench.py [--quick]``. Only raises this process's
RLIMIT_NOFILE soft limit (within the hard limit); never touches sysctls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import resource
import socket
import stat
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

from sdready._listen._listeners import (
    Listener,
    _Walker,
    async_wait_until_listening,
    listening_sockets,
    wait_until_listening,
)

HOST_CONNECTIONS = 2000
FD_COUNTS = (10, 100, 1000)

_HOLDER = r"""
import resource, socket, sys
n = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * n + 64)), hard))
server = socket.create_server(("127.0.0.1", 0), backlog=n)
held = []
for _ in range(n):
    client = socket.create_connection(server.getsockname())
    held += [client, server.accept()[0]]
print("ready", flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
"""


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@contextlib.contextmanager
def host_connections(count: int) -> Iterator[None]:
    """Another process holding *count* established loopback connections (2x lines in tcp)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "ready":
            raise RuntimeError("connection holder failed")
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()


@contextlib.contextmanager
def open_descriptors(total: int) -> Iterator[None]:
    """Hold descriptors until this process has *total* open, about half of them sockets.

    Sockets: two listeners, then established TCP (both ends), unix socketpairs, UDP and
    bound-but-not-listening TCP. The rest: /dev/null, a temporary file, both ends of pipes.
    """
    held: list[socket.socket] = []
    fds: list[int] = []
    have = len(os.listdir("/proc/self/fd")) - 1
    want_sockets = max(2, (total - have) // 2)
    server = socket.create_server(("127.0.0.1", 0), backlog=total)
    unix_server = socket.socket(socket.AF_UNIX)
    unix_server.bind(f"\0sdready-bench-{os.getpid()}")
    unix_server.listen()
    held += [server, unix_server]
    kinds = ("tcp", "pair", "udp", "tcp", "pair", "bound")
    index = 0
    while len(held) < want_sockets:
        kind = kinds[index % len(kinds)]
        index += 1
        if kind == "tcp" and want_sockets - len(held) >= 2:
            client = socket.create_connection(server.getsockname())
            held += [client, server.accept()[0]]
        elif kind == "pair" and want_sockets - len(held) >= 2:
            held += list(socket.socketpair())
        elif kind == "udp":
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            held.append(udp)
        else:
            bound = socket.socket()
            bound.bind(("127.0.0.1", 0))
            held.append(bound)
    with tempfile.TemporaryFile() as scratch:
        index = 0
        while len(os.listdir("/proc/self/fd")) - 1 < total:
            slot = index % 4
            index += 1
            if slot == 3 and total - (len(os.listdir("/proc/self/fd")) - 1) >= 2:
                fds += list(os.pipe())
            elif slot == 2:
                fds.append(os.dup(scratch.fileno()))
            else:
                fds.append(os.open(os.devnull, os.O_RDONLY))
        try:
            yield
        finally:
            for fd in fds:
                os.close(fd)
            for sock in held:
                sock.close()


def straightforward_walk() -> list[tuple[int, object]]:
    """The walk a user would write: list the fds, fstat each, dup sockets and ask."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=os.dup(fd))  # family and type detected by CPython
        except OSError:
            continue
        with sock:
            if sock.type == socket.SOCK_STREAM and sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_ACCEPTCONN
            ):
                found.append((fd, sock.getsockname()))
    return found


def proc_net_tcp() -> list[tuple[str, str]]:
    """Parse /proc/net/tcp and tcp6 for LISTEN rows (state 0A): the alternative, host-wide."""
    found = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as table:
            next(table)
            for line in table:
                fields = line.split()
                if fields[3] == "0A":
                    found.append((fields[1], fields[9]))
    return found


def per_call(fn: Callable[[], object], budget: float, batches: int = 7) -> float:
    """Median over *batches* of the mean seconds per call, each batch lasting ~budget/batches."""
    began = time.perf_counter()
    fn()
    once = max(time.perf_counter() - began, 1e-7)
    per_batch = max(1, int(budget / batches / once))
    means = []
    for _ in range(batches):
        began = time.perf_counter()
        for _ in range(per_batch):
            fn()
        means.append((time.perf_counter() - began) / per_batch)
    return statistics.median(means)


def cold_walk() -> list[Listener]:
    return _Walker().walk()


def listdir_walker() -> Callable[[], list[Listener]]:
    walker = _Walker()
    walker._open_count = lambda: -1  # type: ignore[method-assign]  # as on kernels < 6.2
    return walker.walk


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs" if seconds < 1e-3 else f"{seconds * 1e3:,.2f} ms"


def walk_table(quick: bool) -> None:
    budget = 0.3 if quick else 1.5
    rows = []
    with host_connections(HOST_CONNECTIONS):
        tcp_lines = 0
        for path in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(path) as table:
                tcp_lines += sum(1 for _ in table)
        net = per_call(proc_net_tcp, budget)
        for total in FD_COUNTS:
            with open_descriptors(total):
                fds = len(os.listdir("/proc/self/fd")) - 1
                assert len(listening_sockets()) == 2
                steady = per_call(listening_sockets, budget)
                cold = per_call(cold_walk, budget)
                listdir = per_call(listdir_walker(), budget)
                plain = per_call(straightforward_walk, budget)
                rows.append((fds, steady, cold, listdir, plain))
    print(
        f"\n### One walk (another process holds {HOST_CONNECTIONS:,} loopback connections: "
        f"{tcp_lines:,} lines in /proc/net/tcp*)\n"
    )
    print(
        "| open fds | `listening_sockets()` | first walk of a waiter | listing fds every walk "
        "(kernel < 6.2) | fstat + dup + getsockopt | speedup | /proc/net/tcp parse |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for fds, steady, cold, listdir, plain in rows:
        print(
            f"| {fds:,} | {fmt_us(steady)} | {fmt_us(cold)} | {fmt_us(listdir)} | "
            f"{fmt_us(plain)} | {plain / steady:.1f}x ({plain / listdir:.1f}x) | {fmt_us(net)} |"
        )
    print(
        "\nspeedup: straightforward walk / `listening_sockets()` (in brackets: / listing fds "
        "every walk). /proc/net/tcp grows with the host's connections, the walk does not."
    )


def latency_trial(delay: float, use_async: bool) -> tuple[float, float, float]:
    """Return (detection latency, wait duration, CPU seconds the waiter used).

    Sync: the listen happens in another thread. Async: in another task on the same loop,
    as with uvicorn, which listens right after lifespan startup.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    listened_at = [0.0]

    def listen() -> None:
        listened_at[0] = time.perf_counter()
        sock.listen()

    try:
        if use_async:
            began, returned, cpu, found = asyncio.run(_async_trial(delay, listen))
        else:
            go = threading.Event()

            def listen_later() -> None:
                go.wait()
                if delay:
                    time.sleep(delay)
                listen()

            thread = threading.Thread(target=listen_later)
            thread.start()
            try:
                cpu = time.thread_time()
                began = time.perf_counter()
                go.set()
                found = wait_until_listening(delay + 5)
                returned = time.perf_counter()
                cpu = time.thread_time() - cpu
            finally:
                thread.join()
        assert [item.port for item in found] == [sock.getsockname()[1]], found
        return returned - listened_at[0], returned - began, cpu
    finally:
        sock.close()


async def _async_trial(
    delay: float, listen: Callable[[], None]
) -> tuple[float, float, float, list[Listener]]:
    async def listen_later() -> None:
        if delay:
            await asyncio.sleep(delay)
        listen()

    task = asyncio.create_task(listen_later())
    cpu = time.thread_time()
    began = time.perf_counter()
    found = await async_wait_until_listening(delay + 5)
    returned = time.perf_counter()
    cpu = time.thread_time() - cpu
    await task
    return began, returned, cpu, found


def latency_table(quick: bool) -> None:
    plans = [
        ("sync", 0.0, 500),
        ("sync", 0.001, 500),
        ("sync", 0.05, 500),
        ("sync", 2.0, 20),
        ("async", 0.0, 200),
        ("async", 0.001, 200),
        ("async", 0.05, 200),
    ]
    print(
        "\n### Detection latency: `listen()` → the wait returns "
        "(sync: listen in another thread; async: in another task on the same loop)\n"
    )
    print("| waiter | listen delayed by | trials | p50 | p99 | max | waiter CPU while waiting |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for _ in range(5):  # warm up: imports, caches, the first thread
        latency_trial(0.0, use_async=False)
    for kind, delay, planned in plans:
        trials = (max(5, planned // 10) if delay < 1 else 3) if quick else planned
        results = [latency_trial(delay, kind == "async") for _ in range(trials)]
        latencies = sorted(item[0] for item in results)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        cpu = sum(item[2] for item in results) / sum(item[1] for item in results)
        waiter = "`wait_until_listening`" if kind == "sync" else "`async_wait_until_listening`"
        print(
            f"| {waiter} | {delay * 1000:g} ms | {trials} | "
            f"{fmt_us(statistics.median(latencies))} | {fmt_us(p99)} | {fmt_us(latencies[-1])} | "
            f"{cpu:.1%} |"
        )
    print(
        "\nlatency is measured from just before `listen()`; the process holds ~10 descriptors. "
        "The 2 s case uses fewer trials to keep the run short. CPU: the waiting thread's CPU "
        "time over the wait's duration (for the short waits it is mostly the first walk and "
        "the 2 ms burst of polls)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    args = parser.parse_args()
    raise_fd_limit(2 * HOST_CONNECTIONS + 2 * max(FD_COUNTS) + 256)
    print(
        f"## listener_bench: Python {platform.python_version()}, Linux {platform.release()}, "
        f"{os.cpu_count()} CPUs{' (quick)' if args.quick else ''}"
    )
    # Latency first: tearing down thousands of sockets leaves the kernel busy for a while.
    latency_table(args.quick)
    walk_table(args.quick)


if __name__ == "__main__":
    main()
