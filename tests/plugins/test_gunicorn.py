"""sdready.plugins.gunicorn against real gunicorn processes, with a NotifyRecorder as systemd."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _gunicorn_support import (
    Gunicorn,
    assert_no_builtin_ready,
    booted_times,
    has_gunicorn_asgi,
    write_apps,
)
from _servers import http_get, reserved_port
from sdready.testing import NotifyMessage, NotifyRecorder

pytest.importorskip("gunicorn")

ASGI_CLASSES = [
    pytest.param("asgi", id="gunicorn-asgi"),
    pytest.param("uvicorn_worker.UvicornWorker", id="uvicorn"),
]


@pytest.fixture
def apps(tmp_path: Path) -> Path:
    return write_apps(tmp_path / "apps")


@pytest.fixture
def recorder() -> Iterator[NotifyRecorder]:
    recorder = NotifyRecorder(set_environment=False).start()
    try:
        yield recorder
    finally:
        recorder.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory short enough for unix socket paths (sun_path holds 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="sdr-g-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _readies(recorder: NotifyRecorder) -> list[NotifyMessage]:
    return [m for m in recorder.messages if m.get("READY") == "1"]


def _worker_class(name: str) -> str:
    if name == "asgi" and not has_gunicorn_asgi():
        pytest.skip("this gunicorn has no asgi worker (gunicorn >= 24)")
    return name


# -- the module and install() -----------------------------------------------------------------


def test_module_namespace_sets_only_hooks(notify_socket: NotifyRecorder) -> None:
    """gunicorn applies every module name that matches a setting: only our hooks may."""
    import sdready.plugins.gunicorn as plugin
    from gunicorn.config import make_settings

    assert os.environ["NOTIFY_SOCKET"] == notify_socket.address  # importing takes nothing
    applied = set(vars(plugin)) & set(make_settings())
    assert applied == set(plugin._HOOKS)
    assert plugin.__all__ == ["install"]


def test_install_is_idempotent_and_keeps_exact_arity() -> None:
    from gunicorn.config import validate_callable
    from sdready.plugins.gunicorn import _HOOKS, install

    calls: list[object] = []

    def post_worker_init(worker: object) -> None:
        calls.append(worker)

    namespace: dict[str, object] = {"post_worker_init": post_worker_init}
    install(namespace)
    first = dict(namespace)
    install(namespace)
    assert namespace == first  # the second call wrapped nothing
    for name, (arity, _ours, _last) in _HOOKS.items():
        validate_callable(arity)(namespace[name])  # gunicorn's own arity check passes
    sentinel = object()
    namespace["post_worker_init"](sentinel)  # type: ignore[operator]
    assert calls == [sentinel]


def test_install_rejects_a_hook_with_the_wrong_arity() -> None:
    from sdready.plugins.gunicorn import install

    def on_starting() -> None:
        pass

    with pytest.raises(TypeError, match="arity"):
        install({"on_starting": on_starting})


def test_user_hook_errors_propagate_unchanged() -> None:
    from sdready.plugins.gunicorn import install

    def post_worker_init(worker: object) -> None:
        raise LookupError("theirs")

    namespace: dict[str, object] = {"post_worker_init": post_worker_init}
    install(namespace)
    with pytest.raises(LookupError, match="theirs"):
        namespace["post_worker_init"](object())  # type: ignore[operator]


@pytest.mark.parametrize(
    ("env", "conf", "message"),
    [
        ({"SDREADY_READY_WORKERS": "none"}, "", "SDREADY_READY_WORKERS"),
        ({"SDREADY_ON_TIMEOUT": "maybe"}, "", "on_timeout"),
        ({}, "sdready_ready_worker = 2\n", "sdready_ready_worker"),
    ],
    ids=["env-workers", "env-on-timeout", "config-typo"],
)
def test_invalid_options_stop_gunicorn(
    apps: Path, env: dict[str, str], conf: str, message: str
) -> None:
    config = apps / "bad.conf.py"
    config.write_text(conf + "from sdready.plugins.gunicorn import install\ninstall(globals())\n")
    with (
        NotifyRecorder(set_environment=False) as recorder,
        Gunicorn(["wsgi_app:app"], apps=apps, recorder=recorder, config=str(config), env=env) as g,
    ):
        assert g.wait(15) != 0
        log = g.log()
        # One line, as gunicorn says its own bad settings, naming the setting; no traceback.
        assert message in log and "Error: sdready: " in log and "Traceback" not in log, log
        failed = recorder.wait_for(lambda m: m.get("STATUS", "").startswith("Startup failed:"))
        assert message in failed["STATUS"]
        recorder.barrier()
        assert recorder.values("READY") == []


def test_inert_without_notify_socket(apps: Path) -> None:
    """No NOTIFY_SOCKET: no thread in the arbiter, nothing logged above DEBUG, app serves."""
    log_file = apps / "sdready.log"
    config = apps / "inert.conf.py"
    config.write_text(
        textwrap.dedent(
            f"""
            import logging
            _handler = logging.FileHandler({str(log_file)!r})
            _handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
            logging.getLogger("sdready").addHandler(_handler)
            logging.getLogger("sdready").setLevel(logging.DEBUG)
            from sdready.plugins.gunicorn import install
            install(globals())
            """
        )
    )
    with (
        reserved_port() as port,
        Gunicorn(
            ["--bind", f"127.0.0.1:{port}", "wsgi_app:app"],
            apps=apps,
            recorder=None,
            config=str(config),
            env={"WATCHDOG_USEC": "1000000"},
        ) as g,
    ):
        deadline = time.monotonic() + 15
        while True:
            try:
                assert http_get(("127.0.0.1", port))[0] == 200
                break
            except OSError:
                assert time.monotonic() < deadline, g.log()
                time.sleep(0.05)
        threads = os.listdir(f"/proc/{g.pid}/task")
        assert threads == [str(g.pid)], "the arbiter started a thread without NOTIFY_SOCKET"
        g.signal(signal.SIGTERM)
        assert g.wait() == 0
    records = log_file.read_text().splitlines()
    assert records, "expected sdready's DEBUG records"
    assert all(line.startswith("DEBUG ") for line in records), records


# -- readiness ------------------------------------------------------------------------------


@pytest.mark.parametrize("worker_class", ["sync", "gthread", *ASGI_CLASSES])
def test_ready_once_a_worker_can_serve(
    apps: Path, recorder: NotifyRecorder, worker_class: str, tmp_path: Path
) -> None:
    asgi = worker_class not in ("sync", "gthread")
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {"APP_MARK_DIR": str(marks), "APP_LIFESPAN_DELAY" if asgi else "APP_IMPORT_DELAY": "1"}
    with (
        reserved_port() as port,
        Gunicorn(
            ["--bind", f"127.0.0.1:{port}", "asgi_app:app" if asgi else "wsgi_app:app"],
            apps=apps,
            recorder=recorder,
            worker_class=_worker_class(worker_class),
            env=env,
        ) as g,
    ):
        ready = g.wait_for("READY=1")
        assert http_get(("127.0.0.1", port))[0] == 200
        assert ready.pid == g.pid
        assert ready.time >= min(booted_times(marks).values())
        assert ready["STATUS"] == f"Ready: 1 worker, listening on 127.0.0.1:{port} (pid {g.pid})"
        assert recorder.statuses[:2] == ["Starting…", "Booting workers (0/1)"]
        g.signal(signal.SIGTERM)
        g.wait_for("STOPPING=1")
        assert g.wait() == 0
    assert len(_readies(recorder)) == 1
    assert_no_builtin_ready(recorder)


def test_all_mode_waits_for_every_worker(
    apps: Path, recorder: NotifyRecorder, tmp_path: Path
) -> None:
    stagger = tmp_path / "stagger"
    stagger.mkdir()
    env = {
        "APP_STAGGER_DIR": str(stagger),
        "APP_STAGGER_STEP": "0.4",
        "SDREADY_READY_WORKERS": "all",
    }
    with (
        reserved_port() as port,
        Gunicorn(
            ["--bind", f"127.0.0.1:{port}", "wsgi_app:app"],
            apps=apps,
            recorder=recorder,
            workers=3,
            env=env,
        ) as g,
    ):
        ready = g.wait_for("READY=1")
        assert ready["STATUS"].startswith("Ready: 3 workers, listening on ")
        before = [m["STATUS"] for m in recorder.messages[: recorder.messages.index(ready)]]
        assert before[-2:] == ["Booting workers (1/3)", "Booting workers (2/3)"]
    assert len(_readies(recorder)) == 1


def test_default_mode_is_ready_with_the_first_worker(
    apps: Path, recorder: NotifyRecorder, tmp_path: Path
) -> None:
    stagger = tmp_path / "stagger"
    stagger.mkdir()
    env = {"APP_STAGGER_DIR": str(stagger), "APP_STAGGER_STEP": "0.5"}
    with (
        reserved_port() as port,
        Gunicorn(
            ["--bind", f"127.0.0.1:{port}", "wsgi_app:app"],
            apps=apps,
            recorder=recorder,
            workers=2,
            env=env,
        ) as g,
    ):
        ready = g.wait_for("READY=1")
        assert ready["STATUS"].startswith("Ready: 1/2 workers, listening on ")
        g.wait_for(lambda m: m.get("STATUS", "").startswith("Ready: 2 workers"), 10)
    assert len(_readies(recorder)) == 1


# -- failures -------------------------------------------------------------------------------


def test_import_error_means_no_ready(apps: Path, recorder: NotifyRecorder) -> None:
    with (
        reserved_port() as port,
        Gunicorn(
            ["--bind", f"127.0.0.1:{port}", "broken_app:app"], apps=apps, recorder=recorder
        ) as g,
    ):
        assert g.wait(20) != 0
    assert not _readies(recorder)
    final = recorder.statuses[-1]
    assert final.startswith("Startup failed: "), recorder.statuses
    assert "sdready_test_no_such_module" in final
    assert_no_builtin_ready(recorder)


@pytest.mark.parametrize("worker_class", ASGI_CLASSES)
def test_lifespan_startup_failure_means_no_ready(
    apps: Path, recorder: NotifyRecorder, worker_class: str
) -> None:
    with (
        reserved_port() as port,
        Gunicorn(
            ["--bind", f"127.0.0.1:{port}", "asgi_app:app"],
            apps=apps,
            recorder=recorder,
            worker_class=_worker_class(worker_class),
            env={"APP_LIFESPAN_FAIL": "1"},
        ) as g,
    ):
        assert g.wait(20) != 0
    assert not _readies(recorder)
    assert any("database unreachable" in s for s in recorder.statuses), recorder.statuses
    assert recorder.statuses[-1].startswith("Startup failed: ")


def test_aborted_boot_reports_why_and_the_next_worker_makes_it_ready(
    apps: Path, recorder: NotifyRecorder
) -> None:
    """worker_abort (SIGABRT) while booting: STATUS says so; gunicorn boots another one."""
    with (
        reserved_port() as port,
        Gunicorn(
            ["--bind", f"127.0.0.1:{port}", "wsgi_app:app"],
            apps=apps,
            recorder=recorder,
            env={"APP_IMPORT_DELAY": "1.5"},
        ) as g,
    ):
        deadline = time.monotonic() + 10
        while not (found := re.search(r"Booting worker with pid: (\d+)", g.log())):
            assert time.monotonic() < deadline, g.log()
            time.sleep(0.02)
        time.sleep(0.3)  # importing the app now
        os.kill(int(found[1]), signal.SIGABRT)
        failed = g.wait_for(lambda m: m.get("STATUS", "").startswith("Startup failed: "))
        assert f"worker {found[1]}: aborted (SIGABRT" in failed["STATUS"]
        ready = g.wait_for("READY=1")
        assert ready.time > failed.time
        assert http_get(("127.0.0.1", port))[1].split()[1] != found[1]
    assert len(_readies(recorder)) == 1


@pytest.mark.parametrize("policy", ["fail", "warn"])
def test_ready_timeout_policy(
    apps: Path, recorder: NotifyRecorder, policy: str, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {
        "APP_IMPORT_DELAY": "2.5",
        "APP_MARK_DIR": str(marks),
        "SDREADY_READY_TIMEOUT": "1",
        "SDREADY_ON_TIMEOUT": policy,
    }
    with (
        reserved_port() as port,
        Gunicorn(
            ["--bind", f"127.0.0.1:{port}", "wsgi_app:app"], apps=apps, recorder=recorder, env=env
        ) as g,
    ):
        if policy == "fail":
            g.wait_for("STATUS=Not ready: no worker booted within 1 s; still waiting")
            ready = g.wait_for("READY=1")  # still sent once a worker can serve
            assert ready.time >= min(booted_times(marks).values())
        else:
            ready = g.wait_for("READY=1")
            assert ready["STATUS"].startswith("Ready (no worker booted within 1 s")
            g.wait_for(lambda m: m.get("STATUS", "").startswith("Ready: 1 worker"))
    assert len(_readies(recorder)) == 1


# -- reload and shutdown --------------------------------------------------------------------


@pytest.mark.parametrize(
    "worker_class", ["sync", pytest.param("uvicorn_worker.UvicornWorker", id="uvicorn")]
)
def test_hup_sends_reloading_then_ready_for_the_new_generation(
    apps: Path, recorder: NotifyRecorder, worker_class: str, tmp_path: Path
) -> None:
    asgi = worker_class != "sync"
    version = tmp_path / "version"
    version.write_text("v1")
    env = {
        "APP_VERSION_FILE": str(version),
        "APP_LIFESPAN_DELAY" if asgi else "APP_IMPORT_DELAY": "1",
    }
    with (
        reserved_port() as port,
        Gunicorn(
            ["--bind", f"127.0.0.1:{port}", "asgi_app:app" if asgi else "wsgi_app:app"],
            apps=apps,
            recorder=recorder,
            workers=2,
            worker_class=worker_class,
            env=env,
        ) as g,
    ):
        first = g.wait_for("READY=1")
        assert http_get(("127.0.0.1", port))[1].startswith("v1 ")
        version.write_text("v2")
        since = len(recorder)
        g.signal(signal.SIGHUP)
        reloading = g.wait_for("RELOADING=1", since=since)
        assert int(reloading["MONOTONIC_USEC"]) > 0
        assert reloading["STATUS"] == "Reloading: booting workers (0/2, generation 2)"
        second = g.wait_for("READY=1", since=since)
        assert http_get(("127.0.0.1", port))[1].startswith("v2 ")  # the new generation answers
        assert second.time > reloading.time > first.time
        assert second["STATUS"].endswith(f"(pid {g.pid}, generation 2)")
        time.sleep(0.5)
        g.signal(signal.SIGTERM)
        g.wait_for("STOPPING=1")
        assert g.wait() == 0
    assert len(_readies(recorder)) == 2  # exactly one per generation
    assert_no_builtin_ready(recorder)


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT], ids=lambda s: s.name
)
def test_stop_signals_send_stopping(
    apps: Path, recorder: NotifyRecorder, signum: signal.Signals
) -> None:
    with (
        reserved_port() as port,
        Gunicorn(
            ["--bind", f"127.0.0.1:{port}", "wsgi_app:app"], apps=apps, recorder=recorder
        ) as g,
    ):
        ready = g.wait_for("READY=1")
        g.signal(signum)
        stopping = g.wait_for("STOPPING=1")
        assert stopping["STATUS"] == "Stopping…"
        assert stopping.time > ready.time and stopping.pid == g.pid
        assert g.wait() == 0
    assert len(recorder.values("STOPPING")) == 1
    after = recorder.messages[recorder.messages.index(stopping) + 1 :]
    assert not [m for m in after if "READY" in m or "WATCHDOG" in m], after


# -- user hooks -----------------------------------------------------------------------------

_HOOK_CONFIG = """
import os
import time

