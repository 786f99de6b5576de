"""``make demo``: the A-depends-on-B race and sdready's fix, live under a private systemd.

Service B (examples/dependent-services) is a web app whose startup takes 0.8 s; service A
(``After=``/``Requires=`` B) makes one HTTP GET to B at once with a 1 s timeout.

1. ``Type=simple``: systemd starts A as soon as B's process exists, A fails.
2. ``Type=notify`` with ``sdready.plugins.fastapi.SystemdNotify``: A starts when B is READY
   and succeeds; the timeline is measured in that run.
3. The same pair with Flask + waitress, Flask + gunicorn and ``sdready exec`` + hypercorn.

``--compare`` adds the alternatives (gunicorn's own READY, READY sent from the app's
startup code as the sdnotify and systemd-python libraries are used, ``ExecStartPre=sleep``).

The units run under a private ``systemd --user`` (tests/_systemd.py: its own mount
namespace and cgroup, nothing touches the host's units); where that cannot run (not root,
not Linux) the same story runs with ``sdready.testing.NotifyRecorder`` as systemd.
Everything started is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import shlex
import signal
import socket
import statistics
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
SERVICES = HERE / "dependent-services"
# Reuse the private user manager the tests use rather than a copy of it.
sys.path.insert(0, str(HERE.parent / "tests"))

from _systemd import (  # noqa: E402
    SystemdUnavailable,
    UnitTimeout,
    UserManager,
    python_for_units,
    unavailable_reason,
)

STARTUP_SECONDS = 0.8  # --startup changes it
A_TIMEOUT = 1.0
# A whole scenario (B's imports, its 0.8 s startup, A) takes ~2 s here; these bound a
# broken run, never a healthy one.
SCENARIO_TIMEOUT = 20.0
POLL = 0.001  # the watcher's resolution for "listening" and for systemd's log
PORT_ATTEMPTS = 3  # a free port can be taken by someone else before B binds it: retry

PYTHON = os.path.normpath(python_for_units()[0])
BIN = Path(PYTHON).parent


# -- what B runs -------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One way of running B: a label, its command line and what the unit needs."""

    label: str
    how: str  # what tells systemd, shown next to the label
    argv: Callable[[int], list[str]]
    unit_lines: tuple[str, ...] = ()  # extra [Service] lines
    a_unit_lines: tuple[str, ...] = ()  # extra [Service] lines for A
    type_: str = "notify"
    requires: tuple[str, ...] = ()  # programs in the venv's bin/ and "module:<name>"
    # What READY waits for, by construction ("" when nothing: then A's success is a race
    # that *relies_on* something the approach does not check).
    guarantees: str = ""
    relies_on: str = ""

    def missing(self) -> str | None:
        """Why this variant cannot run here (a program or module not installed), or None."""
        for need in self.requires:
            kind, _, name = need.rpartition(":")
            if kind == "module" and importlib.util.find_spec(name) is None:
                return f"Python package {name!r} is not installed"
            if not kind and not os.access(BIN / name, os.X_OK):
                return f"{BIN / name} is not installed"
        return None


def _uvicorn(port: int, app: str = "service_b:app") -> list[str]:
    return [PYTHON, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]


def _gunicorn(port: int, *config: str) -> list[str]:
    return [str(BIN / "gunicorn"), *config, "--bind", f"127.0.0.1:{port}", "service_b_flask:app"]


FASTAPI = Variant(
    "FastAPI + uvicorn",
    "sdready.plugins.fastapi",
    _uvicorn,
    requires=("module:fastapi", "module:uvicorn"),
    guarantees="READY only once B listened",
)
FLASK_WAITRESS = Variant(
    "Flask + waitress",
    "sdready.plugins.flask",
    lambda port: [PYTHON, "service_b_flask.py", "--port", str(port)],
    requires=("module:flask", "module:waitress"),
    guarantees="READY only once B listened",
)
FLASK_GUNICORN = Variant(
    "Flask + gunicorn",
    "sdready.plugins.gunicorn",
    lambda port: _gunicorn(port, "-c", "python:sdready.plugins.gunicorn"),
    requires=("module:flask", "gunicorn"),
    guarantees="READY only once a worker could serve",
)
EXEC_HYPERCORN = Variant(
    "ASGI app + hypercorn",
    "sdready exec",
    lambda port: [
        str(BIN / "sdready"),
        "exec",
        "--",
        str(BIN / "hypercorn"),
        "--bind",
        f"127.0.0.1:{port}",
        "service_b_asgi:app",
    ],
    # `sdready exec` is the command line of issue 9 (sdready/_cli.py).
    requires=("module:sdready._commands._cli", "sdready", "hypercorn"),
    guarantees="READY only once B listened",
)
VARIANTS = (FLASK_WAITRESS, FLASK_GUNICORN, EXEC_HYPERCORN)
SIMPLE = Variant(
    "FastAPI, Type=simple",
    "nothing (the default)",
    _uvicorn,
    type_="simple",
    relies_on="B listening before A's GET",
)

