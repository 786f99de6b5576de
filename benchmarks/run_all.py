"""Run every benchmark script and write benchmarks/RESULTS.md (+ a readiness-lag plot).

Each script prints markdown tables on stdout. Scripts that measure readiness lag (READY
minus ``listen()``) also append JSON lines ``{"server": ..., "lag_ms": ...}`` to the file
named by ``SDREADY_BENCH_LAG_FILE``; this runner plots them with matplotlib (``bench`` extra).

Run: ``make bench`` (or ``python benchmarks/run_all.py [--quick]``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKIP = {"run_all.py"}
SAMPLES = HERE / "readiness_lag.jsonl"
PLOT = "readiness_lag.png"


def load_samples(path: Path) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        samples.setdefault(record["server"], []).append(float(record["lag_ms"]))
    return samples


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def plot(samples: dict[str, list[float]], out: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing (pip install 'sdready[bench]'): no plot", file=sys.stderr)
        return False
    servers = sorted(samples, key=lambda name: statistics.median(samples[name]), reverse=True)
    fig, ax = plt.subplots(figsize=(9, 0.7 * len(servers) + 1.6))
    # Horizontal, log scale: detection lags are below a millisecond, gunicorn's includes a
    # worker loading the app (tens of ms); both must stay readable.
    data = [samples[s] for s in servers]
    try:
        ax.boxplot(data, orientation="horizontal", showfliers=True)  # Matplotlib >= 3.10
    except TypeError:
        ax.boxplot(data, vert=False, showfliers=True)
    ax.set_yticks(range(1, len(servers) + 1), [f"{s} (n={len(samples[s])})" for s in servers])
    ax.set_xscale("log")
    ax.set_xlabel("READY minus listen() [ms, log scale]")
    ax.set_title(f"sdready readiness lag per server ({cpu_model()}, {os.cpu_count()} CPUs)")
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script")
    parser.add_argument(
        "--replot", action="store_true", help=f"only redraw the plot from {SAMPLES.name}"
    )
    args = parser.parse_args()
    if args.replot:
        return 0 if plot(load_samples(SAMPLES), HERE / PLOT) else 1
    scripts = sorted(
        p for p in HERE.glob("*.py") if p.name not in SKIP and not p.name.startswith("_")
    )
    lag_file = Path(tempfile.mkstemp(prefix="sdready-lag-", suffix=".jsonl")[1])
    env = {**os.environ, "SDREADY_BENCH_LAG_FILE": str(lag_file)}
    sections: list[str] = []
    targets: list[str] = []
    failed = 0
    for script in scripts:
        command = [sys.executable, str(script), *(["--quick"] if args.quick else [])]
        print(f"== {script.name}", flush=True)
        started = time.monotonic()
        result = subprocess.run(
            command, capture_output=True, text=True, env=env, check=False, timeout=1800
        )
        took = time.monotonic() - started
        print(result.stdout, end="")
        if result.returncode != 0:
            failed += 1
            print(result.stderr, file=sys.stderr)
            sections.append(f"## {script.name}\n\nFAILED (exit {result.returncode}).\n")
        else:
            sections.append(f"<!-- {script.name}: {took:.0f} s -->\n{result.stdout.strip()}\n")
            # A script states each target it is held to on a line of its own: "target: ...".
            targets += [
                line[8:] for line in result.stdout.splitlines() if line.startswith("target: ")
            ]
    samples = load_samples(lag_file)
    SAMPLES.write_text(lag_file.read_text())  # kept: --replot redraws without rerunning
    lag_file.unlink()
    header = (
        "# Benchmark results\n\n"
        f"Made by `make bench` on {time.strftime('%Y-%m-%d')}: {cpu_model()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, Linux {platform.release()}.\n"
    )
    if targets:
        summary = "\n".join(f"- {line}" for line in targets)
        header += f"\n## Targets, from this run\n\n{summary}\n"
        print(f"\n== targets\n{summary}")
    if samples and plot(samples, HERE / PLOT):
        header += f"\n![readiness lag per server]({PLOT})\n"
    (HERE / "RESULTS.md").write_text(header + "\n" + "\n".join(sections))
    print(f"wrote {HERE / 'RESULTS.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