_LOG = os.environ["HOOK_LOG"]


def _log(name):
    with open(_LOG, "a") as file:
        file.write(f"{{name}} {{os.getpid()}} {{time.monotonic()!r}}\\n")


def on_starting(server): _log("on_starting")
def nworkers_changed(server, new, old): _log("nworkers_changed")
def when_ready(server): _log("when_ready")
def on_reload(server): _log("on_reload")
{middle}
def pre_fork(server, worker): _log("pre_fork")
def post_fork(server, worker): _log("post_fork")
def post_worker_init(worker):
    time.sleep(0.3)
    _log("post_worker_init")
def worker_exit(server, worker): _log("worker_exit")
def child_exit(server, worker): _log("child_exit")
def on_exit(server): _log("on_exit")
{after}
"""
_INSTALL = "from sdready.plugins.gunicorn import install\ninstall(globals())\ninstall(globals())\n"


def _hook_run(
    apps: Path, recorder: NotifyRecorder, middle: str, after: str
) -> tuple[list[tuple[str, int, float]], str]:
    """Run gunicorn with the hook-logging config; return the hook calls and gunicorn's log."""
    log = apps / f"hooks-{time.monotonic_ns()}.log"
    config = apps / f"hooks{time.monotonic_ns()}.conf.py"
    config.write_text(_HOOK_CONFIG.format(middle=middle, after=after))
    installed = "install" in middle + after

    def lines() -> list[tuple[str, int, float]]:
        if not log.exists():
            return []
        return [
            (n, int(p), float(t)) for n, p, t in (x.split() for x in log.read_text().splitlines())
        ]

    def wait_lines(name: str, count: int) -> None:
        deadline = time.monotonic() + 15
        while sum(1 for n, _, _ in lines() if n == name) < count:
            assert time.monotonic() < deadline, f"{name} x{count}: {lines()}\n{g.log()}"
            time.sleep(0.02)

    with (
        reserved_port() as port,
        Gunicorn(
            ["--bind", f"127.0.0.1:{port}", "wsgi_app:app"],
            apps=apps,
            recorder=recorder,
            config=str(config),
            env={"HOOK_LOG": str(log)},
        ) as g,
    ):
        wait_lines("post_worker_init", 1)
        if installed:  # a HUP before READY would fold generation 1 into 2
            g.wait_for("READY=1")
        g.signal(signal.SIGHUP)
        wait_lines("post_worker_init", 2)
        wait_lines("child_exit", 1)
        if installed:
            g.wait_for(lambda m: m.get("READY") == "1" and "generation 2" in m["STATUS"])
        g.signal(signal.SIGTERM)
        assert g.wait() == 0
    return lines(), g.log()


