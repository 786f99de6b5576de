"""The A-depends-on-B story with a real systemd: a Flask app under waitress, and a client.

Unit A runs a Flask app with SystemdNotify under waitress on a unix socket, sleeping 0.5 s
between creating the extension and calling ``serve()``. Unit B (``Requires=``/``After=`` A,
``Type=oneshot``) does one GET with a 1 s timeout. With ``Type=notify`` systemd starts B
only after sdready's READY, and every GET succeeds; with ``Type=simple`` B starts while A
is still importing, and every GET fails. A unix socket needs no free TCP port.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _systemd import UserManager, python_for_units

pytest.importorskip("flask")
pytest.importorskip("waitress")

pytestmark = [pytest.mark.systemd, pytest.mark.slow, pytest.mark.timeout(240)]

ROUNDS = 20

SERVER = """\
import logging, sys, time
logging.basicConfig(level=logging.INFO, format="%(process)d %(levelname)s %(message)s")
from flask import Flask
from sdready.plugins.flask import SystemdNotify

app = Flask(__name__)

@app.get("/")
def index():
    return "ok"

SystemdNotify(app)
time.sleep(0.5)  # slow app code between creating the extension and serving
import waitress
waitress.serve(app, unix_socket=sys.argv[1], unix_socket_perms="600", threads=2)
"""

CLIENT = """\
import http.client, socket, sys

class UnixConnection(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(sys.argv[1])

connection = UnixConnection("localhost", timeout=1.0)
try:
    connection.request("GET", "/")
    response = connection.getresponse()
    body = response.read()
except OSError as exc:
    sys.exit(f"GET failed: {exc!r}")
print(response.status, body)
sys.exit(0 if (response.status, body) == (200, b"ok") else 1)
"""


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sdr-fl-", dir="/tmp"))  # sun_path: 108 bytes
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _write_pair(manager: UserManager, directory: Path, service_type: str) -> tuple[str, str]:
    python, env = python_for_units()
    (directory / "server.py").write_text(SERVER)
    (directory / "client.py").write_text(CLIENT)
    sock = directory / "app.sock"
    environment = " ".join(f"{key}={value}" for key, value in env.items())
    server, client = manager.unit_name("flask-a"), manager.unit_name("flask-b")
    manager.write_unit(
        server,
        f"""\
        [Service]
        Type={service_type}
        ExecStart={python} {directory}/server.py {sock}
        Environment={environment}
        StandardOutput=append:{directory}/server.log
        StandardError=append:{directory}/server.log
        """,
        reload=False,
    )
    manager.write_dependent_unit(
        client,
        server,
        f"{python} {directory}/client.py {sock}",
        log=directory / "client.log",
        environment=environment,
    )
    return server, client


def _run_pair(manager: UserManager, server: str, client: str) -> tuple[str, str]:
    """Start the client (which pulls in the server); return its Result, the server's STATUS."""
    manager.run("start", client, check=False, timeout=60)
    result = manager.show(client, "Result")["Result"]
    status = manager.show(server, "StatusText")["StatusText"]
    manager.run("stop", server, timeout=30)
    manager.reset(client, server)
    return result, status


@pytest.mark.parametrize(
    ("service_type", "expected"), [("notify", "success"), ("simple", "exit-code")]
)
def test_dependent_unit_get_after_ready(
    service_type: str, expected: str, systemd: UserManager, short_dir: Path
) -> None:
    server, client = _write_pair(systemd, short_dir, service_type)
    rounds = [_run_pair(systemd, server, client) for _ in range(ROUNDS)]
    results = [result for result, _ in rounds]
    logs = "\n".join(
        f"--- {name}:\n{(short_dir / name).read_text(errors='replace')[-3000:]}"
        for name in ("client.log", "server.log")
        if (short_dir / name).exists()
    )
    assert results == [expected] * ROUNDS, f"{results}\n{logs}"
    if service_type == "notify":
        ready = f"Ready: listening on {short_dir}/app.sock (pid "
        assert all(status.startswith(ready) for _, status in rounds), rounds
