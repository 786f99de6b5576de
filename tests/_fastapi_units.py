"""The FastAPI unit the real-systemd tests start: uvicorn serving ``_asgi_fastapi:app``
(SystemdNotify), configured through ``_asgi_apps``' environment variables."""

from __future__ import annotations

import os
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