def _shape(lines: list[tuple[str, int, float]]) -> tuple[list[str], list[list[str]]]:
    """The arbiter's hook sequence and each worker's, in order."""
    arbiter = lines[0][1]
    by_pid: dict[int, list[str]] = {}
    for name, pid, _ in lines:
        by_pid.setdefault(pid, []).append(name)
    return by_pid.pop(arbiter), list(by_pid.values())


def test_user_hooks_are_called_in_gunicorns_order(apps: Path) -> None:
    with NotifyRecorder(set_environment=False) as plain:
        baseline, _ = _hook_run(apps, plain, "", "")
    with NotifyRecorder(set_environment=False) as recorder:
        composed, log = _hook_run(apps, recorder, "", _INSTALL)
        readies = _readies(recorder)
    assert _shape(composed) == _shape(baseline)
    assert _shape(composed)[0][:3] == ["nworkers_changed", "on_starting", "when_ready"]
    # READY only once the user's post_worker_init has finished, per generation.
    inits = [t for n, _, t in composed if n == "post_worker_init"]
    assert len(readies) == 2
    assert readies[0].time > inits[0] and readies[1].time > inits[1]
    assert "install(globals())" not in log


def test_hooks_defined_after_install_are_still_wrapped(apps: Path) -> None:
    """post_fork, post_worker_init, ... defined below install(): wrapped at startup, warned."""
    with NotifyRecorder(set_environment=False) as recorder:
        composed, log = _hook_run(apps, recorder, _INSTALL, "")
        readies = _readies(recorder)
    inits = [t for n, _, t in composed if n == "post_worker_init"]
    assert len(readies) == 2 and readies[0].time > inits[0] and readies[1].time > inits[1]
    assert "post_worker_init was set after install(globals())" in log


