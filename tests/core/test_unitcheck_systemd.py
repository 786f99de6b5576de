"""The unit checks against a real systemd: each misconfiguration, started under the private
user manager, logs its one named WARNING from the service itself (the engine's startup
self-check) and shows as the same finding in ``sdready doctor``; the correct unit (the
control, differing in that one setting) gives neither.

Servers are real (uvicorn with ``SystemdMiddleware``, ``sdready exec`` in front of
``python -m http.server``, gunicorn with sdready's plugin, Flask's ``SystemdNotify`` under
waitress) on loopback, port 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _servers import free_port
from _systemd import UserManager, python_for_units, wait_until
from sdready._units._unitcheck import Result

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(240)]

TESTS = Path(__file__).resolve().parents[1]
EXAMPLES = TESTS.parent / "examples"
PY, PY_ENV = python_for_units()
BIN = Path(PY).parent
SDREADY = str(BIN / "sdready")
ENV = {
    **PY_ENV,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), PY_ENV.get("PYTHONPATH")])),
}
CHECK_DONE = "unit check of "  # the self-check's DEBUG line once it is done
WAIT = 60.0

GUNICORN_CONF = """\
import logging, sys
handler = logging.StreamHandler(sys.stderr)
handler.setFormatter(logging.Formatter("%(levelname)s sdready: %(message)s"))
logging.getLogger("sdready").addHandler(handler)
logging.getLogger("sdready").setLevel(logging.DEBUG)
from sdready.plugins.gunicorn import install
install(globals())
"""


def _uvicorn(*extra: str) -> list[str]:
    return [
        PY,
        "-m",
        "uvicorn",
        "_unitcheck_apps:asgi",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        *extra,
    ]


def _exec(*options: str) -> list[str]:
    server = [PY, "-m", "http.server", "--bind", "127.0.0.1", "0"]
    return [SDREADY, "exec", "-v", *options, "--", *server]


def _gunicorn(conf: Path) -> list[str]:
    return [str(BIN / "gunicorn"), "-c", str(conf), "--bind", "127.0.0.1:0", "_unitcheck_apps:wsgi"]


@dataclass(frozen=True)
class Kind:
    """A correct unit for one front end: the control of every check that starts from it."""

    name: str
    properties: dict[str, str] = field(default_factory=dict)


UVICORN = Kind("uvicorn", {"Type": "notify", "TimeoutStartSec": "60"})
WORKERS = Kind("workers", {"Type": "notify", "NotifyAccess": "all", "TimeoutStartSec": "60"})
EXEC = Kind("exec", {"Type": "notify", "TimeoutStartSec": "60", "KillMode": "mixed"})
GUNICORN = Kind(
    "gunicorn",
    {
        "Type": "notify",
        "TimeoutStartSec": "60",
        "TimeoutStopSec": "40",
        "KillMode": "mixed",
        "ExecReload": "/bin/kill -HUP $MAINPID",
    },
)
FLASK = Kind("flask", {"Type": "notify", "TimeoutStartSec": "60"})
# sdready exec --listen keeps its socket in systemd's fd store.
LISTEN = Kind("listen", {**EXEC.properties, "FileDescriptorStoreMax": "4"})
KINDS = (UVICORN, WORKERS, EXEC, GUNICORN, FLASK, LISTEN)

FLASK_APP = """\
import _unitcheck_apps  # sdready's DEBUG lines on stderr
import waitress
from flask import Flask
from sdready.plugins.flask import SystemdNotify

