"""Cost per STATUS notification: sdready vs sdnotify, systemd-python and systemd-notify.

Every sender targets the same receiver: a separate process draining an AF_UNIX datagram
socket as fast as it can, so the (small, net.unix.max_dgram_qlen) queue never decides the
result. The receiver counts what arrived, and the table says if anything was lost.

Run: ``python benchmarks/notify_bench.py [--quick]``. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

RECEIVER = r"""
import os, socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
sock.bind(sys.argv[1])
buf = bytearray(8192)
count = 0
sys.stdout.write("ready\n"); sys.stdout.flush()
while True:
    n = sock.recv_into(buf)
    if buf[:4] == b"QUIT":
        break
    count += 1
sys.stdout.write(f"{count}\n"); sys.stdout.flush()
"""


# The receiver must outrun every sender, or the benchmark measures back-pressure from the
# kernel's tiny datagram queue instead of the sender: a C loop draining with recvmmsg.
RECEIVER_C = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
int main(int argc, char **argv) {
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strncpy(sa.sun_path, argv[1], sizeof(sa.sun_path) - 1);
    int size = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("bind"); return 1; }
    static char bufs[64][4097];
    struct mmsghdr msgs[64];
    struct iovec iov[64];
    long count = 0;
    printf("ready\n"); fflush(stdout);
    for (;;) {
        for (int i = 0; i < 64; i++) {
            iov[i].iov_base = bufs[i]; iov[i].iov_len = 4096;
            memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
            msgs[i].msg_hdr.msg_iov = &iov[i]; msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(fd, msgs, 64, MSG_WAITFORONE, NULL);
        for (int i = 0; i < n; i++) {
            if (msgs[i].msg_len >= 4 && memcmp(bufs[i], "QUIT", 4) == 0) {
                printf("%ld\n", count); return 0;
            }
            count++;
        }
    }
}
"""


def _receiver_command(path: str, tmp: str) -> tuple[list[str], str]:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler:
        source = os.path.join(tmp, "receiver.c")
        binary = os.path.join(tmp, "receiver")
        with open(source, "w") as handle:
            handle.write(RECEIVER_C)
        built = subprocess.run(
            [compiler, "-O2", "-o", binary, source], capture_output=True, check=False
        )
        if built.returncode == 0:
            return [binary, path], "C recvmmsg loop"
    return [sys.executable, "-c", RECEIVER, path], "Python loop (no C compiler)"


class Receiver:
    def __init__(self, path: str, tmp: str) -> None:
        self.path = path
        command, self.kind = _receiver_command(path, tmp)
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
            # Sender on CPU 0, receiver on the rest: they never fight for one core.
            os.sched_setaffinity(self.proc.pid, set(range(1, os.cpu_count() or 2)))
            os.sched_setaffinity(0, {0})
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> int:
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"QUIT", self.path)
        out, _ = self.proc.communicate(timeout=30)
        return int(out.strip().splitlines()[-1])


def senders(address: str) -> dict[str, tuple[Callable[[], object], str]]:
    os.environ["NOTIFY_SOCKET"] = address
    found: dict[str, tuple[Callable[[], object], str]] = {}

    import sdready

    notifier = sdready.Notifier(address)
    found["sdready Notifier.status()"] = (lambda: notifier.status("x"), "persistent socket")
    found["sdready.status() (module)"] = (
        lambda: sdready.status("x"),
        "reads NOTIFY_SOCKET per call",
    )
    try:
        from sdnotify import SystemdNotifier

        sdn = SystemdNotifier()
        found["sdnotify SystemdNotifier.notify"] = (lambda: sdn.notify("STATUS=x"), "pure Python")
    except ImportError:
        pass
    try:
        from systemd import daemon

        found["systemd-python daemon.notify"] = (
            lambda: daemon.notify("STATUS=x"),
            "C, libsystemd sd_notify (socket per call)",
        )
    except ImportError:
        pass
    tool = shutil.which("systemd-notify")
    if tool:
        found["spawn systemd-notify"] = (
            lambda: subprocess.run([tool, "--no-block", "--status=x"], check=False),
            "a process per message",
        )
    return found


def measure(call: Callable[[], object], count: int, rounds: int) -> list[float]:
    per_call = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        for _ in range(count):
            call()
        per_call.append((time.perf_counter_ns() - started) / count / 1000)
    return per_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    args = parser.parse_args()
    count, rounds, spawn_count = (2_000, 5, 25) if args.quick else (10_000, 21, 210)

    tmp = tempfile.mkdtemp(prefix="sdready-bench-")
    address = os.path.join(tmp, "notify.sock")
    receiver = Receiver(address, tmp)
    results: list[tuple[str, float, float, str]] = []
    sent = 0
    try:
        found = senders(address)
        timings: dict[str, list[float]] = {name: [] for name in found}
        for name, (call, _) in found.items():  # warm-up
            for _ in range(20 if name.startswith("spawn") else 500):
                call()
                sent += 1
        # Interleaved rounds: a noisy neighbour slows every sender alike, and "best" is fair.
        for _ in range(rounds):
            for name, (call, _) in found.items():
                n = spawn_count // rounds or 1 if name.startswith("spawn") else count
                timings[name].extend(measure(call, n, 1))
                sent += n
        for name, (_, note) in found.items():
            results.append((name, min(timings[name]), statistics.median(timings[name]), note))
    finally:
        received = receiver.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    baseline = next((r[2] for r in results if r[0].startswith("sdready Notifier")), 1.0)
    print(
        f"## Notify cost per STATUS call ({platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()})\n"
    )
    print("| sender | best µs/call | median µs/call | median vs sdready | note |")
    print("|---|---:|---:|---:|---|")
    for name, best, median, note in results:
        print(f"| {name} | {best:.2f} | {median:.2f} | {median / baseline:.2f}x | {note} |")
    print(f"\nreceiver: {receiver.kind}, on its own CPU")
    print(
        f"receiver got {received} of {sent} datagrams sent"
        + (" (none lost)" if received == sent else "")
    )


if __name__ == "__main__":
    main()