# -- binds, sockets, server modes -----------------------------------------------------------


def test_reuse_port_waits_for_every_workers_own_socket(
    apps: Path, recorder: NotifyRecorder, tmp_path: Path
) -> None:
    if not hasattr(socket, "SO_REUSEPORT"):
        pytest.skip("no SO_REUSEPORT")
    stagger = tmp_path / "stagger"
    stagger.mkdir()
    env = {"APP_STAGGER_DIR": str(stagger), "APP_STAGGER_STEP": "0.6", "APP_IMPORT_DELAY": "0.3"}
    with (
        reserved_port(reuse_port=True) as port,
        Gunicorn(
            ["--bind", f"127.0.0.1:{port}", "--reuse-port", "wsgi_app:app"],
            apps=apps,
            recorder=recorder,
            workers=2,
            env=env,
        ) as g,
    ):
        ready = g.wait_for("READY=1")
        # Each of the two sockets gets connections; every one must be answered now.
        pids = {http_get(("127.0.0.1", port))[1].split()[1] for _ in range(20)}
        assert ready["STATUS"] == f"Ready: 2 workers, listening on 127.0.0.1:{port} (pid {g.pid})"
        assert len(pids) == 2
        assert "Booting workers (1/2)" in recorder.statuses
    assert len(_readies(recorder)) == 1