app = Flask(__name__)
SystemdNotify(app)
waitress.serve(app, host="127.0.0.1", port=0)
"""


@dataclass(frozen=True)
class Case:
    check: str  # the finding expected
    kind: Kind
    change: dict[str, str]  # what makes the control wrong
    options: tuple[str, ...] = ()  # sdready exec options
    also: tuple[str, ...] = ()  # findings the change brings along (checks, in RULES order)


CASES = (
    Case("type", UVICORN, {"Type": "simple"}),
    Case("type", FLASK, {"Type": "simple"}),
    Case("type", GUNICORN, {"Type": "simple"}),
    Case("type", EXEC, {"Type": "exec"}),
    Case("notify-access", WORKERS, {"NotifyAccess": "main"}),
    Case("watchdog-child", WORKERS, {"WatchdogSec": "60"}),
    Case("timeout-start-infinite", EXEC, {"TimeoutStartSec": "infinity"}, ("--on-timeout", "fail")),
    Case("watchdog-off", EXEC, {"WatchdogSec": "60"}),
    Case("exec-reload", UVICORN, {"ExecReload": "/bin/kill -HUP $MAINPID"}),
    Case("kill-mode", EXEC, {"KillMode": "control-group"}),
    # With Type=notify the plugin extends the stop while workers drain: only Type=simple
    # (no STOPPING=1, no extension) leaves gunicorn's graceful_timeout to TimeoutStopSec=.
    Case("stop-timeout", GUNICORN, {"Type": "simple", "TimeoutStopSec": "10"}, also=("type",)),
    Case("fdstore", LISTEN, {"FileDescriptorStoreMax": "0"}),
)


def _argv(manager: UserManager, kind: Kind, options: tuple[str, ...] = ()) -> list[str]:
    if kind is UVICORN:
        return _uvicorn()
    if kind is WORKERS:
        return _uvicorn("--workers", "2")
    if kind is EXEC:
        return _exec(*options)
    if kind is LISTEN:
        uvicorn = [PY, "-m", "uvicorn", "_unitcheck_apps:asgi", "--fd", "3"]
        return [SDREADY, "exec", "-v", "--listen", f"127.0.0.1:{free_port()}", "--", *uvicorn]
    if kind is FLASK:
        return [PY, str(manager.write_script(FLASK_APP, name="flask_unitcheck"))]
    conf = manager.work_dir / "gunicorn_unitcheck.py"
    conf.write_text(GUNICORN_CONF)
    return _gunicorn(conf)


def _run_and_check(
    manager: UserManager, argv: list[str], properties: dict[str, str]
) -> tuple[str, list[str], dict]:
    """Start the unit, wait for its self-check, and return (name, its check lines, doctor)."""
    props = dict(properties)
    kind = props.pop("Type")
    name = manager.systemd_run(
        *argv, unit="check", properties=props, service_type=kind, env=ENV, timeout=20
    )
    wait_until(
        lambda: CHECK_DONE in manager.unit_log(name),
        timeout=WAIT,
        message=lambda: f"no self-check in {name}'s log\n{manager.describe(name)}",
    )
    lines = [line for line in _above_info(manager.unit_log(name)) if f"{name}: " in line]
    doctor = manager.doctor("--json", name)
    assert doctor.returncode in (0, 1, 2), doctor.stderr
    return name, lines, json.loads(doctor.stdout)


def _above_info(log: str) -> list[str]:
    """The log's lines but sdready's INFO and DEBUG ones (the apps' handler writes ``LEVEL
    sdready: message``; ``sdready exec`` writes no level, and no INFO line here)."""
    return [x for x in log.splitlines() if not x.startswith(("INFO sdready", "DEBUG sdready"))]


def _findings(report: dict) -> list[Result]:
    found = [Result(**r) for r in report["results"]]
    return [r for r in found if r.verdict in ("warning", "error")]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.check}-{c.kind.name}")
def test_misconfiguration_logs_its_one_warning_and_doctor_agrees(
    case: Case, user_manager: UserManager
) -> None:
    with user_manager.scoped():
        argv = _argv(user_manager, case.kind, case.options)
        name, lines, report = _run_and_check(
            user_manager, argv, {**case.kind.properties, **case.change}
        )
        findings = _findings(report)
        assert sorted(f.check for f in findings) == sorted([case.check, *case.also]), report
        # The service logged exactly the findings doctor reports, word for word.
        for finding in findings:
            expected = finding.line(name)
            assert [line for line in lines if expected in line], (lines, expected)
        assert len(lines) == len(findings), lines
        worst = 2 if any(f.verdict == "error" for f in findings) else 1
        assert report["status"] == worst


def test_gunicorn_plugin_extends_the_stop_so_a_short_timeout_stop_sec_is_fine(
    user_manager: UserManager,
) -> None:
    """TimeoutStopSec=10 below graceful_timeout (30 s) under Type=notify: sdready's drain
    extension covers it (tests/plugins/test_progress_systemd.py shows the request finish)."""
    with user_manager.scoped():
        props = {**GUNICORN.properties, "TimeoutStopSec": "10"}
        _, lines, report = _run_and_check(user_manager, _argv(user_manager, GUNICORN), props)
        assert lines == [] and _findings(report) == [], (lines, report)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_correct_unit_logs_nothing_and_doctor_is_clean(
    kind: Kind, user_manager: UserManager
) -> None:
    with user_manager.scoped():
        argv = _argv(user_manager, kind)
        name, lines, report = _run_and_check(user_manager, argv, kind.properties)
        assert lines == [], user_manager.unit_log(name)
        assert _findings(report) == [] and report["status"] == 0, report
        user_manager.wait_for(name, ActiveState="active", timeout=WAIT)


def _with(kind: Kind, change: dict[str, str | None]) -> dict[str, str]:
    """*kind*'s properties with *change* applied (None: the setting left out)."""
    merged = {**kind.properties, **change}
    return {key: value for key, value in merged.items() if value is not None}


