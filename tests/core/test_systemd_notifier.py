"""The notifier against a real systemd: transient Type=notify units running sdready.

Each test runs a small Python script as a transient service of the session's private user
manager (see tests/_systemd.py) and reads what the manager believes through
``systemctl --user show``. Scripts and tests talk through files in ``tmp_path``: the test
touches a trigger file, the script writes results atomically. Every wait on either side
is bounded.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from _systemd import UserManager, python_for_units, wait_until

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(120)]

# Shared by every unit script: sys.argv[1] is the test's tmp_path.
PRELUDE = """\
import logging
import os
import sys
import time
from pathlib import Path

import sdready

# sdready's own log lines land in the unit's output file, shown when a test fails.
logging.basicConfig(
    level=logging.INFO, stream=sys.stderr, format="%(process)d %(levelname)s %(message)s"
)
DIR = Path(sys.argv[1])


def wait_file(name, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not (DIR / name).exists():
        if time.monotonic() > deadline:
            sys.exit(f"gave up waiting for {name}")
        time.sleep(0.02)


def write(name, text):
    # Atomic, so the test never reads half a file.
    (DIR / (name + ".tmp")).write_text(text)
    (DIR / (name + ".tmp")).rename(DIR / name)

"""


def script(body: str) -> str:
    return PRELUDE + textwrap.dedent(body)


def touch(directory: Path, name: str) -> None:
    (directory / name).touch()


def read_result(directory: Path, name: str, timeout: float = 10.0) -> str:
    path = directory / name
    wait_until(path.exists, timeout=timeout, message=f"the unit never wrote {name}")
    return path.read_text()


# -- READY, STATUS, STOPPING, RELOADING, ERRNO -------------------------------------------------


def test_ready_turns_activating_into_active(systemd: UserManager, tmp_path: Path) -> None:
    unit = systemd.run_python(
        script("""
            sdready.status("warming up")  # the module-level helpers, as an app would
            wait_file("go")
            sdready.ready()
            sdready.status("serving")
            wait_file("stop")
        """),
        tmp_path,
    )
    # Type=notify: without READY=1 the start job stays pending, whatever the process does.
    systemd.wait_for(unit, ActiveState="activating", SubState="start", StatusText="warming up")
    systemd.hold(unit, 0.5, ActiveState="activating")
    touch(tmp_path, "go")
    systemd.wait_for(unit, ActiveState="active", SubState="running", StatusText="serving")


def test_status_text_reaches_the_manager_as_utf8(systemd: UserManager, tmp_path: Path) -> None:
    unit = systemd.run_python(
        script("""
            n = sdready.Notifier(strict=True)
            n.ready(status="step 0")
            for i in range(1, 3):
                wait_file(f"step{i}")
                n.status(f"step {i}: Grüße — ✓")
            wait_file("stop")
        """),
        tmp_path,
    )
    systemd.wait_for(unit, ActiveState="active", StatusText="step 0")
    for i in range(1, 3):
        touch(tmp_path, f"step{i}")
        systemd.wait_for(unit, StatusText=f"step {i}: Grüße — ✓")


def test_errno_shows_as_status_errno(systemd: UserManager, tmp_path: Path) -> None:
    unit = systemd.run_python(
        script("""
            n = sdready.Notifier(strict=True)
            n.ready()
            n.errno(5)
            n.status("disk trouble")
            wait_file("stop")
        """),
        tmp_path,
    )
    systemd.wait_for(unit, ActiveState="active", StatusText="disk trouble", StatusErrno="5")


def test_stopping_moves_the_unit_to_deactivating(systemd: UserManager, tmp_path: Path) -> None:
    unit = systemd.run_python(
        script("""
            n = sdready.Notifier(strict=True)
            n.ready(status="serving")
            wait_file("stop")
            n.stopping("draining connections")
            wait_file("exit")
        """),
        tmp_path,
    )
    systemd.wait_for(unit, ActiveState="active")
    touch(tmp_path, "stop")
    # The manager believes us: stop state, no signal sent, the process still running.
    systemd.wait_for(unit, ActiveState="deactivating", StatusText="draining connections")
    systemd.hold(unit, 0.3, ActiveState="deactivating")
    touch(tmp_path, "exit")
    # A clean exit unloads a transient unit, so "inactive" is all there is left to see.
    systemd.wait_for(unit, ActiveState="inactive", Result="success")


def test_reloading_then_ready_returns_to_active(systemd: UserManager, tmp_path: Path) -> None:
    unit = systemd.run_python(
        script("""
            n = sdready.Notifier(strict=True)
            n.ready(status="serving")
            wait_file("reload")
            n.reloading("reloading configuration")
            wait_file("reloaded")
            n.ready(status="serving again")
            wait_file("stop")
        """),
        tmp_path,
    )
    systemd.wait_for(unit, ActiveState="active")
    touch(tmp_path, "reload")
    systemd.wait_for(unit, ActiveState="reloading", StatusText="reloading configuration")
    touch(tmp_path, "reloaded")
    systemd.wait_for(unit, ActiveState="active", SubState="running", StatusText="serving again")


# -- EXTEND_TIMEOUT_USEC ------------------------------------------------------------------------


@pytest.mark.parametrize("extend", [True, False], ids=["extended", "not-extended"])
def test_extend_timeout_keeps_a_slow_starter_alive(
    systemd: UserManager, tmp_path: Path, extend: bool
) -> None:
    unit = systemd.run_python(
        script(f"""
            n = sdready.Notifier(strict=True)
            n.status("slow start")
            deadline = time.monotonic() + 30
            while not (DIR / "go").exists() and time.monotonic() < deadline:
                if {extend}:
                    n.extend_timeout(2.0)  # generous: a loaded CI box may stall us a bit
                time.sleep(0.2)
            n.ready(status="started late")
            wait_file("stop")
        """),
        tmp_path,
        properties={"TimeoutStartSec": "1s"},
    )
    if not extend:
        # Proves the setup can fail: the same starter without extensions is killed.
        systemd.wait_for(unit, ActiveState="failed", Result="timeout", timeout=10)
        return
    systemd.wait_for(unit, ActiveState="activating", StatusText="slow start")
    systemd.hold(unit, 2.2, ActiveState="activating")  # over twice TimeoutStartSec
    touch(tmp_path, "go")
    systemd.wait_for(unit, ActiveState="active", StatusText="started late", NRestarts=0)


# -- WATCHDOG -----------------------------------------------------------------------------------

WATCHDOG_LOOP = """
n = sdready.Notifier(strict=True)
write("interval", repr(sdready.watchdog_interval()))
n.ready(status="pinging")
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    if not (DIR / "stop-pinging").exists():
        n.watchdog()
    time.sleep(0.1)
"""


def test_watchdog_pings_keep_the_unit_alive_and_silence_kills_it(
    systemd: UserManager, tmp_path: Path
) -> None:
    unit = systemd.run_python(script(WATCHDOG_LOOP), tmp_path, properties={"WatchdogSec": "1"})
    systemd.wait_for(unit, ActiveState="active", StatusText="pinging")
    assert read_result(tmp_path, "interval") == "1.0"
    systemd.hold(unit, 2.2, ActiveState="active", SubState="running", NRestarts=0)
    touch(tmp_path, "stop-pinging")
    systemd.wait_for(unit, ActiveState="failed", Result="watchdog", timeout=10)


def test_watchdog_restart_brings_up_a_fresh_instance(systemd: UserManager, tmp_path: Path) -> None:
    # Only the first instance honours stop-pinging, so exactly one restart is expected.
    unit = systemd.run_python(
        script("""
            first = not (DIR / "started").exists()
            write("started", str(os.getpid()))
            n = sdready.Notifier(strict=True)
            n.ready(status="first" if first else "restarted")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if not (first and (DIR / "stop-pinging").exists()):
                    n.watchdog()
                time.sleep(0.1)
        """),
        tmp_path,
        properties={"WatchdogSec": "1", "Restart": "on-watchdog", "RestartSec": "100ms"},
    )
    before = systemd.wait_for(unit, ActiveState="active", StatusText="first")
    touch(tmp_path, "stop-pinging")
    after = systemd.wait_for(
        unit, ActiveState="active", StatusText="restarted", NRestarts=1, timeout=10
    )
    assert after["MainPID"] != before["MainPID"]
    systemd.hold(unit, 1.5, ActiveState="active", NRestarts=1)


def test_watchdog_trigger_fails_the_unit_at_once(systemd: UserManager, tmp_path: Path) -> None:
    unit = systemd.run_python(
        script("""
            n = sdready.Notifier(strict=True)
            n.ready()
            wait_file("trigger")
            n.watchdog_trigger()
            wait_file("never")
        """),
        tmp_path,
        properties={"WatchdogSec": "30"},
    )
    systemd.wait_for(unit, ActiveState="active")
    touch(tmp_path, "trigger")
    systemd.wait_for(unit, ActiveState="failed", Result="watchdog", timeout=5)


# -- BARRIER ------------------------------------------------------------------------------------


def test_barrier_returns_true_once_the_manager_caught_up(
    systemd: UserManager, tmp_path: Path
) -> None:
    unit = systemd.run_python(
        script("""
            n = sdready.Notifier(strict=True)
            n.ready()
            n.status("before the barrier")
            started = time.monotonic()
            result = n.barrier(timeout=5.0)
            write("barrier", f"{result} {time.monotonic() - started:.3f}")
            wait_file("stop")
        """),
        tmp_path,
    )
    result, elapsed = read_result(tmp_path, "barrier").split()
    assert result == "True", f"barrier returned {result} after {elapsed} s"
    assert float(elapsed) < 5.0
    # The barrier's promise: everything sent before it has been processed.
    assert systemd.show(unit)["StatusText"] == "before the barrier"


# -- daemon-reexec ------------------------------------------------------------------------------


def test_status_and_watchdog_survive_daemon_reexec(systemd: UserManager, tmp_path: Path) -> None:
    unit = systemd.run_python(
        script("""
            n = sdready.Notifier()  # default policy: a lost message must show as a test failure
            n.ready(status="before-reexec")
            sent = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if sent is None and (DIR / "reexecuted").exists():
                    sent = n.status("after-reexec")
                    write("sent", repr(sent))
                n.watchdog()
                time.sleep(0.1)
        """),
        tmp_path,
        properties={"WatchdogSec": "2"},
    )
    before = systemd.wait_for(unit, ActiveState="active", StatusText="before-reexec")
    systemd.daemon_reexec()
    touch(tmp_path, "reexecuted")
    systemd.wait_for(unit, StatusText="after-reexec", timeout=5)
    assert read_result(tmp_path, "sent") == "True"
    # Over one WatchdogSec more: only pings that reach the re-executed manager keep it alive.
    systemd.hold(
        unit,
        2.5,
        ActiveState="active",
        SubState="running",
        NRestarts=0,
        MainPID=before["MainPID"],
    )


# -- NotifyAccess -------------------------------------------------------------------------------


@pytest.mark.parametrize("access", ["main", "all"])
def test_a_child_process_counts_only_with_notify_access_all(
    systemd: UserManager, tmp_path: Path, access: str
) -> None:
    # Gunicorn-style: a forked worker notifies. systemd checks the sender's pid.
    unit = systemd.run_python(
        script("""
            n = sdready.Notifier(strict=True)
            n.ready(status="from the main process")
            pid = os.fork()
            if pid == 0:
                # The inherited notifier opens a fresh socket in the child. The barrier
                # matters: the manager maps a message to its unit through the sender's
                # pid, so a process that exits before its message is read is ignored as
                # "Cannot find unit for notify message".
                sent = n.status("from a child process") and n.barrier(5.0)
                os._exit(0 if sent else 1)
            _, code = os.waitpid(pid, 0)
            write("done", str(os.waitstatus_to_exitcode(code)))
            wait_file("stop")
        """),
        tmp_path,
        properties={"NotifyAccess": access},
    )
    assert read_result(tmp_path, "done") == "0"  # the child sent, and the manager read it
    expected = "from a child process" if access == "all" else "from the main process"
    props = systemd.wait_for(unit, ActiveState="active")
    assert props["StatusText"] == expected, systemd.describe(unit)
    # The child told its operator why its messages might not count.
    log = wait_until(
        lambda: "NotifyAccess=all" in (text := systemd.unit_log(unit)) and text,
        timeout=5,
        message=lambda: systemd.describe(unit),
    )
    assert "not the unit's main process" in log


# -- ordering: the story sdready exists for -----------------------------------------------------


def test_a_dependent_unit_starts_only_after_ready(systemd: UserManager, tmp_path: Path) -> None:
    # B is the Type=notify service; A (a unit file with Requires=/After=B) must not start
    # before B says READY=1, however long B's process has been running.
    b = systemd.run_python(
        script("""
            wait_file("go")
            write("b-ready-at", repr(time.monotonic()))
            sdready.ready(status="B ready")
            wait_file("stop")
        """),
        tmp_path,
        unit="b",
    )
    a_script = systemd.write_script(
        script("""
            write("a-started-at", repr(time.monotonic()))
        """),
        name="a",
    )
    python, env = python_for_units()
    a = systemd.unit_name("a")
    environment = " ".join(f"{key}={value}" for key, value in env.items())
    systemd.write_unit(
        a,
        f"""
        [Unit]
        Requires={b}
        After={b}

        [Service]
        Type=oneshot
        RemainAfterExit=yes
        Environment={environment}
        ExecStart={python} {a_script} {tmp_path}
        StandardOutput=append:{systemd.work_dir / (a + ".log")}
        StandardError=append:{systemd.work_dir / (a + ".log")}
        """,
    )
    systemd.wait_for(b, ActiveState="activating")
    systemd.start_unit(a)
    systemd.hold(a, 0.5, ActiveState="inactive")  # its start job waits for B
    assert not (tmp_path / "a-started-at").exists()
    touch(tmp_path, "go")
    systemd.wait_for(a, ActiveState="active", SubState="exited")
    systemd.wait_for(b, ActiveState="active", StatusText="B ready")
    assert float(read_result(tmp_path, "a-started-at")) > float(read_result(tmp_path, "b-ready-at"))