def test_unix_and_tcp_binds(apps: Path, recorder: NotifyRecorder, short_dir: Path) -> None:
    path = short_dir / "app.sock"
    with (
        reserved_port() as port,
        Gunicorn(
            ["--bind", f"unix:{path}", "--bind", f"127.0.0.1:{port}", "wsgi_app:app"],
            apps=apps,
            recorder=recorder,
            env={"APP_IMPORT_DELAY": "0.5"},
        ) as g,
    ):
        ready = g.wait_for("READY=1")
        assert http_get(str(path))[0] == 200
        assert http_get(("127.0.0.1", port))[0] == 200
        assert ready["STATUS"] == (
            f"Ready: 1 worker, listening on {path}, 127.0.0.1:{port} (pid {g.pid})"
        )
        g.signal(signal.SIGTERM)
        assert g.wait() == 0
    assert not path.exists()


def test_preload(apps: Path, recorder: NotifyRecorder, tmp_path: Path) -> None:
    """--preload imports the app in the arbiter: NOTIFY_SOCKET is already gone by then."""
    seen = tmp_path / "seen"
    with (
        reserved_port() as port,
        Gunicorn(
            ["--bind", f"127.0.0.1:{port}", "--preload", "wsgi_app:app"],
            apps=apps,
            recorder=recorder,
            workers=2,
            env={"APP_IMPORT_DELAY": "1", "APP_ENV_FILE": str(seen)},
        ) as g,
    ):
        g.wait_for("READY=1")
        assert http_get(("127.0.0.1", port))[0] == 200
    assert seen.read_text() == f"{g.pid} -\n"  # imported once, in the arbiter, without it
    assert len(_readies(recorder)) == 1
    assert_no_builtin_ready(recorder)


