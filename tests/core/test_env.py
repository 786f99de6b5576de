"""core/_env.py: what systemd put in the environment, read as sd_watchdog_enabled(3),
sd_listen_fds(3) and SYSTEMD_EXEC_PID mean it.

Each case is this process's real environment with systemd's variables replaced by the
case's; one test runs a real child that gets them the way systemd passes them (set, then
exec, so the pid they name is the child's own).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sdready._env import (
    is_main_process,
    listen_fdnames,
    listen_fds_count,
    pidfd_inode_id,
    started_by_systemd,
    watchdog_elsewhere,
    watchdog_interval,
)

SYSTEMD_VARIABLES = (
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "SYSTEMD_EXEC_PID",
    "INVOCATION_ID",
)
USEC_INFINITY = 2**64 - 1
ME = str(os.getpid())


def pid_text(template: str) -> str:
    """*template* with ``{me}`` this pid and ``{other}`` a real other process (the parent).

    Parameters hold templates, not pids: xdist workers must collect the same test ids.
    """
    return template.format(me=os.getpid(), other=os.getppid())


def environ(**variables: str) -> dict[str, str]:
    """This process's environment, with exactly *variables* of systemd's set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SYSTEMD_VARIABLES)}
    return {**env, **variables}


# -- watchdog_interval ---------------------------------------------------------------------


def test_watchdog_off_without_watchdog_usec() -> None:
    assert watchdog_interval(environ()) is None


@pytest.mark.parametrize(
    ("usec", "seconds"), [("1", 0.000001), ("500000", 0.5), ("30000000", 30.0)]
)
def test_watchdog_interval_in_seconds(usec: str, seconds: float) -> None:
    assert watchdog_interval(environ(WATCHDOG_USEC=usec)) == seconds


def test_watchdog_pid_naming_this_process() -> None:
    assert watchdog_interval(environ(WATCHDOG_USEC="2000000", WATCHDOG_PID=ME)) == 2.0


@pytest.mark.parametrize("pid", ["{other}", "1"])
def test_watchdog_pid_naming_another_process(pid: str) -> None:
    # Meant for the process systemd started; a child that inherited it must not ping.
    env = environ(WATCHDOG_USEC="2000000", WATCHDOG_PID=pid_text(pid))
    assert watchdog_interval(env) is None


@pytest.mark.parametrize("pid", ["", "garbage", "{me}x", " {me}", "-1"])
def test_watchdog_pid_unparsable(pid: str) -> None:
    env = environ(WATCHDOG_USEC="2000000", WATCHDOG_PID=pid_text(pid))
    assert watchdog_interval(env) is None


@pytest.mark.parametrize(
    "usec",
    [
        pytest.param("0", id="zero"),
        pytest.param(str(USEC_INFINITY), id="infinity"),
        pytest.param(str(USEC_INFINITY + 1), id="beyond-infinity"),
    ],
)
def test_watchdog_zero_or_infinite_is_off(usec: str) -> None:
    assert watchdog_interval(environ(WATCHDOG_USEC=usec)) is None
    assert watchdog_interval(environ(WATCHDOG_USEC=usec, WATCHDOG_PID=ME)) is None


@pytest.mark.parametrize("usec", ["", "garbage", "-5", "1.5", "5s", " 5", "0x10", "1e6"])
def test_watchdog_garbage_usec_is_off(usec: str) -> None:
    assert watchdog_interval(environ(WATCHDOG_USEC=usec)) is None


# -- listen_fds_count ----------------------------------------------------------------------


def test_no_sockets_without_listen_fds() -> None:
    assert listen_fds_count(environ()) == 0
    assert listen_fds_count(environ(LISTEN_PID=ME)) == 0


@pytest.mark.parametrize("count", [0, 1, 3])
def test_listen_fds_for_this_process(count: int) -> None:
    assert listen_fds_count(environ(LISTEN_FDS=str(count), LISTEN_PID=ME)) == count


@pytest.mark.parametrize("pid", ["{other}", "1", "garbage", "-1", "{me}x", ""])
def test_listen_pid_mismatch_means_none(pid: str) -> None:
    # The sockets were passed to the process LISTEN_PID names; an heir must not take them.
    assert listen_fds_count(environ(LISTEN_FDS="2", LISTEN_PID=pid_text(pid))) == 0


def test_listen_fds_without_listen_pid_means_none() -> None:
    # As sd_listen_fds(3): systemd always sets both; LISTEN_FDS alone was not meant for us.
    assert listen_fds_count(environ(LISTEN_FDS="2")) == 0


@pytest.mark.parametrize("count", ["", "garbage", "-1", "2.0", " 2"])
def test_listen_fds_garbage_means_none(count: str) -> None:
    assert listen_fds_count(environ(LISTEN_FDS=count, LISTEN_PID=ME)) == 0


# -- is_main_process -----------------------------------------------------------------------


def test_main_process_outside_systemd() -> None:
    assert is_main_process(environ())


def test_systemd_exec_pid_naming_this_process() -> None:
    assert is_main_process(environ(SYSTEMD_EXEC_PID=ME))


