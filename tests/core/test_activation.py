"""sdready.listen_socket on real sockets: bind, take what systemd passed, keep in the fd store.

systemd's side is played for real where it matters: a child process gets the socket as
fd 3 with LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID, and the fd store is a NotifyRecorder that
receives the descriptors (FDSTORE=1) like the manager does.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sdready
from _servers import free_port
from sdready._env import listen_fds, unset_listen_fds
from sdready._listen._activation import fdname_for, parse_address
from sdready.testing import NotifyRecorder

# -- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "family", "sockaddr"),
    [
        ("127.0.0.1:8000", socket.AF_INET, ("127.0.0.1", 8000)),
        ("0.0.0.0:80", socket.AF_INET, ("0.0.0.0", 80)),
        ("[::1]:8000", socket.AF_INET6, ("::1", 8000, 0, 0)),
        ("[::]:8000", socket.AF_INET6, ("::", 8000, 0, 0)),
        ("/run/app.sock", socket.AF_UNIX, "/run/app.sock"),
        ("@app", socket.AF_UNIX, b"\0app"),
    ],
)
def test_parse_address(text: str, family: int, sockaddr: object) -> None:
    address = parse_address(text)
    assert (address.family, address.sockaddr) == (family, sockaddr)


@pytest.mark.parametrize(
    "text", ["8000", "localhost:8000", "*:8000", ":8000", "example.com:80", "1.2.3.4:0", "app"]
)
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"listen address|expect"):
        parse_address(text)


def test_fdname_for_avoids_the_separator() -> None:
    assert fdname_for("127.0.0.1:8000") == "127.0.0.1_8000"
    assert fdname_for("[::1]:8000") == "[__1]_8000"
    assert fdname_for("/run/app.sock") == "/run/app.sock"


# -- the environment -----------------------------------------------------------------------


def test_listen_fds_names_and_pid_check() -> None:
    me = str(os.getpid())
    env = {"LISTEN_PID": me, "LISTEN_FDS": "3", "LISTEN_FDNAMES": "web:stored"}
    assert listen_fds(env) == [(3, "web"), (4, "stored"), (5, "unknown")]
    assert listen_fds({**env, "LISTEN_PID": str(os.getpid() + 1)}) == []  # an heir's
    unset_listen_fds(env)
    assert env == {}


@pytest.mark.parametrize(("value", "expected"), [("4", 4), ("0", 0), ("", 0), ("x", 0)])
def test_fdstore_max(value: str, expected: int) -> None:
    from sdready._env import fdstore_max

    assert fdstore_max({"FDSTORE": value}) == expected
    assert fdstore_max({}) == 0


# -- binding (no systemd) ------------------------------------------------------------------


def _serves(sock: socket.socket) -> None:
    """The socket accepts a connection that reaches it by its own address."""
    with socket.socket(sock.family, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        client.connect(sock.getsockname())
        accepted, _ = sock.accept()
        accepted.close()


@pytest.fixture
def no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOTIFY_SOCKET", "FDSTORE", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def unix_path(tmp_path: Path) -> Iterator[str]:
    yield str(tmp_path / "app.sock")


@pytest.mark.usefixtures("no_systemd")
@pytest.mark.parametrize("kind", ["v4", "v6", "unix", "abstract"])
def test_binds_a_new_socket_outside_systemd(kind: str, unix_path: str) -> None:
    address = {
        "v4": f"127.0.0.1:{free_port()}",
        "v6": f"[::1]:{free_port()}",
        "unix": unix_path,
        "abstract": f"@sdready-test-{uuid.uuid4().hex}",
    }[kind]
    if kind == "v6" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    with sdready.listen_socket(address) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        assert not sock.get_inheritable()
        _serves(sock)


@pytest.mark.usefixtures("no_systemd")
def test_a_dead_unix_socket_file_is_replaced(unix_path: str) -> None:
    with socket.socket(socket.AF_UNIX) as old:  # a killed server leaves its file behind
        old.bind(unix_path)
    with sdready.listen_socket(unix_path) as sock:
        _serves(sock)


@pytest.mark.usefixtures("no_systemd")
def test_a_live_unix_socket_is_not_stolen(unix_path: str) -> None:
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(unix_path)
        live.listen()
        with pytest.raises(OSError):
            sdready.listen_socket(unix_path)
        assert Path(unix_path).exists()


# -- the fd store (a NotifyRecorder receives the descriptors) ------------------------------


def test_keep_stores_the_socket_under_its_name(
    notify_socket: NotifyRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FDSTORE", raising=False)
    address = f"127.0.0.1:{free_port()}"
    with sdready.listen_socket(address, keep=True) as sock:
        message = notify_socket.wait_for("FDSTORE")
        assert message["FDNAME"] == fdname_for(address)
        assert len(message.fds) == 1
        assert os.fstat(message.fds[0]).st_ino == os.fstat(sock.fileno()).st_ino
        _serves(sock)  # ours to use as before


def test_fdstore_variable_turns_keeping_on(
    notify_socket: NotifyRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FDSTORE", "4")  # systemd >= 254 with FileDescriptorStoreMax=4
    with sdready.listen_socket(f"127.0.0.1:{free_port()}", name="web"):
        assert notify_socket.wait_for("FDSTORE")["FDNAME"] == "web"


def test_without_fdstore_nothing_is_kept(
    notify_socket: NotifyRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FDSTORE", raising=False)
    with sdready.listen_socket(f"127.0.0.1:{free_port()}") as sock:
        sdready.Notifier().status("marker")  # the datagram after which a FDSTORE would be
        notify_socket.wait_for("STATUS=marker")
        assert not notify_socket.values("FDSTORE")
        _serves(sock)


def test_a_full_store_warns_once(
    notify_socket: NotifyRecorder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FDSTORE", "1")
    socks = [sdready.listen_socket(f"127.0.0.1:{free_port()}") for _ in range(3)]
    try:
        full = [r for r in caplog.records if "fd store holds 1" in r.getMessage()]
        assert len(full) == 1 and full[0].levelname == "WARNING"
        for sock in socks:
            _serves(sock)
    finally:
        for sock in socks:
            sock.close()


# -- sockets systemd passed (a child gets them as fd 3 with LISTEN_*) ----------------------

_CHILD = """
import json, os, socket, sys
source, names, pid = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if source != 3:
    os.dup2(source, 3)
    os.close(source)