def test_workers_never_see_notify_socket(
    apps: Path, recorder: NotifyRecorder, tmp_path: Path
) -> None:
    seen = tmp_path / "seen"
    with (
        reserved_port() as port,
        Gunicorn(
            ["--bind", f"127.0.0.1:{port}", "wsgi_app:app"],
            apps=apps,
            recorder=recorder,
            workers=2,
            env={"APP_ENV_FILE": str(seen), "SDREADY_READY_WORKERS": "all"},
        ) as g,
    ):
        g.wait_for("READY=1")
    lines = seen.read_text().splitlines()
    assert len(lines) == 2 and all(line.endswith(" -") for line in lines), lines


_ACTIVATE = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.close(int(sys.argv[1]))
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
os.execv(sys.argv[2], sys.argv[2:])
"""


def test_socket_activation(apps: Path, recorder: NotifyRecorder) -> None:
    """LISTEN_FDS: the socket accepts before gunicorn even starts; READY still waits."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    # As systemd does: the socket as fd 3, LISTEN_PID the pid that execs gunicorn.
    wrapper = [sys.executable, "-c", _ACTIVATE, str(fd)]
    try:
        with Gunicorn(
            ["wsgi_app:app"],
            apps=apps,
            recorder=recorder,
            wrapper=wrapper,
            pass_fds=[fd],
            env={"APP_IMPORT_DELAY": "1"},
        ) as g:
            ready = g.wait_for("READY=1")
            assert http_get(("127.0.0.1", port))[0] == 200
            assert (
                ready["STATUS"] == f"Ready: 1 worker, listening on 127.0.0.1:{port} (pid {g.pid})"
            )
    finally:
        listener.close()
    assert len(_readies(recorder)) == 1