# Units people write (issue 24): start limits below, at and above ready_timeout (30 s),
# infinity, systemd's default; Restart=; gunicorn under KillMode=mixed. None is a fault.
TYPICAL = [
    *[(f"start-{t}", UVICORN, _with(UVICORN, {"TimeoutStartSec": t})) for t in ("10", "20", "90")],
    ("start-infinity", UVICORN, _with(UVICORN, {"TimeoutStartSec": "infinity"})),
    ("start-absent", UVICORN, _with(UVICORN, {"TimeoutStartSec": None})),
    ("restart", UVICORN, _with(UVICORN, {"Restart": "on-failure", "RestartSec": "1"})),
    ("gunicorn-mixed", GUNICORN, _with(GUNICORN, {"TimeoutStartSec": "20", "Restart": "always"})),
    ("exec-start-45", EXEC, _with(EXEC, {"TimeoutStartSec": "45", "Restart": "on-failure"})),
]


@pytest.mark.parametrize(("kind", "props"), [c[1:] for c in TYPICAL], ids=[c[0] for c in TYPICAL])
def test_typical_unit_is_clean_and_logs_nothing_above_info(
    kind: Kind, props: dict[str, str], user_manager: UserManager
) -> None:
    """The self-check logs nothing above INFO, doctor exits 0 (table and --json); a start
    limit not above ready_timeout (30 s) is a note: INFO in the log, ``note:`` in doctor."""
    with user_manager.scoped():
        name, lines, report = _run_and_check(user_manager, _argv(user_manager, kind), props)
        log = user_manager.unit_log(name)
        assert lines == [] and "Traceback" not in log, log
        assert not [x for x in log.splitlines() if x.startswith(("WARNING", "ERROR"))], log
        assert _findings(report) == [] and report["status"] == 0, report
        table = user_manager.doctor(name)
        assert table.returncode == 0 and table.stdout.endswith("clean\n"), table.stdout
        notes = [r for r in report["results"] if r["verdict"] == "note"]
        # As systemd resolved it: absent is the manager's DefaultTimeoutStartSec=.
        (start,) = [r["value"] for r in report["results"] if r["check"] == "timeout-start"]
        short = start != "infinity" and float(start.rstrip("s")) <= 30
        assert [r["check"] for r in notes] == (["timeout-start"] if short else []), report
        for note in notes:
            line = Result(**note).line(name)
            assert f"INFO sdready: {line}" in log, log
            assert f"note: {line}" in table.stdout, table.stdout
        user_manager.wait_for(name, ActiveState="active", timeout=WAIT)


def test_notify_reload_in_front_of_uvicorn(user_manager_254: UserManager) -> None:
    """Type=notify-reload (systemd >= 253): uvicorn dies of SIGHUP; gunicorn's plugin reloads."""
    manager = user_manager_254
    with manager.scoped():
        name, lines, report = _run_and_check(
            manager, _uvicorn(), {**UVICORN.properties, "Type": "notify-reload"}
        )
        assert [f.check for f in _findings(report)] == ["notify-reload"], report
        assert len(lines) == 1 and _findings(report)[0].line(name) in lines[0], lines
    with manager.scoped():
        props = {k: v for k, v in GUNICORN.properties.items() if k != "ExecReload"}
        name, lines, report = _run_and_check(
            manager, _argv(manager, GUNICORN), {**props, "Type": "notify-reload"}
        )
        assert lines == [] and _findings(report) == [], (lines, report)


