"""The ``sdready`` command's start-up, against ``python -c pass`` and ``systemd-notify``.

Users run the command from an installed package with bytecode caches, so it is measured
that way: a fresh virtual environment (no ``.pth`` files: this checkout's editable install
loads re and pathlib into every interpreter) whose site-packages holds the package (a
tree of links to ``core/``), compiled with compileall, and a ``bin/sdready`` wrapper
exactly like the one pip writes. Commands run in interleaved rounds, so each sees the same
machine; the figures are medians, ratios to ``python -c pass`` of the same rounds.

- ``sdready notify --status x``: sent to a NotifyRecorder, which confirms the BARRIER;
- ``sdready exec -- date +%s%N``: from the launch until the command runs, which is what
  exec's start-up costs a service (``date`` prints the time it started; its own start-up
  counts against sdready); the whole run of ``sdready exec -- true`` is shown beside it,
  as is ``date`` launched directly, the floor;
- ``sdready wait-listen --expect 127.0.0.1:PORT``: a socket that already listens, the whole
  run (with its INFO line on stderr, as by default).

Targets (issue 16): notify <= 1.3x ``python -c pass``; exec and wait-listen <= 1.5x.

With ``--beside OLD/core`` the same commands of another ``core/`` (an older release) run in
the same rounds, in a venv of their own, so both sides' ratios come from one machine state.

Run: ``python benchmarks/cli_startup.py [--quick] [--rounds N] [--beside OLD/core]``.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sdready.testing import NotifyRecorder

CORE = Path(__file__).resolve().parent.parent / "core"
WRAPPER = """#!{python}
import sys
from sdready.__main__ import {entry}
if __name__ == '__main__':
    sys.argv[0] = sys.argv[0].removesuffix('.exe')
    sys.exit({entry}())
"""
EXEC_START = "sdready exec -- date: until date runs"
TARGETS = {"sdready notify --status x": 1.3, EXEC_START: 1.5}
#: Rows timed until the command's output, a timestamp, rather than until its exit.
STAMPED = frozenset({EXEC_START, "date +%s%N: until it runs"})


def entry_point(core: Path) -> str:
    """The function the ``sdready`` script calls, as that checkout's pyproject.toml names it."""
    pyproject = core.parent / "pyproject.toml"
    text = pyproject.read_text() if pyproject.exists() else ""
    found = re.search(r'^sdready = "sdready\.__main__:(\w+)"', text, re.M)
    return found[1] if found else "main"


def environment(root: Path, core: Path = CORE) -> tuple[str, str]:
    """A fresh venv with sdready installed as links, compiled: (python, sdready script)."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(root)], check=True)
    python = str(root / "bin" / "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    package = Path(site) / "sdready"
    package.mkdir()
    # The modules and the private subpackages, as real directories of links: compileall
    # does not descend into a linked directory, and an uncompiled subpackage would be timed
    # compiling its sources.
    for source in core.iterdir():
        if source.suffix == ".py":
            (package / source.name).symlink_to(source)
        elif (source / "__init__.py").is_file():
            (package / source.name).mkdir()
            for module in source.glob("*.py"):
                (package / source.name / module.name).symlink_to(module)
    compileall.compile_dir(str(package), quiet=1)  # writes even with PYTHONDONTWRITEBYTECODE
    script = root / "bin" / "sdready"
    script.write_text(WRAPPER.format(python=python, entry=entry_point(core)))
    script.chmod(0o755)
    return python, str(script)


def commands(python: str, script: str, port: int) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {
        "python -c pass": [python, "-c", "pass"],
        "sdready notify --status x": [script, "notify", "--status", "x"],
        EXEC_START: [script, "exec", "-q", "--", "date", "+%s%N"],
        "date +%s%N: until it runs": ["date", "+%s%N"],
        "sdready exec -- true: the whole run": [script, "exec", "-q", "--", "true"],
        f"sdready wait-listen --expect 127.0.0.1:{port}": [  # logs its line, as by default
            script,
            "wait-listen",
            "--expect",
            f"127.0.0.1:{port}",
        ],
    }
    if shutil.which("systemd-notify"):
        found["systemd-notify --status=x"] = ["systemd-notify", "--status=x"]
    return found


def beside(runs: dict[str, list[str]], script: str, other: str) -> dict[str, list[str]]:
    """*runs* with each sdready command followed by the same with *other*'s sdready."""
    both: dict[str, list[str]] = {}
    for name, command in runs.items():
        both[name] = command
        if command[0] == script:
            both[f"{name} [beside]"] = [other, *command[1:]]
    return both


def measure(runs: dict[str, list[str]], rounds: int, env: dict[str, str]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, command in runs.items():
            began_ns = time.time_ns()  # date's clock, for the stamped rows
            began = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, check=False)
            took = time.perf_counter() - began
            if done.returncode != 0:
                raise SystemExit(f"{name} failed ({done.returncode}): {done.stderr.decode()}")
            if name.removesuffix(" [beside]") in STAMPED:
                took = (int(done.stdout.split()[0]) - began_ns) / 1e9
            times[name].append(took * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10 rounds")
    parser.add_argument("--rounds", type=int, default=60, help="rounds of every command")
    parser.add_argument(
        "--core", type=Path, default=CORE, help="another core/ to measure (an older version)"
    )
    parser.add_argument(
        "--beside",
        type=Path,
        help="also time this core/'s sdready commands in the same rounds (rows marked [beside])",
    )
    args = parser.parse_args()
    rounds = 10 if args.quick else max(3, args.rounds)
    root = Path(tempfile.mkdtemp(prefix="sdready-startup-"))
    try:
        python, script = environment(root / "venv", args.core.resolve())
        with NotifyRecorder(set_environment=False) as recorder, socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            runs = commands(python, script, server.getsockname()[1])
            if args.beside is not None:
                _, other = environment(root / "beside", args.beside.resolve())
                runs = beside(runs, script, other)
            env = {**os.environ, "NOTIFY_SOCKET": recorder.address}
            times = measure(runs, 2, env)  # warm the page cache first
            times = measure(runs, rounds, env)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = statistics.median(times["python -c pass"])
    print(f"### The sdready command's start-up ({rounds} interleaved rounds, ms)\n")
    print("| command | median | p25 | p75 | ratio to python -c pass | target |")
    print("|---|---:|---:|---:|---:|---|")
    targets: list[str] = []
    for name, values in times.items():
        median = statistics.median(values)
        quartiles = statistics.quantiles(values, n=4)
        mine = name.removesuffix(" [beside]")
        target = TARGETS.get(mine, 1.5 if "wait-listen" in mine else None)
        verdict = (
            ""
            if target is None
            else f"<= {target:g}x: " + ("yes" if median / base <= target else "NO")
        )
        if target is not None and mine == name:
            ratio = f"{median / base:.2f}x python -c pass"
            targets.append(f"target: `{name}` start-up: {ratio}, {verdict}")
        print(
            f"| `{name}` | {median:.1f} | {quartiles[0]:.1f} | {quartiles[2]:.1f} | "
            f"{median / base:.2f}x | {verdict} |"
        )
    if args.beside is not None:
        print(f"\n[beside]: the same commands with {args.beside}, in the same rounds.")
    print(
        f"\nPython {sys.version.split()[0]}, bytecode cached, a fresh venv without .pth files; "
        "sdready notify waits for the recorder's BARRIER confirmation, as by default."
    )
    print("\n" + "\n".join(targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