def test_code_reload_restarts_the_worker_without_a_second_ready(
    apps: Path, recorder: NotifyRecorder
) -> None:
    with (
        reserved_port() as port,
        Gunicorn(
            ["--bind", f"127.0.0.1:{port}", "--reload", "wsgi_app:app"],
            apps=apps,
            recorder=recorder,
        ) as g,
    ):
        g.wait_for("READY=1")
        pid = http_get(("127.0.0.1", port))[1].split()[1]
        since = len(recorder)
        app = apps / "wsgi_app.py"
        time.sleep(1.1)  # a new mtime for the polling reloader
        app.write_text(app.read_text() + "\n# changed\n")
        g.wait_for(lambda m: m.get("STATUS", "").startswith("Workers: 0/1"), 15, since=since)
        g.wait_for(lambda m: m.get("STATUS", "").startswith("Ready: 1 worker"), 15, since=since)
        assert http_get(("127.0.0.1", port))[1].split()[1] != pid
    assert len(_readies(recorder)) == 1


@pytest.mark.parametrize("after_hup", [False, True], ids=["fresh", "after-hup"])
def test_usr2_new_master_takes_over(apps: Path, recorder: NotifyRecorder, after_hup: bool) -> None:
    """USR2: the new master claims MAINPID with READY; the old one then leaves silently."""
    with (
        reserved_port() as port,
        Gunicorn(
            ["--bind", f"127.0.0.1:{port}", "wsgi_app:app"], apps=apps, recorder=recorder
        ) as g,
    ):
        g.wait_for("READY=1")
        if after_hup:  # gunicorn then execs with an environment copied after we took it
            since = len(recorder)
            g.signal(signal.SIGHUP)
            g.wait_for("READY=1", since=since)
        since = len(recorder)
        g.signal(signal.SIGUSR2)
        takeover = g.wait_for(lambda m: m.get("READY") == "1" and m.pid != g.pid, since=since)
        new_master = takeover.pid
        assert takeover["MAINPID"] == str(new_master)
        g.signal(signal.SIGTERM)  # retire the old master
        assert g.wait() == 0
        assert http_get(("127.0.0.1", port))[0] == 200  # the new generation serves on
        since = len(recorder)
        os.kill(new_master, signal.SIGTERM)
        stopping = g.wait_for("STOPPING=1", since=since)
        assert stopping.pid == new_master
        deadline = time.monotonic() + 15
        while os.path.exists(f"/proc/{new_master}") and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [m.pid for m in recorder.messages if "STOPPING" in m] == [new_master]


# -- watchdog -------------------------------------------------------------------------------