# What alternative_sdnotify.py will use: the same order of preference as there.
_STARTUP_NOTIFIER = next(
    (label for module, label in (("sdnotify", "sdnotify"), ("systemd", "systemd-python"))
     if importlib.util.find_spec(module) is not None),
    "raw sd_notify",
)  # fmt: skip

# --compare: what people use instead of sdready, on the same pair.
_SHELL_WRAPPER = (
    "{uvicorn} & sleep 1; systemd-notify --ready --status='started (shell wrapper)'; wait"
)
COMPARE = (
    Variant(
        "Flask + gunicorn",
        "gunicorn's own READY",
        _gunicorn,
        requires=("module:flask", "gunicorn"),
        relies_on="a worker loading the app within A's timeout (the GET waits in the backlog)",
    ),
    Variant(
        "FastAPI + uvicorn",
        f"{_STARTUP_NOTIFIER}, in startup code",
        lambda port: _uvicorn(port, "alternative_sdnotify:app"),
        relies_on="uvicorn binding soon after the startup code sent READY",
    ),
    Variant(
        "ASGI app + uvicorn",
        "sh: sleep 1; systemd-notify",
        lambda port: [
            "/bin/sh",
            "-c",
            _SHELL_WRAPPER.format(uvicorn=shlex.join(_uvicorn(port, "service_b_asgi:app"))),
        ],
        unit_lines=("NotifyAccess=all",),  # systemd-notify is a child of the shell
        requires=("module:uvicorn",),
        relies_on="B being up within the 1 s guess",
    ),
    Variant(
        "FastAPI, Type=simple",
        "A: ExecStartPre=/bin/sleep 1",
        _uvicorn,
        a_unit_lines=("ExecStartPre=/bin/sleep 1",),
        type_="simple",
        relies_on="B being up within the 1 s guess",
    ),
)


# -- measuring ---------------------------------------------------------------------------


USED_PORTS: list[int] = []  # checked at the end: nothing of ours may still listen