def test_seed_pair_b_as_type_simple_names_the_problem_and_the_fix(
    user_manager: UserManager,
) -> None:
    """The seed's B (FastAPI + SystemdNotify under uvicorn) as Type=simple: its log says so."""
    folder = EXAMPLES / "dependent-services"
    argv = [PY, "-m", "uvicorn", "service_b:app", "--host", "127.0.0.1", "--port", "0"]
    with user_manager.scoped():
        name = user_manager.systemd_run(
            *argv,
            unit="seed-b",
            properties={"WorkingDirectory": str(folder)},
            service_type="simple",
            env={**ENV, "B_STARTUP_SECONDS": "0.2"},
        )
        wait_until(
            lambda: "Type=simple" in user_manager.unit_log(name),
            timeout=WAIT,
            message=lambda: user_manager.describe(name),
        )
        lines = [line for line in user_manager.unit_log(name).splitlines() if f"{name}: " in line]
        assert len(lines) == 1, lines
        assert "before uvicorn listens" in lines[0] and "Write: Type=notify" in lines[0], lines
        doctor = user_manager.doctor(name)  # the table, for people
        assert doctor.returncode == 2, doctor.stdout + doctor.stderr
        table = {tuple(row.split()[:4]) for row in doctor.stdout.splitlines()}
        assert ("type", "Type", "simple", "error") in table, doctor.stdout
        # uvicorn's default logging: Python's last-resort handler prints the bare message.
        assert f"error: {lines[0]}" in doctor.stdout, doctor.stdout


def test_slow_health_check_warns_under_systemd(user_manager: UserManager) -> None:
    """The watchdog's own check: a health check over half of WatchdogSec= (3.5 s of 6 s)."""
    with user_manager.scoped():
        name = user_manager.systemd_run(
            *_uvicorn(),
            unit="health",
            properties={"TimeoutStartSec": "60", "WatchdogSec": "6"},
            env={**ENV, "UNITCHECK_HEALTH_SECONDS": "3.5"},
        )
        line = wait_until(
            lambda: [
                x for x in user_manager.unit_log(name).splitlines() if "health check took" in x
            ],
            timeout=WAIT,
            message=lambda: user_manager.describe(name),
        )
        assert len(line) == 1 and "over half of WatchdogSec= (6 s)" in line[0], line


def test_a_sandbox_that_forbids_the_check_keeps_it_silent(user_manager: UserManager) -> None:
    """No AF_UNIX sockets (RestrictAddressFamilies=): the check gives up at DEBUG; the app
    starts, nothing above DEBUG, no traceback."""
    with user_manager.scoped():
        name = user_manager.systemd_run(
            *_uvicorn(),
            unit="sandbox",
            properties={"RestrictAddressFamilies": "AF_INET AF_INET6"},
            service_type="simple",
            env=ENV,
        )
        wait_until(
            lambda: "unit check skipped" in user_manager.unit_log(name),
            timeout=WAIT,
            message=lambda: user_manager.describe(name),
        )
        log = user_manager.unit_log(name)
        assert "Traceback" not in log and "ERROR" not in log and "WARNING" not in log, log


def test_doctor_without_a_unit_checks_its_own(user_manager: UserManager) -> None:
    """Run from inside a unit (ExecStart=sdready doctor), doctor checks that unit."""
    with user_manager.scoped():
        name = user_manager.systemd_run(
            SDREADY, "doctor", "--json", unit="doctor", service_type="oneshot", env=ENV
        )
        report = wait_until(
            lambda: _json_in(user_manager.unit_log(name)),
            timeout=WAIT,
            message=lambda: user_manager.describe(name),
        )
        assert report["unit"] == name and report["user"] is True, report
        assert report["server"] is None and report["status"] == 0, report  # nothing to check


def _json_in(text: str) -> dict | None:
    start = text.find("{")
    try:
        return json.loads(text[start:]) if start >= 0 else None
    except ValueError:
        return None  # not all written yet


