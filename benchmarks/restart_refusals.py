"""Refused connections while a service restarts, with and without keeping its socket (issue 12).

Each row is one ``Restart=always`` (``RestartSec=100ms``) unit under a private systemd
user manager (the host's, and systemd 254 from ``.ci/systemd254`` when it is there). A
client sends one GET every 20 ms (fresh connection, 5 s timeout) while the unit goes
through 3 crash-restarts (``systemctl kill --signal=SIGKILL``) and 2 ``systemctl
restart``s; the table counts the answered, refused (nobody held the listening socket) and
cut (accepted, then reset or unanswered) requests. "kept" rows keep the socket in the fd
store (``FileDescriptorStoreMax=``; ``FileDescriptorStorePreserve=yes`` on 254) or in a
``.socket`` unit; "control" rows are the same servers binding their own socket.

Run: ``python benchmarks/restart_refusals.py [--only NAME ...] [--systemd host|254|both]``
(``--quick``: the host's systemd only).
Prints a markdown table. Needs what the real-systemd tests need (see tests/_systemd.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from _restarts import EXEC_LISTEN_UVICORN, restart_under_traffic, restart_unit  # noqa: E402
from _servers import free_port  # noqa: E402
from _systemd import HOST, Systemd, UserManager, systemd_254  # noqa: E402

PLUGIN = "-c python:sdready.plugins.gunicorn"


@dataclass(frozen=True)
class Case:
    name: str
    how: str  # "store", "socket unit" or "control"
    exec_start: str  # {python} {bin} {port} {dir} are filled in
    store: bool = False
    socket_unit: bool = False
    keep_env: bool = False  # SDREADY_KEEP_SOCKETS=1 (systemd < 254 has no $FDSTORE)
    access: str = "main"


GUNICORN = "{bin}/gunicorn " + PLUGIN + " --bind 127.0.0.1:{port} --workers 2 --no-control-socket"
GUNICORN_FDS = "{bin}/gunicorn " + PLUGIN + " --workers 2 --no-control-socket"
CASES = [
    Case("gunicorn sync + plugin", "store", GUNICORN + " restart_apps:wsgi", True, keep_env=True),
    Case("gunicorn sync + plugin", "control", GUNICORN + " restart_apps:wsgi"),
    Case("gunicorn sync + plugin", "socket unit", GUNICORN_FDS + " restart_apps:wsgi",
         socket_unit=True),
    Case("gunicorn + uvicorn worker", "store",
         GUNICORN + " -k uvicorn_worker.UvicornWorker restart_apps:asgi", True, keep_env=True),
    Case("gunicorn + uvicorn worker", "control",
         GUNICORN + " -k uvicorn_worker.UvicornWorker restart_apps:asgi"),
    Case("gunicorn + uvicorn worker", "socket unit",
         GUNICORN_FDS + " -k uvicorn_worker.UvicornWorker restart_apps:asgi", socket_unit=True),
    Case("sdready exec --listen + uvicorn --fd 3", "store",
         EXEC_LISTEN_UVICORN, True),
    Case("sdready exec --listen + uvicorn --fd 3", "control",
         "{python} -m sdready exec -- {bin}/uvicorn --port {port} restart_apps:asgi"),
    Case("sdready exec --listen + uvicorn --fd 3", "socket unit",
         EXEC_LISTEN_UVICORN, socket_unit=True),
    Case("uvicorn --fd 3 + ASGI middleware", "socket unit",
         "{bin}/uvicorn --fd 3 restart_apps:asgi_sd", socket_unit=True),
    Case("hypercorn fd://3 + ASGI middleware", "socket unit",
         "{bin}/hypercorn --bind fd://3 restart_apps:asgi_sd", socket_unit=True, access="all"),
    Case("Flask on waitress + listen_socket", "store",
         "{python} serve_waitress.py 127.0.0.1:{port} yes", True),
    Case("Flask on waitress + listen_socket", "control",
         "{python} serve_waitress.py 127.0.0.1:{port} no"),
    Case("Flask on waitress + listen_socket", "socket unit",
         "{python} serve_waitress.py 127.0.0.1:{port} auto", socket_unit=True),
]  # fmt: skip


@contextmanager
def _manager(systemd: Systemd) -> Iterator[UserManager]:
    manager = UserManager(systemd=systemd)
    manager.start()
    try:
        yield manager
    finally:
        manager.stop()


def run_case(manager: UserManager, case: Case, directory: Path) -> str:
    port = free_port()
    exec_start = case.exec_start.replace("{port}", str(port))
    # systemd >= 254 sets $FDSTORE, which turns keeping on by itself.
    keep = case.keep_env and manager.systemd.version < 254
    env = "Environment=SDREADY_KEEP_SOCKETS=1" if keep else ""
    with manager.scoped():
        unit = restart_unit(
            manager,
            directory,
            exec_start,
            base="bench",
            store=case.store,
            extra=env,
            sockets=[f"127.0.0.1:{port}"] if case.socket_unit else (),
            access=case.access,
        )
        if case.socket_unit:
            manager.start_unit(unit.removesuffix(".service") + ".socket", wait_started=True)
        outcome = restart_under_traffic(manager, unit, ("127.0.0.1", port))
    version = manager.systemd.version
    return (
        f"| {case.name} | {case.how} | {version} | {outcome.answered} | {outcome.refused} "
        f"| {outcome.cut} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="cases whose name contains one of these")
    parser.add_argument("--systemd", choices=("host", "254", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="the host's systemd only")
    args = parser.parse_args()
    if args.quick:
        args.systemd = "host"
    cases = [c for c in CASES if not args.only or any(o in c.name for o in args.only)]
    trees: list[Systemd] = []
    if args.systemd in ("host", "both"):
        trees.append(HOST)
    if args.systemd in ("254", "both"):
        tree = systemd_254()
        if tree.unavailable_reason() is None:
            trees.append(tree)
        else:
            print(f"(systemd 254 skipped: {tree.unavailable_reason()})", file=sys.stderr)
    print("## Restarts: refused connections (benchmarks/restart_refusals.py)\n")
    print(
        "A GET every 20 ms (5 s timeout) through 3 SIGKILLs (Restart=always, RestartSec=100ms) "
        "and 2 `systemctl restart`s; control: the server binds its own socket.\n"
    )
    print("| server | socket kept by | systemd | answered | refused | cut |")
    print("|---|---|---|---|---|---|")
    for systemd in trees:
        with _manager(systemd) as manager, tempfile.TemporaryDirectory() as tmp:
            for index, case in enumerate(cases):
                directory = Path(tmp) / str(index)
                directory.mkdir()
                print(run_case(manager, case, directory), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