os.environ.update(
    LISTEN_FDS="1", LISTEN_FDNAMES=names, LISTEN_PID=str(os.getpid()) if pid == "me" else pid
)
import sdready
try:
    sock = sdready.listen_socket(sys.argv[4], **json.loads(sys.argv[5]))
except OSError as exc:
    print(json.dumps({"error": exc.errno}))
    sys.exit()
print(json.dumps({
    "fd": sock.fileno(),
    "inode": os.fstat(sock.fileno()).st_ino,
    "fd3_open": os.path.exists("/proc/self/fd/3"),
    "inheritable": sock.get_inheritable(),
    "env": sorted(k for k in os.environ if k.startswith("LISTEN_")),
}))
"""


def _run_child(
    passed: socket.socket,
    fdnames: str,
    address: str,
    recorder: NotifyRecorder,
    *,
    pid: str = "me",
    **kwargs: object,
) -> dict[str, object]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("FDSTORE", "NOTIFY_SOCKET")
    } | recorder.env
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CHILD), str(passed.fileno()), fdnames, pid, address,
         json.dumps(kwargs)],
        pass_fds=(passed.fileno(),),
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )  # fmt: skip
    reply: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return reply


@pytest.fixture
def passed() -> Iterator[tuple[socket.socket, str]]:
    """A listening socket as systemd would hold it (its address)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    with sock:
        yield sock, f"127.0.0.1:{sock.getsockname()[1]}"


