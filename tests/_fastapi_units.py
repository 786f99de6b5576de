"""The FastAPI unit the real-systemd tests start: uvicorn serving ``_asgi_fastapi:app``
(SystemdNotify), configured through ``_asgi_apps``' environment variables."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from _systemd import UserManager, python_for_units

TESTS_DIR = Path(__file__).resolve().parent
STARTUP_DELAY = "0.3"  # B's own startup work, after the import of FastAPI (~0.4 s)


def unit_environment(extra: dict[str, str]) -> str:
    _, env = python_for_units()
    env = {**env, **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH")) if p)
    return " ".join(f'"{key}={value}"' for key, value in env.items())


def write_server_unit(
    systemd: UserManager,
    *,
    service_type: str,
    bind: list[str],
    extra: str = "",
    env: dict[str, str] | None = None,
    app: str = "_asgi_fastapi:app",
) -> str:
    """A uvicorn unit serving *app* (default: FastAPI with SystemdNotify); *extra* unit
    lines come last, so they override the defaults here (the last assignment wins)."""
    python, _ = python_for_units()
    name = systemd.unit_name("fastapi-b")
    log = systemd.work_dir / f"{name}.log"
    argv = " ".join([python, "-m", "uvicorn", app, "--log-level", "warning", *bind])
    systemd.write_unit(
        name,
        f"""\
        [Service]
        Type={service_type}
        ExecStart={argv}
        WorkingDirectory={systemd.work_dir}
        Environment={unit_environment({"SDREADY_TEST_STARTUP_DELAY": STARTUP_DELAY, **(env or {})})}
        StandardOutput=append:{log}
        StandardError=append:{log}
        TimeoutStartSec=20
        TimeoutStopSec=5
        {extra}
        """,
    )
    return name


GET_SCRIPT = (
    "import sys, urllib.request; "
    "urllib.request.urlopen(f'http://127.0.0.1:{sys.argv[1]}/', timeout=1).read()"
)


def write_client_unit(systemd: UserManager, server: str, port: int) -> str:
    name = systemd.unit_name("client-a")
    log = systemd.work_dir / f"{name}.log"
    systemd.write_dependent_unit(
        name, server, f'{sys.executable} -c "{GET_SCRIPT}" {port}', log=log
    )
    return name


def run_pair(systemd: UserManager, client: str, server: str) -> str:
    """Start the client (which pulls in the server); return its Result; stop both."""
    try:
        # For a oneshot unit, `systemctl start` returns once its ExecStart has exited.
        started = systemd.run("start", client, check=False, timeout=40)
        if "dependency job" in started.stderr:  # B failed to start: A never ran
            return "dependency"
        state = systemd.show(client, "ActiveState", "Result")
        assert state["ActiveState"] in ("inactive", "failed"), state
        server_started = systemd.show(server, "ExecMainStartTimestampMonotonic")
        assert int(server_started["ExecMainStartTimestampMonotonic"]) > 0  # B really ran
        return state["Result"]
    finally:
        systemd.stop_units(client, server)
        systemd.reset(client, server)