def free_port() -> int:
    """A loopback port free right now (others may take it before B binds: callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    USED_PORTS.append(port)
    return port


_NETLINK_SOCK_DIAG = 4  # not exported by the socket module
_TCP_LISTEN = 10
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST_DUMP = 0x301
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLMSG_HEADER = struct.Struct("=IHHII")


def listening(port: int) -> bool:
    """Whether some socket listens on 127.0.0.1:*port* (or 0.0.0.0:*port*).

    Passive on purpose: a connect() would put a connection into B's backlog. Asks the
    kernel's sock_diag for listening IPv4 TCP sockets (~0.2 ms); /proc/net/tcp, the
    fallback, lists every connection of the machine and takes ~10 ms on a busy one.
    """
    try:
        return any(p == port and a in ("127.0.0.1", "0.0.0.0") for a, p in _diag_listeners())
    except OSError:
        needle = f"0100007F:{port:04X} 00000000:0000 0A"
        try:
            with open("/proc/net/tcp") as table:
                return any(needle in line for line in table)
        except OSError:
            return False


def _diag_listeners() -> set[tuple[str, int]]:
    # struct inet_diag_req_v2: family, protocol, ext, pad, states, then a zeroed sockid.
    request = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 1 << _TCP_LISTEN)
    request += bytes(48)
    header = _NLMSG_HEADER.pack(16 + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST_DUMP, 1, 0)
    found: set[tuple[str, int]] = set()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(1)
        sock.send(header + request)
        for _batch in range(1000):  # a dump ends with NLMSG_DONE; bounded all the same
            data = sock.recv(65536)
            offset = 0
            while offset + _NLMSG_HEADER.size <= len(data):
                length, kind, _flags, _seq, _pid = _NLMSG_HEADER.unpack_from(data, offset)
                if kind == _NLMSG_DONE:
                    return found
                if kind == _NLMSG_ERROR or length < _NLMSG_HEADER.size:
                    raise OSError("sock_diag refused the request")
                body = offset + _NLMSG_HEADER.size  # struct inet_diag_msg
                (sport,) = struct.unpack_from("!H", data, body + 4)
                found.add((socket.inet_ntoa(data[body + 8 : body + 12]), sport))
                offset += (length + 3) & ~3
    return found


class Watcher:
    """Background polls, timestamped with time.monotonic() (systemd's monotonic clock).

    * when 127.0.0.1:port starts listening, as a window from the kernel's socket table
      (polled every 1 ms): ``listen()`` came after ``not_listening_at`` (when the last
      poll that found no listener began) and by ``listening_at`` (when the first poll that
      found it returned);
    * with *log*: systemd's "Got notification message" lines for *unit*, read as the
      manager writes them on receipt (the demo's manager runs at log level debug for this).
    """

    _NOTIFY = re.compile(r"^(?P<unit>\S+): Got notification message from PID \d+ \((?P<msg>.*)\)$")

    def __init__(self, port: int, log: Path | None = None, unit: str = "") -> None:
        self.port = port
        self.listening_at: float | None = None
        self.not_listening_at: float | None = None
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._log = log
        self._unit = unit
        self._offset = log.stat().st_size if log is not None else 0
        self._partial = b""
        self._stop = threading.Event()
        # Two threads, so a slow read of one source never delays the other's timestamp.
        self._threads = [threading.Thread(target=self._poll_listen, daemon=True)]
        if log is not None:
            self._threads.append(threading.Thread(target=self._poll_log, daemon=True))

    def __enter__(self) -> Watcher:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2)

    def _poll_listen(self) -> None:
        while self.listening_at is None and not self._stop.wait(POLL):
            began = time.monotonic()
            if listening(self.port):
                self.listening_at = time.monotonic()
            else:
                self.not_listening_at = began

    def _poll_log(self) -> None:
        assert self._log is not None
        with open(self._log, "rb") as log:
            log.seek(self._offset)
            while not self._stop.wait(POLL):
                data = log.read()
                if data:
                    self._parse(time.monotonic(), data)

    def _parse(self, now: float, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        for raw in lines:
            match = self._NOTIFY.match(raw.decode("utf-8", "replace"))
            if match and match["unit"] == self._unit:
                # systemd joins the assignments with ", "; a STATUS may contain ", " too.
                parts = re.split(r", (?=[A-Z_]+=)", match["msg"])
                self.messages.append((now, dict(p.partition("=")[::2] for p in parts)))


@dataclass
class Run:
    """What one A/B pair did; times are time.monotonic() seconds."""

    variant: Variant
    type_: str
    port: int
    source: str  # "systemd" or "recorder": who took the times
    b_start: float | None = None
    a_start: float | None = None
    a_done: float | None = None
    ready: float | None = None
    listening: float | None = None  # B's listen() came by this time…
    not_listening: float | None = None  # …and after this one (None: before B started)
    a_ok: bool = False
    a_output: str = ""
    messages: list[tuple[float, dict[str, str]]] = field(default_factory=list)
    status: str = ""  # systemctl status, trimmed
    b_log: str = ""

    def ms(self, when: float | None) -> str:
        if when is None or self.b_start is None:
            return "—"
        return f"+{(when - self.b_start) * 1000:.0f} ms"

    @property
    def port_taken(self) -> bool:
        return "address already in use" in self.b_log.lower() or "errno 98" in self.b_log.lower()


def _a_argv(port: int) -> list[str]:
    url = f"http://127.0.0.1:{port}/"
    return [PYTHON, str(SERVICES / "client_a.py"), "--timestamp", "--timeout", str(A_TIMEOUT), url]


def _parse_a(run: Run, output: str) -> None:
    lines = []
    for line in output.splitlines():
        if line.startswith("monotonic="):
            run.a_done = float(line.partition("=")[2])
        elif line.strip():
            lines.append(line.strip())
    run.a_output = "\n".join(lines)


_startup = STARTUP_SECONDS


def _b_env() -> dict[str, str]:
    env = dict(python_for_units()[1])
    env["B_STARTUP_SECONDS"] = str(_startup)
    return env


# -- under a private systemd ---------------------------------------------------------------


class SystemdStage:
    """Runs each pair as two unit files in a private user manager."""

    name = "systemd"

    def __init__(self, manager: UserManager) -> None:
        self.manager = manager

    def describe(self) -> str:
        version = self.manager.run("--version").stdout.split("\n", 1)[0]
        return f"a private {version.split(' (')[0]} user manager (pid {self.manager.pid})"

    def run_pair(self, variant: Variant, type_: str | None = None, *, status: bool = False) -> Run:
        type_ = type_ or variant.type_
        for attempt in range(PORT_ATTEMPTS):
            run = self._run_pair(variant, type_, free_port(), status=status)
            if not run.port_taken or attempt == PORT_ATTEMPTS - 1:
                return run
        raise AssertionError("unreachable")

    def _run_pair(self, variant: Variant, type_: str, port: int, *, status: bool) -> Run:
        manager = self.manager
        run = Run(variant, type_, port, "systemd")
        b = manager.unit_name("b")
        a = manager.unit_name("a")
        b_log = manager.work_dir / f"{b}.log"
        a_log = manager.work_dir / f"{a}.log"
        env = "\n".join(f'Environment="{k}={v}"' for k, v in _b_env().items())
        manager.write_unit(
            b,
            f"""\
            [Unit]
            Description=B: {variant.label}, {_startup:g} s startup
            [Service]
            Type={type_}
            ExecStart={shlex.join(variant.argv(port))}
            WorkingDirectory={SERVICES}
            {env}
            TimeoutStartSec=20
            StandardOutput=append:{b_log}
            StandardError=append:{b_log}
            {chr(10).join(variant.unit_lines)}
            """.replace("\n            ", "\n"),
            reload=False,
        )
        manager.write_unit(
            a,
            f"""\
            [Unit]
            Description=A: one GET to B at once, {A_TIMEOUT:g} s timeout
            After={b}
            Requires={b}
            [Service]
            Type=oneshot
            RemainAfterExit=yes
            {chr(10).join(variant.a_unit_lines)}
            ExecStart={shlex.join(_a_argv(port))}
            StandardOutput=append:{a_log}
            StandardError=append:{a_log}
            """.replace("\n            ", "\n"),
        )
        try:
            with Watcher(port, manager.log_path, b) as watcher:
                manager.start_unit(a)  # pulls in B (Requires=), started first (After=)
                manager.wait_for(
                    a,
                    lambda p: p["ActiveState"] in ("active", "failed"),
                    timeout=SCENARIO_TIMEOUT,
                    interval=0.1,
                )
                if status:
                    run.status = self._status(a, b)
                # A failed early: let B finish starting, to show when it would have been ready.
                with contextlib.suppress(UnitTimeout):
                    manager.wait_for(b, lambda p: p["ActiveState"] != "activating", timeout=10)
                deadline = time.monotonic() + 5
                while watcher.listening_at is None and time.monotonic() < deadline:
                    time.sleep(0.02)
            run.listening = watcher.listening_at
            run.not_listening = watcher.not_listening_at
            run.messages = watcher.messages
            bp = manager.show(b, "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic")
            ap = manager.show(a, "ExecMainStartTimestampMonotonic", "ActiveState")
            run.b_start = _usec(bp["ExecMainStartTimestampMonotonic"])
            run.a_start = _usec(ap["ExecMainStartTimestampMonotonic"])
            if type_ == "notify":
                run.ready = _usec(bp["ActiveEnterTimestampMonotonic"])
            run.a_ok = ap["ActiveState"] == "active"
            _parse_a(run, manager.unit_log(a))
            run.b_log = manager.unit_log(b)
        finally:
            manager.cleanup([a, b])
        return run

    def _status(self, a: str, b: str) -> str:
        result = self.manager.run("status", "--no-pager", "--lines=0", a, b, check=False)
        keep = ("Active:", "Main PID:", "Process:", "Status:")
        lines = []
        for raw in result.stdout.splitlines():
            if not ((raw[:1] in "●×○↻" and raw.strip()) or raw.strip().startswith(keep)):
                continue
            line = raw.replace(a, "a.service").replace(b, "b.service")
            # Long command lines and wall-clock dates are noise here.
            line = re.sub(r"ExecStart=\S+ .*? \(code", "ExecStart=… (code", line)
            line = re.sub(r" since \w{3} [\d-]+ [\d:]+ \w+;", " since", line)
            lines.append(line.rstrip())
        return "\n".join(lines)


def _usec(value: str) -> float | None:
    return int(value) / 1e6 if value.isdigit() and int(value) > 0 else None


# -- without systemd: NotifyRecorder stands in ---------------------------------------------


class RecorderStage:
    """The same story with processes: B under a NotifyRecorder, A started when B allows."""

    name = "recorder"

    def describe(self) -> str:
        return "sdready.testing.NotifyRecorder stands in for systemd"

    def run_pair(self, variant: Variant, type_: str | None = None, *, status: bool = False) -> Run:
        type_ = type_ or variant.type_
        for attempt in range(PORT_ATTEMPTS):
            run = self._run_pair(variant, type_, free_port())
            if not run.port_taken or attempt == PORT_ATTEMPTS - 1:
                return run
        raise AssertionError("unreachable")

    def _run_pair(self, variant: Variant, type_: str, port: int) -> Run:
        from sdready.testing import NotifyRecorder, RecorderTimeout

        run = Run(variant, type_, port, "recorder")
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        env.update(_b_env())
        with NotifyRecorder() as recorder, Watcher(port) as watcher:
            b_env = {**env, **recorder.env} if type_ == "notify" else env
            run.b_start = time.monotonic()
            b = subprocess.Popen(
                variant.argv(port),
                cwd=SERVICES,
                env=b_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                if type_ == "notify":
                    with contextlib.suppress(RecorderTimeout):
                        run.ready = recorder.wait_for("READY=1", timeout=SCENARIO_TIMEOUT).time
                for line in variant.a_unit_lines:  # ExecStartPre=/bin/sleep N
                    if line.startswith("ExecStartPre=/bin/sleep "):
                        time.sleep(float(line.rsplit(" ", 1)[1]))
                run.a_start = time.monotonic()
                a = subprocess.run(
                    _a_argv(port), env=env, capture_output=True, text=True, timeout=10, check=False
                )
                run.a_ok = a.returncode == 0
                _parse_a(run, a.stdout + a.stderr)
                deadline = time.monotonic() + 5
                while watcher.listening_at is None and time.monotonic() < deadline:
                    if b.poll() is not None:
                        break
                    time.sleep(0.02)
            finally:
                _stop_group(b)
                run.b_log = b.stdout.read().decode("utf-8", "replace") if b.stdout else ""
                if b.stdout:
                    b.stdout.close()
            run.listening = watcher.listening_at
            run.not_listening = watcher.not_listening_at
            run.messages = [(m.time, dict(m.fields)) for m in recorder.messages]
        return run


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


# -- the story ---------------------------------------------------------------------------

Stage = SystemdStage | RecorderStage


def story(stage: Stage, *, compare: bool, rounds: int = 1) -> bool:
    """Print the parts of the story; return True when every run did what it should."""
    ok = True
    if stage.name == "systemd":
        print("\n1. Type=simple: systemd starts A as soon as B's process exists")
    else:
        print("\n1. Type=simple: A starts as soon as B is spawned, as systemd would start it")
    run = stage.run_pair(FASTAPI, "simple", status=True)
    for line in timeline(run):
        print("   " + line)
    if run.status:
        print("   $ systemctl --user status a.service b.service   (trimmed; right after A ran)")
        print("\n".join("   " + line for line in run.status.splitlines()))
    ok &= not run.a_ok  # the failure is the point: had A succeeded, the demo would be a lie

    print(f"\n2. Type=notify + {FASTAPI.how}.SystemdNotify: A starts once B is READY")
    run = stage.run_pair(FASTAPI, "notify")
    for line in timeline(run):
        print("   " + line)
    ok &= run.a_ok and run.ready is not None

    print("\n3. The same pair with other servers (Type=notify; ms after B started)")
    results = [v if v.missing() else stage.run_pair(v) for v in VARIANTS]
    for line in table(results, "READY sent by"):
        print("   " + line)
    runs = [r for r in results if isinstance(r, Run)]
    ok &= all(run.a_ok and verdict(run).startswith("guaranteed") for run in runs)
    if any(r.variant is FLASK_GUNICORN and r.listening and r.ready for r in runs):
        print("   (gunicorn's arbiter listens before its worker has loaded the app; READY waits.)")

    if compare and rounds > 1:
        print(f"\n4. sdready and the alternatives, {rounds} rounds each")
        variants = [v for v in (FASTAPI, FLASK_GUNICORN, *COMPARE, SIMPLE) if not v.missing()]
        for line in summary({v: [stage.run_pair(v) for _ in range(rounds)] for v in variants}):
            print("   " + line)
    elif compare:
        print("\n4. The alternatives: the same pair without sdready (ms after B started)")
        results = [v if v.missing() else stage.run_pair(v) for v in COMPARE]
        for line in table(results, "what tells systemd"):
            print("   " + line)
        print(
            "   (A's request to a socket that listens before the app is loaded waits in the"
            " kernel's\n   backlog: it is answered if the app is up within A's timeout.)"
        )
    return ok


def timeline(run: Run) -> list[str]:
    """The run's events in ms after B started, with where each time comes from."""
    systemd = run.source == "systemd"
    # The log pipeline (manager -> console pty -> file -> us) lags a little, under load a few
    # ms: measured on READY against systemd's own timestamp and taken off the STATUS times.
    lag = 0.0
    ready_logged = next((t for t, f in run.messages if "READY" in f), None)
    if systemd and run.ready is not None and ready_logged is not None:
        lag = max(0.0, ready_logged - run.ready)
    rows: list[tuple[float | None, int, str]] = [(run.b_start, 0, "B started")]
    for when, fields in run.messages:
        if "READY" in fields:
            break  # what came later (STOPPING when the demo stops B) is another story
        if "STATUS" in fields:
            text = f"B STATUS={fields['STATUS']}"
            # Sent as the wait begins; under load the server may listen first (the wait
            # then ends at its first look): say so rather than seem to wait for a listener.
            listened = run.listening is not None and when - lag >= run.listening
            if fields["STATUS"].startswith("Waiting") and listened:
                text += "  (sent as the wait began: B already listened)"
            rows.append((when - lag, 1, text))
    listening = f"B listening on 127.0.0.1:{run.port}"
    untimed = ""  # a row whose moment is a window, not one time
    others = [when for when in (run.ready, run.a_start) if when is not None]
    if run.listening is not None and _straddles(run, others):
        # Two polls bracket listen(), and READY or A's start fell between them: no single
        # time can be claimed. The row shows the window, just above the first such event.
        start = run.b_start or 0.0
        low = max(run.not_listening or start, start)
        listening += (
            f" (between +{(low - start) * 1000:.0f} and +{(run.listening - start) * 1000:.0f} ms)"
        )
        first = min((when for when in others if low < when < run.listening), default=low)
        rows.append((first, 3, listening))
        untimed = listening
    else:
        rows.append((run.listening, 3, listening))
    if run.ready is not None:
        ready_status = next((f.get("STATUS") for _, f in run.messages if "READY" in f), None)
        text = "B READY=1" + (f"  STATUS={ready_status}" if ready_status else "")
        rows.append((run.ready, 4, text))
    rows.append((run.a_start, 5, "A started"))
    rows.append((run.a_done, 6, _a_line(run)))
    start = run.b_start or 0.0
    rows.sort(key=lambda row: (row[0] is None, round(((row[0] or 0.0) - start) * 1000), row[1]))
    lines = [f"{'' if text == untimed else run.ms(when):>9}  {text}" for when, _, text in rows]
    has_status = any(text.startswith("B STATUS") for _when, _rank, text in rows)
    if systemd:
        what = "start and READY" if run.ready is not None else "start"
        parts = [f"{what}: systemd's own timestamps"]
        if has_status:
            delay = (
                f", each moved {lag * 1000:.1f} ms earlier: the log's lag behind systemd's own"
                " READY timestamp"
                if lag >= 0.0005
                else ""
            )
            parts.append(f"STATUS: systemd's log as it received them{delay}")
    else:
        parts = ["start: the demo's clock"]
        if has_status:
            parts.append("STATUS and READY: when the recorder received them")
    parts.append(f"listening: the kernel's socket table, polled every {POLL * 1000:g} ms")
    parts.append("A's answer: A's clock")
    legend = "; ".join(parts)
    lines += textwrap.wrap(f"({legend})", width=92, subsequent_indent=" ")
    return lines


def _straddles(run: Run, events: Sequence[float]) -> bool:
    """Whether an event fell inside the poll window that brackets B's listen()."""
    if run.listening is None:
        return False
    low = run.not_listening if run.not_listening is not None else run.b_start
    return any((low is None or low < when) and when < run.listening for when in events)


def order(run: Run, when: float | None, *, margin: bool = False) -> str:
    """Whether *when* came before or after B listened, as the kernel's socket table shows;
    with *margin*, by how much it came after (a race's winning margin)."""
    if when is None or run.listening is None:
        return "" if when is None else "B never listened"
    if when >= run.listening:
        if margin:
            return f"{(when - run.listening) * 1000:.0f} ms after B listened"
        return "after B listened"
    low = run.not_listening if run.not_listening is not None else run.b_start
    if low is not None and when <= low:
        return "before B listened"
    return f"within {POLL * 1000:g} ms of B listening"


def verdict(run: Run) -> str:
    """One reading of the run no one can misread: guaranteed, or a race and how A fared
    (an early READY is never called a win, even when A's GET happened to succeed)."""
    what = "READY" if run.ready is not None else "A started"
    when = run.ready if run.ready is not None else run.a_start
    if run.variant.guarantees:
        seen = order(run, when)
        ordering = f"{what} {seen}" if seen else "no READY"
        if run.a_ok and "before" not in seen:
            return f"guaranteed: {run.variant.guarantees}; this round, {ordering}"
        return f"UNEXPECTED for an approach that guarantees it: {ordering}"
    seen = order(run, when, margin=True)
    ordering = f"{what} {seen}" if seen else "no READY"
    relies = f"; relies on {run.variant.relies_on}" if run.variant.relies_on else ""
    outcome = "A's GET got its answer this time" if run.a_ok else "A's GET failed"
    return f"no guarantee, {outcome}: {ordering}{relies}"


def _a_line(run: Run) -> str:
    text = run.a_output.splitlines()[-1] if run.a_output else "A: (no output)"
    return text


def table(runs: Sequence[Run | Variant], how: str) -> list[str]:
    """One line per run: when B listened, when READY came, when A ran and what it got."""
    lines = [f"{'B':<24}{how:<30}{'listening':>10}{'READY':>8}{'A ran':>8}  A's GET"]
    for run in runs:
        if isinstance(run, Variant):  # could not run here
            lines.append(f"{run.label:<24}{run.how:<30}  skipped: {run.missing()}")
            continue
        if run.a_ok:
            result = f"HTTP 200 at {_ms(run, run.a_done)}"
        else:
            result = _a_line(run).split("failed: ")[-1].removeprefix("[Errno 111] ")
        lines.append(
            f"{run.variant.label:<24}{run.variant.how:<30}{_ms(run, run.listening):>10}"
            f"{_ms(run, run.ready):>8}{_ms(run, run.a_start):>8}  {result}"
        )
        lines += textwrap.wrap(
            verdict(run), width=92, initial_indent="  → ", subsequent_indent="    "
        )
    return lines


def summary(runs: dict[Variant, list[Run]]) -> list[str]:
    """Per variant: how often A succeeded, READY came before B listened, and the verdict."""
    lines = [
        f"{'B':<24}{'what tells systemd':<30}{'A ok':>6}{'READY<listen':>14}{'A answered':>12}"
        "  verdict",
    ]
    for variant, results in runs.items():
        answers = [r.a_done - r.b_start for r in results if r.a_ok and r.a_done and r.b_start]
        answer = f"+{statistics.median(answers) * 1000:.0f} ms" if answers else "—"
        won = sum(r.a_ok for r in results)
        ok = f"{won}/{len(results)}"
        with_ready = [r for r in results if r.ready is not None]
        early = sum(order(r, r.ready).startswith("before") for r in with_ready)
        before = f"{early}/{len(with_ready)}" if with_ready else "no READY"
        if variant.guarantees:
            unexpected = sum(verdict(r).startswith("UNEXPECTED") for r in results)
            call = "guaranteed" if not unexpected else f"UNEXPECTED in {unexpected}"
        else:
            call = f"no guarantee: A answered {won}, failed {len(results) - won}"
        lines.append(f"{variant.label:<24}{variant.how:<30}{ok:>6}{before:>14}{answer:>12}  {call}")
    legend = (
        "(READY<listen: rounds whose READY came before B listened, by the kernel's socket"
        " table; A answered: the median, after B started; guaranteed: READY waits for the"
        " socket by construction, so A's success does not depend on timing)"
    )
    lines += textwrap.wrap(legend, width=92, subsequent_indent=" ")
    return lines


def _ms(run: Run, when: float | None) -> str:
    return run.ms(when).removesuffix(" ms")


# -- main --------------------------------------------------------------------------------


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # make's SIGTERM cleans up like Ctrl-C


def _leftovers(tag: str, ports: Sequence[int]) -> list[str]:
    """What of ours would still exist: the manager's cgroups, listeners on our ports."""
    found: list[str] = []
    if tag:
        root = Path("/sys/fs/cgroup")
        trees = [root, *(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
        found += [
            f"cgroup {t / f'sdready-{tag}'}" for t in trees if (t / f"sdready-{tag}").exists()
        ]
    found += [f"a listener on 127.0.0.1:{port}" for port in ports if listening(port)]
    return found


@contextlib.contextmanager
def _stage(use_recorder: bool) -> Iterator[Stage]:
    reason = None if use_recorder else unavailable_reason()
    manager: UserManager | None = None
    if reason is None and not use_recorder:
        # debug: the manager then logs every notification it receives, for the timeline.
        manager = UserManager(log_level="debug")
        try:
            manager.start()  # cleans up after itself when it fails
        except SystemdUnavailable as exc:
            reason, manager = str(exc).splitlines()[0], None
    if manager is not None:
        try:
            yield SystemdStage(manager)
        finally:
            manager.stop()
        return
    why = "--recorder" if use_recorder else f"No private systemd user manager here ({reason})"
    print(f"{why}: {RecorderStage().describe()}.")
    yield RecorderStage()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", action="store_true", help="also run the alternatives")
    parser.add_argument(
        "--rounds", type=int, default=1, help="with --compare: rounds per variant, summarized"
    )
    parser.add_argument("--recorder", action="store_true", help="NotifyRecorder, not systemd")
    parser.add_argument(
        "--startup", type=float, default=STARTUP_SECONDS, help="B's startup time in seconds"
    )
    args = parser.parse_args(argv)
    global _startup
    _startup = args.startup
    signal.signal(signal.SIGTERM, _raise_interrupt)
    began = time.monotonic()
    print(
        f"sdready demo: service A needs service B (After=, Requires=). B's startup takes "
        f"{_startup:g} s;\nA makes one HTTP GET to B at once ({A_TIMEOUT:g} s timeout)."
    )
    tag = ""
    interrupted = False
    try:
        with _stage(args.recorder) as stage:
            if isinstance(stage, SystemdStage):
                print(f"Running under {stage.describe()}.")
                tag = stage.manager.tag
            ok = story(stage, compare=args.compare, rounds=max(1, args.rounds))
    except KeyboardInterrupt:  # the stage has stopped everything on its way out
        interrupted, ok = True, False
    left = _leftovers(tag, USED_PORTS)
    took = time.monotonic() - began
    gone = (
        "Units stopped, manager gone, nothing left behind."
        if tag
        else "Processes stopped, nothing left behind."
    )
    verdict = f"LEFT BEHIND: {', '.join(left)}" if left else gone
    print(f"\n{'Interrupted after' if interrupted else 'Done in'} {took:.1f} s. {verdict}")
    if interrupted:
        return 130
    if not ok:
        print("UNEXPECTED: a run above did not behave as described.")
    return 0 if ok and not left else 1


if __name__ == "__main__":
    sys.exit(main())