def test_takes_the_socket_stored_under_its_name(
    passed: tuple[socket.socket, str], notify_socket: NotifyRecorder
) -> None:
    sock, address = passed
    reply = _run_child(sock, fdname_for(address), address, notify_socket, keep=True)
    assert reply["inode"] == os.fstat(sock.fileno()).st_ino
    assert reply["env"] == []  # children do not take it again
    assert reply["inheritable"] is False
    # Kept again: systemd ignores a socket it already holds.
    assert notify_socket.wait_for("FDSTORE")["FDNAME"] == fdname_for(address)


def test_takes_a_socket_units_socket_by_address(
    passed: tuple[socket.socket, str], notify_socket: NotifyRecorder
) -> None:
    sock, address = passed
    reply = _run_child(sock, "app.socket", address, notify_socket, keep=True)
    assert reply["inode"] == os.fstat(sock.fileno()).st_ino
    # The .socket unit holds it already: nothing goes into the store, nothing is removed.
    sdready.Notifier(notify_socket.address).status("marker")
    notify_socket.wait_for("STATUS=marker")
    assert not notify_socket.values("FDSTOREREMOVE")
    assert not notify_socket.values("FDSTORE")


def test_a_stale_stored_socket_is_removed_and_closed(
    passed: tuple[socket.socket, str], notify_socket: NotifyRecorder
) -> None:
    sock, _old = passed
    new = f"127.0.0.1:{free_port()}"  # the configured address changed
    reply = _run_child(sock, "web", new, notify_socket, name="web", keep=True)
    assert reply["inode"] != os.fstat(sock.fileno()).st_ino
    # The stale descriptor was closed: fd 3 is free, or is the new socket's.
    assert reply["fd3_open"] is False or reply["fd"] == 3
    messages = [m for m in notify_socket.messages if "FDNAME" in m]
    assert [("FDSTOREREMOVE" in m, "FDSTORE" in m) for m in messages] == [
        (True, False),
        (False, True),
    ]  # removed first, then the new one stored under the same name


def test_sockets_meant_for_another_pid_are_not_taken(
    passed: tuple[socket.socket, str], notify_socket: NotifyRecorder
) -> None:
    sock, address = passed
    reply = _run_child(sock, fdname_for(address), address, notify_socket, pid="1")
    import errno

    assert reply == {"error": errno.EADDRINUSE}  # it tried to bind: the socket was not ours


def test_import_sdready_does_not_load_activation() -> None:
    code = "import sys, sdready; print('sdready._listen._activation' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- servers that accept a socket serve the one listen_socket returns ----------------------

_SERVE = {
    "waitress": """
import waitress
waitress.serve(wsgi, sockets=[sock])
""",
    "werkzeug": """
from werkzeug.serving import make_server
make_server("127.0.0.1", 0, wsgi, fd=sock.fileno()).serve_forever()
""",
    "uvicorn": """
import uvicorn
uvicorn.Server(uvicorn.Config(asgi, lifespan="off", log_level="warning")).run(sockets=[sock])
""",
}


@pytest.mark.usefixtures("no_systemd")
@pytest.mark.parametrize("server", list(_SERVE))
def test_servers_serve_the_socket(server: str, tmp_path: Path) -> None:
    from _restarts import write_apps
    from _servers import ServerProcess, child_env, http_get
    from _systemd import wait_until

    apps = write_apps(tmp_path)
    address = f"127.0.0.1:{free_port()}"
    script = apps / "serve.py"
    script.write_text(
        "import sys, sdready\nfrom restart_apps import wsgi, asgi\n"
        f"sock = sdready.listen_socket({address!r})\n" + textwrap.dedent(_SERVE[server])
    )
    env = child_env({"PYTHONPATH": str(apps)})
    with ServerProcess([sys.executable, str(script)], env=env, log=tmp_path / "log") as process:

        def answers() -> bool:
            try:
                return http_get(address, timeout=5).status == 200
            except OSError:
                assert process.alive, process.output()
                return False

        wait_until(answers, timeout=30)