def test_no_systemd_no_systemctl() -> None:
    """Outside systemd (no INVOCATION_ID, no NOTIFY_SOCKET) nothing runs: no thread, no
    process spawned, not even the check's modules imported."""
    code = (
        "import os, subprocess, sys, threading\n"
        "spawned = []\n"
        "real = os.posix_spawnp\n"
        "os.posix_spawnp = lambda *a, **k: spawned.append(a) or real(*a, **k)\n"
        "from sdready import Readiness\n"
        "r = Readiness(); r.starting(); r.waiting()\n"
        "assert not spawned, spawned\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "assert 'sdready._units._unitcheck' not in sys.modules\n"
        "assert 'sdready._units._unitinfo' not in sys.modules\n"
        "assert 'sdready._units._appfacts' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("INVOCATION_ID", "NOTIFY_SOCKET")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_doctor_on_a_unit_the_user_manager_does_not_know(user_manager: UserManager) -> None:
    """systemctl's own words and a hint, not ``LoadState=not-found``; ``--json`` prints JSON
    (it printed nothing before)."""
    result = user_manager.doctor("nosuch-sdready")
    assert result.returncode == 3 and result.stdout == "", result
    assert result.stderr.splitlines() == [
        "Unit nosuch-sdready.service could not be found.",
        "Hint: Is the name right (see: systemctl --user list-unit-files)? A system unit needs "
        "no --user.",
    ], result.stderr
    result = user_manager.doctor("--json", "nosuch-sdready")
    report = json.loads(result.stdout)
    assert result.returncode == 3 and report["status"] == 3, result
    assert report["error"] == "Unit nosuch-sdready.service could not be found.", report
    assert report["unit"] == "nosuch-sdready.service" and report["results"] == [], report


# podman run in ExecStart= (docs/containers.md's unit, and what Quadlet writes): doctor only,
# the units are not started (the app in the container is checked in
# tests/plugins/test_podman_systemd.py, where the self-check cannot run: no INVOCATION_ID).
PODMAN_RUN = "/usr/bin/podman run --rm --sdnotify=container --network=host localhost/service-b"
QUADLET_RUN = (
    "/usr/bin/podman run --name=systemd-%N --cidfile=%t/%N.cid --replace --rm "
    "--cgroups=split --sdnotify=conmon -d localhost/service-b:latest"
)
PODMAN_CASES = [
    # (id, unit lines, the findings doctor reports)
    ("good", f"Type=notify\nNotifyAccess=all\nExecStart={PODMAN_RUN}", []),
    (
        "no-sdnotify",
        "Type=notify\nNotifyAccess=all\nExecStart="
        + PODMAN_RUN.replace(" --sdnotify=container", ""),
        ["podman-sdnotify"],
    ),
    (
        "notify-access",
        f"Type=notify\nNotifyAccess=main\nExecStart={PODMAN_RUN}",
        ["podman-notify-access"],
    ),
    (
        "quadlet-notify-yes",
        "Type=notify\nNotifyAccess=all\nExecStart="
        + QUADLET_RUN.replace("--sdnotify=conmon", "--sdnotify=container"),
        [],
    ),
    (
        "quadlet-default",
        f"Type=notify\nNotifyAccess=all\nExecStart={QUADLET_RUN}",
        ["podman-sdnotify"],
    ),
]


@pytest.mark.parametrize(
    ("lines", "expected"), [c[1:] for c in PODMAN_CASES], ids=[c[0] for c in PODMAN_CASES]
)
def test_doctor_on_podman_units(lines: str, expected: list[str], user_manager: UserManager) -> None:
    with user_manager.scoped():
        name = user_manager.unit_name("podman")
        source = "/etc/containers/systemd/service-b.container"
        unit_section = f"[Unit]\nSourcePath={source}\n" if "%N" in lines else ""
        user_manager.write_unit(name, f"{unit_section}[Service]\n{lines}\nTimeoutStartSec=300\n")
        report = json.loads(user_manager.doctor("--json", name).stdout)
        findings = _findings(report)
        assert [f.check for f in findings] == expected, report
        assert report["status"] == (
            0 if not expected else 2 if findings[0].verdict == "error" else 1
        )
        for finding in findings:
            if "%N" in lines:  # Quadlet's unit: the fix is in its .container file
                assert finding.fix == f"Notify=yes in [Container] of {source}", finding
