"""A real HAProxy in front of two real systemd units, a client loop through it, and a
rolling restart: shared by tests/plugins/test_load_balancer_systemd.py and
benchmarks/lb_rolling_restart.py (issue 22)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from _fastapi_units import unit_environment, write_server_unit
from _gunicorn_support import NO_CONTROL_SOCKET
from _servers import http_get, reserved_port
from _systemd import UserManager, python_for_units, wait_until

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
CLIENT_PERIOD = 0.01  # one GET through HAProxy every 10 ms
CLIENT_MAX_REQUESTS = 4000  # the loop's own bound (~40 s of requests at most)
DELAY = 1.5  # shutdown_delay: many times HAProxy's 200 ms check interval
#: The servers a rolling restart runs: FastAPI + uvicorn (SystemdNotify), ``sdready exec``
#: + uvicorn (the plain ASGI app), gunicorn with the plugin (a plain Flask app, 2 workers).
SERVERS = ("fastapi", "exec", "gunicorn")

_FLASK_APP = """\
from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return "ok"
"""


def _haproxy_config(
    front: int, stats: int, backends: list[tuple[int, int]], check_path: str
) -> str:
    servers = "\n".join(
        f"    server b{i} 127.0.0.1:{port} check port {check}"
        for i, (port, check) in enumerate(backends, 1)
    )
    return f"""\
global
    maxconn 200

defaults
    mode http
    retries 0
    timeout connect 1s
    timeout client 5s
    timeout server 5s
    default-server inter 200ms fall 1 rise 1

frontend web
    bind 127.0.0.1:{front}
    default_backend apps

frontend stats
    bind 127.0.0.1:{stats}
    stats enable
    stats uri /stats

backend apps
    balance roundrobin
    option httpchk GET {check_path}
{servers}
"""


@contextlib.contextmanager
def _haproxy(tmp_path: Path, config: str) -> Iterator[subprocess.Popen[bytes]]:
    if not Path(HAPROXY).exists():
        raise RuntimeError("haproxy is not installed (apt-get install haproxy; .ci/run does)")
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    log = (tmp_path / "haproxy.log").open("wb")
    process = subprocess.Popen(
        [HAPROXY, "-f", str(path), "-db"], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _server_states(stats: int) -> dict[str, str]:
    """HAProxy's view of each backend server: ``{"b1": "UP", "b2": "DOWN", …}``."""
    try:
        response = http_get(("127.0.0.1", stats), "/stats;csv")
    except OSError:
        return {}
    rows = csv.DictReader(io.StringIO(response.body.lstrip("# ")))
    return {
        row["svname"]: row["status"].split()[0]
        for row in rows
        if row["pxname"] == "apps" and row["svname"].startswith("b")
    }


def _wait_up(stats: int, *names: str) -> None:
    wait_until(
        lambda: all(_server_states(stats).get(name) == "UP" for name in names),
        timeout=20,
        message=lambda: f"HAProxy never saw {names} up: {_server_states(stats)}",
    )