@pytest.mark.slow
def test_watchdog_pings_only_while_a_worker_heartbeats(
    apps: Path, recorder: NotifyRecorder
) -> None:
    """A stopped worker stops the pings; a live one brings them back.

    ``--timeout 0`` keeps gunicorn from replacing the stopped worker, so the window is
    ours to see; the heartbeat limit is then the watchdog period (1 s here).
    """
    with (
        reserved_port() as port,
        Gunicorn(
            ["--bind", f"127.0.0.1:{port}", "--timeout", "0", "wsgi_app:app"],
            apps=apps,
            recorder=recorder,
            env={"WATCHDOG_USEC": "1000000"},
        ) as g,
    ):
        ready = g.wait_for("READY=1")
        first = g.wait_for("WATCHDOG=1", since=recorder.messages.index(ready))
        g.wait_for("WATCHDOG=1", since=recorder.messages.index(first) + 1)
        worker = int(http_get(("127.0.0.1", port))[1].split()[1])
        os.kill(worker, signal.SIGSTOP)  # stuck: no heartbeat any more
        stopped = time.monotonic()
        try:
            time.sleep(3.0)
        finally:
            os.kill(worker, signal.SIGCONT)
        resumed = time.monotonic()
        g.wait_for(lambda m: "WATCHDOG" in m and m.time > resumed, 3)
        pings = [m.time for m in recorder.messages if "WATCHDOG" in m]
        assert {m.pid for m in recorder.messages if "WATCHDOG" in m} == {g.pid}
        # Stale after at most 1 s, seen by the next check 0.5 s later: none after that.
        assert not [t for t in pings if stopped + 1.6 < t < resumed], (stopped, pings)
        before = [b - a for a, b in itertools.pairwise(pings) if b < stopped]
        assert before and all(gap < 0.8 for gap in before), before
    assert len(_readies(recorder)) == 1


def test_watchdog_off(apps: Path, recorder: NotifyRecorder) -> None:
    with (
        reserved_port() as port,
        Gunicorn(
            ["--bind", f"127.0.0.1:{port}", "wsgi_app:app"],
            apps=apps,
            recorder=recorder,
            env={"WATCHDOG_USEC": "400000", "SDREADY_WATCHDOG": "off"},
        ) as g,
    ):
        g.wait_for("READY=1")
        time.sleep(0.6)
    assert not recorder.values("WATCHDOG")


def test_watchdog_pings_come_from_the_arbiter(apps: Path, recorder: NotifyRecorder) -> None:
    with (
        reserved_port() as port,
        Gunicorn(
            ["--bind", f"127.0.0.1:{port}", "wsgi_app:app"],
            apps=apps,
            recorder=recorder,
            env={"WATCHDOG_USEC": "400000"},
        ) as g,
    ):
        ready = g.wait_for("READY=1")
        since = recorder.messages.index(ready)
        first = g.wait_for("WATCHDOG=1", 2, since=since)
        g.wait_for("WATCHDOG=1", 2, since=recorder.messages.index(first) + 1)
    assert {m.pid for m in recorder.messages if "WATCHDOG" in m} == {g.pid}


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("gunicorn and the notify protocol are Linux-only here")


# -- examples/gunicorn ----------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "gunicorn"


@pytest.mark.parametrize(
    ("app", "config", "worker_class"),
    [
        ("flask_app:app", "gunicorn.conf.py", "sync"),
        ("fastapi_app:app", "python:sdready.plugins.gunicorn", "uvicorn_worker.UvicornWorker"),
    ],
    ids=["flask-composed-config", "fastapi-uvicorn-bare"],
)
def test_examples_serve_once_ready(
    tmp_path: Path, recorder: NotifyRecorder, app: str, config: str, worker_class: str
) -> None:
    pytest.importorskip(app.split("_", maxsplit=1)[0])
    directory = tmp_path / "example"
    shutil.copytree(EXAMPLES, directory, ignore=shutil.ignore_patterns("__pycache__"))
    env = {"EXAMPLE_STARTUP_DELAY": "0.5", "SDREADY_READY_WORKERS": "all"}
    with (
        reserved_port() as port,
        Gunicorn(
            ["--bind", f"127.0.0.1:{port}", app],
            apps=directory,
            recorder=recorder,
            config=config,
            workers=2,
            worker_class=worker_class,
            env=env,
        ) as g,
    ):
        ready = g.wait_for("READY=1")
        status, body = http_get(("127.0.0.1", port))
        assert status == 200 and "hello from" in body
        assert ready["STATUS"].startswith("Ready: 2 workers, listening on ")
        g.signal(signal.SIGTERM)
        g.wait_for("STOPPING=1")
        assert g.wait() == 0
    assert_no_builtin_ready(recorder)
