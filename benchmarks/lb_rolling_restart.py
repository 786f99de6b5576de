"""Failed requests per rolling restart behind HAProxy, with and without sdready's options.

Two FastAPI + uvicorn units (``Type=notify``, SystemdNotify) under a private systemd user
manager, behind HAProxy 2.6 (``inter 200ms fall 1 rise 1``, ``retries 0``). A client sends
a GET through HAProxy every 10 ms while ``b1`` is restarted, then ``b2`` (each once
HAProxy sees the other up). "ready_path + shutdown_delay" checks ``/readyz`` with
``shutdown_delay=1.5``; "control" checks ``/`` with neither (sdready as before). The same
with ``sdready exec`` + uvicorn (``KillMode=mixed``), checked on ``--ready-address``, and
with gunicorn + its plugin (a Flask app, 2 sync workers, ``KillMode=mixed``).

Run: ``python benchmarks/lb_rolling_restart.py [--rounds N]``. Prints a markdown table.
Needs haproxy and what the real-systemd tests need (see tests/_systemd.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from _load_balancer import rolling_restart  # noqa: E402
from _systemd import UserManager  # noqa: E402

CASES = [
    ("fastapi", True, "FastAPI + uvicorn: ready_path + shutdown_delay=1.5"),
    ("fastapi", False, "FastAPI + uvicorn: control (checks on /)"),
    ("exec", True, "sdready exec --ready-address --shutdown-delay 1.5 + uvicorn"),
    ("exec", False, "sdready exec + uvicorn: control (checks on /)"),
    ("gunicorn", True, "gunicorn (Flask, 2 sync workers): ready_path + shutdown_delay=1.5"),
    ("gunicorn", False, "gunicorn (Flask, 2 sync workers): control (checks on /)"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    rows = []
    with UserManager() as systemd:
        for server, probes, name in CASES:
            tallies = []
            for _ in range(rounds):
                with tempfile.TemporaryDirectory() as tmp, systemd.scoped():
                    client = rolling_restart(systemd, Path(tmp), probes=probes, server=server)
                tallies.append((len(client.failed), client.sent))
            failed = ", ".join(f"{f} of {n}" for f, n in tallies)
            rows.append(f"| {name} | {failed} |")
    print("### Rolling restart of 2 units behind HAProxy 2.6\n")
    print("| setup | failed requests per rolling restart (each round) |")
    print("|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