class Client:
    """GET through HAProxy every 10 ms in a thread; counts answers other than 200."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Client:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set() and self.sent < CLIENT_MAX_REQUESTS:
            self.sent += 1
            try:
                response = http_get(("127.0.0.1", self.port), "/", timeout=3.0)
            except OSError as exc:
                self.failed.append(repr(exc))
            else:
                if response.status != 200:
                    self.failed.append(f"{response.status} {response.body[:60]!r}")
            self._stop.wait(CLIENT_PERIOD)


def _exec_unit(systemd: UserManager, port: int, check: int, probes: bool) -> str:
    """``sdready exec`` + uvicorn serving the plain ASGI app (no plugin)."""
    python, _ = python_for_units()
    options = f"--ready-address 127.0.0.1:{check} --shutdown-delay {DELAY}" if probes else ""
    uvicorn = f"{python} -m uvicorn _asgi_apps:plain --host 127.0.0.1 --port {port}"
    return _write_unit(
        systemd,
        "exec-b",
        f"{python} -m sdready exec {options} -- {uvicorn} --log-level warning",
        unit_environment({}),
        "# As README documents for exec: SIGTERM goes to sdready, which holds it for the delay",
    )


def _gunicorn_unit(systemd: UserManager, port: int, probes: bool) -> str:
    """gunicorn with the plugin, 2 sync workers serving a plain Flask app; with *probes*,
    ``SDREADY_READY_PATH`` and ``SDREADY_SHUTDOWN_DELAY``."""
    python, _ = python_for_units()
    (systemd.work_dir / "lb_flask_app.py").write_text(_FLASK_APP)
    options = {"SDREADY_READY_PATH": "/readyz", "SDREADY_SHUTDOWN_DELAY": str(DELAY)}
    gunicorn = (
        f"{python} -m gunicorn -c python:sdready.plugins.gunicorn --workers 2 -k sync "
        f"--bind 127.0.0.1:{port} --graceful-timeout 5 {NO_CONTROL_SOCKET} lb_flask_app:app"
    )
    return _write_unit(
        systemd,
        "gunicorn-b",
        gunicorn,
        unit_environment(options if probes else {}),
        "# gunicorn's own recommendation: SIGTERM to the arbiter alone, which holds it for\n"
        "# the delay while its workers serve, then stops them gracefully",
    )


def _write_unit(
    systemd: UserManager, base: str, exec_start: str, environment: str, why_mixed: str
) -> str:
    """A ``Type=notify`` unit logging to the work directory, with ``KillMode=mixed`` (the
    comment *why_mixed* above it); its name."""
    name = systemd.unit_name(base)
    log = systemd.work_dir / f"{name}.log"
    comment = why_mixed.replace("\n", "\n        ")
    systemd.write_unit(
        name,
        f"""\
        [Service]
        Type=notify
        ExecStart={exec_start}
        WorkingDirectory={systemd.work_dir}
        Environment={environment}
        StandardOutput=append:{log}
        StandardError=append:{log}
        TimeoutStartSec=20
        TimeoutStopSec=15
        {comment}
        KillMode=mixed
        """,
    )
    return name


def rolling_restart(
    systemd: UserManager, tmp_path: Path, *, probes: bool, server: str = "fastapi"
) -> Client:
    """Two units behind HAProxy; restart b1, then b2; return the client's tally.

    *server*, one of :data:`SERVERS`: ``exec`` is checked on exec's own address.
    """
    options = {"ready_path": "/readyz", "shutdown_delay": DELAY} if probes else {}
    # systemd unquotes \" inside Environment="…": the JSON reaches the app intact.
    env = {"SDREADY_TEST_OPTIONS": json.dumps(options).replace('"', '\\"')}
    ports = contextlib.ExitStack()
    with ports:
        p1, p2, c1, c2, front, stats = (ports.enter_context(reserved_port()) for _ in range(6))
        exec_ = server == "exec"
        checks = [(p1, c1), (p2, c2)] if exec_ and probes else [(p1, p1), (p2, p2)]
        if exec_:
            units = [
                _exec_unit(systemd, port, check, probes) for port, check in ((p1, c1), (p2, c2))
            ]
        elif server == "gunicorn":
            units = [_gunicorn_unit(systemd, port, probes) for port in (p1, p2)]
        else:
            units = [
                write_server_unit(
                    systemd,
                    service_type="notify",
                    bind=["--host", "127.0.0.1", "--port", str(port)],
                    env=env,
                    extra="TimeoutStopSec=15",
                )
                for port in (p1, p2)
            ]
        for unit in units:
            systemd.start_unit(unit, timeout=30)
        config = _haproxy_config(front, stats, checks, "/readyz" if probes else "/")
        with _haproxy(tmp_path, config):
            _wait_up(stats, "b1", "b2")
            with Client(front) as client:
                wait_until(lambda: client.sent >= 20, timeout=10)  # traffic flows
                for unit, name, other in zip(units, ("b1", "b2"), ("b2", "b1"), strict=True):
                    _wait_up(stats, other)  # rolling: the other one serves
                    systemd.run("restart", unit, timeout=30)
                    _wait_up(stats, name)
                sent = client.sent
                wait_until(lambda: client.sent >= sent + 20, timeout=10)
    return client