@pytest.mark.parametrize("pid", ["{other}", "1"])
def test_systemd_exec_pid_naming_another_process(pid: str) -> None:
    # A worker forked by the main process inherits the variable: it is not the main one.
    assert not is_main_process(environ(SYSTEMD_EXEC_PID=pid_text(pid)))


@pytest.mark.parametrize("pid", ["", "garbage", "-1", "{me}x"])
def test_unparsable_systemd_exec_pid_counts_as_main(pid: str) -> None:
    # Unparsable is treated like missing (systemd < 248 sets none): nobody else is named.
    assert is_main_process(environ(SYSTEMD_EXEC_PID=pid_text(pid)))


# -- a real child, the variables set as systemd sets them ----------------------------------

_REPORT = (
    "import json, os\n"
    "from sdready._env import is_main_process, listen_fds_count, watchdog_interval\n"
    "print(json.dumps([os.getpid(), watchdog_interval(), listen_fds_count(),"
    " is_main_process()]))\n"
)


def _child(script: str, env: dict[str, str]) -> list[object]:
    result = subprocess.run(
        ["/bin/sh", "-c", script, sys.executable, _REPORT],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert isinstance(report, list)
    return report


def test_child_reads_its_own_environment() -> None:
    # systemd sets the pids, then execs: the shell names itself and execs Python in place.
    script = (
        "WATCHDOG_PID=$$ LISTEN_PID=$$ SYSTEMD_EXEC_PID=$$; "
        'export WATCHDOG_PID LISTEN_PID SYSTEMD_EXEC_PID; exec "$0" -c "$1"'
    )
    env = environ(WATCHDOG_USEC="3000000", LISTEN_FDS="2")
    pid, interval, fds, main = _child(script, env)
    assert isinstance(pid, int) and pid != os.getpid()
    assert (interval, fds, main) == (3.0, 2, True)


def test_child_of_the_named_process_gets_nothing() -> None:
    # What a worker sees: variables meant for its parent (this process).
    env = environ(
        WATCHDOG_USEC="3000000", WATCHDOG_PID=ME, LISTEN_FDS="2", LISTEN_PID=ME, SYSTEMD_EXEC_PID=ME
    )
    _, interval, fds, main = _child('exec "$0" -c "$1"', env)
    assert (interval, fds, main) == (None, 0, False)


# -- take-over, another pid's watchdog, names, INVOCATION_ID ---------------------------------


def test_a_successor_feeds_the_watchdog_it_took_over() -> None:
    other = pid_text("{other}")
    env = environ(WATCHDOG_USEC="4000000", WATCHDOG_PID=other)
    assert watchdog_interval(env) is None  # the control: not ours
    assert watchdog_interval(env, taking_over=int(other)) == 4.0
    assert watchdog_interval(env, taking_over=int(other) + 1) is None


def test_a_watchdog_set_for_another_process() -> None:
    other = pid_text("{other}")
    assert watchdog_elsewhere(environ(WATCHDOG_USEC="4000000", WATCHDOG_PID=other)) == int(other)
    assert watchdog_elsewhere(environ(WATCHDOG_USEC="4000000", WATCHDOG_PID=ME)) is None
    assert watchdog_elsewhere(environ(WATCHDOG_PID=other)) is None  # no WatchdogSec=
    assert watchdog_elsewhere(environ()) is None


def test_fd_names_outlive_listen_fds() -> None:
    # gunicorn takes LISTEN_FDS and LISTEN_PID; the names stay for whoever asks later.
    assert listen_fdnames(environ(LISTEN_FDNAMES="web:unknown::admin")) == {
        3: "web",
        4: "unknown",
        6: "admin",
    }
    assert listen_fdnames(environ()) == {}


def test_started_by_systemd() -> None:
    assert started_by_systemd(environ(INVOCATION_ID="0123456789abcdef"))
    assert not started_by_systemd(environ())
    assert not started_by_systemd(environ(INVOCATION_ID=""))


def test_listen_pidfdid_is_checked_when_present() -> None:
    own = pidfd_inode_id()
    env = {"LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid())}
    assert listen_fds_count(env) == 2
    assert listen_fds_count({**env, "LISTEN_PIDFDID": "x"}) == 0  # unparsable: sd_listen_fds fails
    if own is None:
        pytest.skip("no pidfs (Linux < 6.9): LISTEN_PIDFDID cannot be checked")
    assert listen_fds_count({**env, "LISTEN_PIDFDID": str(own)}) == 2
    assert listen_fds_count({**env, "LISTEN_PIDFDID": str(own + 1)}) == 0  # another process's


def test_pidfd_inode_id_tells_processes_apart() -> None:
    own = pidfd_inode_id()
    if own is None:
        pytest.skip("no pidfs (Linux < 6.9)")
    assert pidfd_inode_id() == own
    child = subprocess.run(
        [sys.executable, "-c", "from sdready._env import pidfd_inode_id; print(pidfd_inode_id())"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert int(child.stdout) != own
