"""The unit checks' parts without systemd: timespans, ``systemctl show`` parsing, what an
``ExecStart=`` runs, each rule firing on a wrong unit and staying quiet on its control, and
the bounded runner. The real-systemd side is in test_unitcheck_systemd.py."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sdready import texts
from sdready._units._appfacts import AppFacts, describe_command
from sdready._units._unitcheck import FINDINGS, RULES, check
from sdready._units._unitinfo import (
    UnitConfig,
    UnitError,
    _last_watchdog,
    _run_bounded,
    own_unit,
    parse_timespan,
)

# What systemd 252's `systemctl --user show` printed for a running transient unit.
SHOWN = {
    "Id": "b.service",
    "LoadState": "loaded",
    "ActiveState": "active",
    "Type": "simple",
    "NotifyAccess": "main",
    "TimeoutStartUSec": "1min 15s",
    "TimeoutStopUSec": "5s",
    "WatchdogUSec": "1h 30min",
    "KillMode": "control-group",
    "FileDescriptorStoreMax": "0",
    "ExecStart": "{ path=/v/bin/python ; argv[]=/v/bin/python -m uvicorn b:app --port 8000 ; "
    "ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; "
    "status=0/0 }",
    "ExecReload": "{ path=/bin/kill ; argv[]=/bin/kill -HUP $MAINPID ; ignore_errors=no ; "
    "start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }",
    "Environment": "PYTHONUNBUFFERED=1 SDREADY_READY_TIMEOUT=60",
    "WorkingDirectory": "/srv/b",
}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1min 30s", 90.0),
        ("infinity", math.inf),
        ("0", 0.0),
        ("500ms", 0.5),
        ("1h 30min", 5400.0),
        ("2.5s", 2.5),
        ("1d 2h", 93600.0),
        ("bogus", None),
        ("", None),
        ("5s junk", None),
    ],
)
def test_parse_timespan(text: str, seconds: float | None) -> None:
    assert parse_timespan(text) == seconds


def test_unit_from_systemctl_show() -> None:
    unit = UnitConfig.from_properties(SHOWN)
    assert unit.name == "b.service" and unit.type == "simple" and not unit.notify_types
    assert (unit.timeout_start, unit.timeout_stop, unit.watchdog) == (75.0, 5.0, 5400.0)
    assert unit.exec_start == (("/v/bin/python", "-m", "uvicorn", "b:app", "--port", "8000"),)
    assert unit.exec_reload == (("/bin/kill", "-HUP", "$MAINPID"),)
    assert unit.environment["SDREADY_READY_TIMEOUT"] == "60"
    assert unit.reload_signal is None  # systemd 252 has no ReloadSignal=


def test_timeouts_of_zero_and_infinity_are_no_timeout() -> None:
    for text in ("0", "infinity"):
        unit = UnitConfig.from_properties({**SHOWN, "TimeoutStartUSec": text})
        assert unit.timeout_start == math.inf
    unit = UnitConfig.from_properties({**SHOWN, "WatchdogUSec": "infinity"})
    assert unit.watchdog is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("[Service]\nWatchdogSec=30\n", "30s"),
        ("[Service]\nWatchdogSec=1min\n# drop-in\n[Service]\nWatchdogSec=0\n", "0"),
        ("[Service]\nWatchdogSec=10\nWatchdogSec=2min\n", "2min"),
        ("[Service]\nType=notify\n", "0"),
    ],
)
def test_configured_watchdog_of_a_stopped_unit(text: str, value: str) -> None:
    assert _last_watchdog(text) == value


def test_own_unit_from_cgroup(tmp_path: Path) -> None:
    cgroup = tmp_path / "cgroup"
    cgroup.write_text(
        "9:name=systemd:/user.slice/user-0.slice/user@0.service/app.slice/b.service\n"
        "0::/user.slice/user-0.slice/user@0.service/app.slice/b.service\n"
    )
    assert own_unit(str(cgroup)) == "b.service"
    cgroup.write_text("0::/\n")
    assert own_unit(str(cgroup)) is None
    assert own_unit(str(tmp_path / "missing")) is None


PODMAN = ("/usr/bin/podman", "run", "--rm", "--sdnotify=container", "localhost/b")
# What Quadlet (podman >= 4.4) writes for a .container file without Notify=.
QUADLET = ("/usr/bin/podman", "run", "--name=systemd-%N", "--cidfile=%t/%N.cid", "--replace",
           "--rm", "--cgroups=split", "--sdnotify=conmon", "-d", "localhost/b:latest")  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "server", "front_end", "from_child", "on_hup"),
    [
        (["/v/uvicorn", "a:app"], "uvicorn", None, False, "dies"),
        (["/v/python3.11", "-m", "uvicorn", "a:app"], "uvicorn", None, False, "dies"),
        (["/v/uvicorn", "a:app", "--workers", "4"], "uvicorn", None, True, "restarts"),
        (["/v/uvicorn", "a:app", "--workers=1"], "uvicorn", None, False, "dies"),
        (["/v/hypercorn", "a:app"], "hypercorn", None, True, "restarts"),
        (["/usr/bin/env", "X=1", "granian", "a:app"], "granian", None, True, "restarts"),
        (["/v/waitress-serve", "a:app"], "waitress", None, False, "dies"),
        (["/v/flask", "run"], "werkzeug", None, False, "dies"),
        (
            ["/v/gunicorn", "-c", "python:sdready.plugins.gunicorn", "a:app"],
            "gunicorn",
            "gunicorn",
            False,
            "reloads",
        ),
        (["/v/gunicorn", "a:app"], "gunicorn", None, False, "restarts"),
        (
            ["/v/sdready", "exec", "--", "/v/uvicorn", "a:app"],
            "uvicorn",
            "exec",
            False,
            "dies",
        ),
        (["/v/python", "app.py"], None, None, None, None),
    ],
)
def test_describe_command(
    argv: list[str],
    server: str | None,
    front_end: str | None,
    from_child: bool | None,
    on_hup: str | None,
) -> None:
    facts = describe_command(argv)
    assert (facts.server, facts.front_end, facts.ready_from_child, facts.on_hup) == (
        server,
        front_end,
        from_child,
        on_hup,
    )


@pytest.mark.parametrize(
    ("argv", "sdnotify"),
    [
        (list(PODMAN), "container"),
        (["podman", "run", "--sdnotify", "healthy", "-e", "A=1", "img"], "healthy"),
        (list(QUADLET), "conmon"),
        (["podman", "--root", "/r", "run", "--rm", "img"], "conmon"),  # podman's default
        (["podman", "container", "run", "img", "app", "--sdnotify=container"], "conmon"),
        (["podman", "ps"], None),
        (["/v/uvicorn", "a:app"], None),
    ],
)
def test_podman_run_and_its_sdnotify(argv: list[str], sdnotify: str | None) -> None:
    facts = describe_command(argv)
    assert facts.sdnotify == sdnotify
    assert facts.known == (sdnotify is not None or facts.server is not None)


def test_quadlet_unit_without_notify_is_told_to_write_notify_yes() -> None:
    unit = replace(GOOD, notify_access="all", exec_start=(QUADLET,),
                   source_path="/etc/containers/systemd/b.container")  # fmt: skip
    (result,) = [r for r in check(unit, describe_command(QUADLET)) if r.verdict in FINDINGS]
    assert result.line("b.service") == (
        "b.service: ExecStart=podman run --sdnotify=conmon (podman's default) makes conmon "
        "send READY=1 as soon as the container started: units ordered after this one start "
        "before the app in the container listens. Write: Notify=yes in [Container] of "
        "/etc/containers/systemd/b.container"
    )
    notify = replace(unit, exec_start=((*QUADLET[:7], "--sdnotify=container", *QUADLET[8:]),))
    assert _findings(notify, describe_command(notify.exec_start[0])) == []  # Notify=yes


def test_unknown_command_gets_the_generic_checks_and_says_so() -> None:
    facts = describe_command(["/v/python", "app.py"])
    assert not facts.known
    assert facts.notes == ("python app.py is not a server sdready knows: generic checks only",)


def test_sdready_exec_options() -> None:
    argv = ["sdready", "exec", "--ready-timeout", "45", "--on-timeout=fail", "--watchdog"]
    facts = describe_command([*argv, "--", "/v/hypercorn", "a:app"])
    assert (facts.ready_timeout, facts.on_timeout, facts.watchdog) == (45.0, "fail", True)
    assert facts.forwards_signals
    passed = describe_command(["sdready", "exec", "--pass-notify", "--", "node", "s.js"])
    assert passed.watchdog is None  # the command may feed the watchdog itself


@pytest.mark.parametrize(
    ("text", "seconds"), [("2min", 120.0), ("500ms", 0.5), ("1.5s", 1.5), ("45", 45.0)]
)
def test_options_are_read_with_the_apps_own_parsers(text: str, seconds: float) -> None:
    # The app reads "2min" as 120 s: the doctor must not take it for the 30 s default.
    exec_facts = describe_command(
        ["sdready", "exec", "--ready-timeout", text, "--", "/v/uvicorn", "a:app"]
    )
    env = {"SDREADY_READY_TIMEOUT": text}
    plugin = ["/v/gunicorn", "-c", "python:sdready.plugins.gunicorn", "a:app"]
    gunicorn_facts = describe_command(plugin, env)
    assert exec_facts.ready_timeout == gunicorn_facts.ready_timeout == seconds
    # Control: the old reading, float(), cannot read the units at all.
    if not text.isdigit():
        with pytest.raises(ValueError):
            float(text)


@pytest.mark.parametrize(
    ("value", "expected"), [("", False), ("0", False), ("off", False), ("yes", True), (None, True)]
)
def test_gunicorn_booleans_are_read_as_the_plugin_reads_them(
    value: str | None, expected: bool
) -> None:
    from sdready._values import parse_bool

    env = {} if value is None else {"SDREADY_WATCHDOG": value}
    plugin = ["/v/gunicorn", "-c", "python:sdready.plugins.gunicorn", "a:app"]
    assert describe_command(plugin, env).watchdog is expected
    if value is not None:  # the plugin's own reading, which the doctor must agree with
        assert parse_bool("SDREADY_WATCHDOG", value) is expected
    if value == "":  # control: the old test (not one of 0/false/no/off) took "" for true
        assert value.strip().lower() not in ("0", "false", "no", "off")


def test_bad_on_timeout_falls_back_to_the_one_default() -> None:
    from sdready._values import DEFAULT_ON_TIMEOUT

    facts = describe_command(
        ["sdready", "exec", "--on-timeout", "bogus", "--", "/v/uvicorn", "a:app"]
    )
    assert facts.on_timeout == DEFAULT_ON_TIMEOUT


def test_gunicorn_config_file_and_graceful_timeout(tmp_path: Path) -> None:
    (tmp_path / "gunicorn.conf.py").write_text(
        "graceful_timeout = 50\nfrom sdready.plugins.gunicorn import install\n"
    )
    facts = describe_command(["/v/gunicorn", "a:app"], {}, str(tmp_path))
    assert (facts.front_end, facts.graceful_timeout) == ("gunicorn", 50.0)
    argv = ["/v/gunicorn", "-c", "python:sdready.plugins.gunicorn", "--graceful-timeout", "7"]
    assert describe_command(argv).graceful_timeout == 7.0
    env = {"SDREADY_READY_TIMEOUT": "60", "SDREADY_WATCHDOG": "off"}
    facts = describe_command(argv, env)
    assert (facts.ready_timeout, facts.watchdog) == (60.0, False)
    assert not facts.holds_sigterm
    assert describe_command(argv, {"SDREADY_SHUTDOWN_DELAY": "1.5"}).holds_sigterm


# -- the rules: one wrong unit and its control each ---------------------------------------

UVICORN = AppFacts(server="uvicorn", ready_from_child=False, on_hup="dies", watchdog=True)
WORKERS = replace(UVICORN, ready_from_child=True, on_hup="restarts")
EXEC = AppFacts(server="uvicorn", front_end="exec", ready_from_child=False, on_hup="dies",
                watchdog=False, forwards_signals=True)  # fmt: skip
GUNICORN = AppFacts(server="gunicorn", front_end="gunicorn", ready_from_child=False,
                    on_hup="reloads", watchdog=True, graceful_timeout=30.0)  # fmt: skip
GOOD = UnitConfig("x.service", type="notify", notify_access="main", timeout_start=60.0,
                  kill_mode="mixed", timeout_stop=40.0)  # fmt: skip
KILL_HUP = (("/bin/kill", "-HUP", "$MAINPID"),)
POD_GOOD = replace(GOOD, notify_access="all", exec_start=(PODMAN,))

RULE_CASES = [
    # (check, facts, the wrong unit, its control)
    ("type", UVICORN, replace(GOOD, type="simple"), GOOD),
    ("type", UVICORN, replace(GOOD, type="exec"), GOOD),
    ("notify-access", WORKERS, GOOD, replace(GOOD, notify_access="all")),
    ("timeout-start", UVICORN, replace(GOOD, timeout_start=30.0), GOOD),
    (
        "timeout-start-infinite",
        replace(EXEC, on_timeout="fail"),
        replace(GOOD, timeout_start=math.inf),
        GOOD,
    ),
    ("watchdog-off", EXEC, replace(GOOD, watchdog=10.0), GOOD),
    (
        "watchdog-child",
        replace(WORKERS),
        replace(GOOD, watchdog=10.0, notify_access="all"),
        replace(GOOD, notify_access="all"),
    ),
    ("notify-reload", UVICORN, replace(GOOD, type="notify-reload"), GOOD),
    (
        "reload-signal",
        GUNICORN,
        replace(GOOD, type="notify-reload", reload_signal=10),
        replace(GOOD, type="notify-reload", reload_signal=1),
    ),
    ("exec-reload", UVICORN, replace(GOOD, exec_reload=KILL_HUP), GOOD),
    (
        "exec-reload",
        EXEC,
        replace(GOOD, exec_reload=(("/bin/kill", "-s", "HUP", "1"),)),
        replace(GOOD, exec_reload=(("/usr/bin/curl", "-X", "POST", "http://x/reload"),)),
    ),
    ("kill-mode", EXEC, replace(GOOD, kill_mode="control-group"), GOOD),
    (
        "kill-mode-delay",
        replace(GUNICORN, holds_sigterm=True),
        replace(GOOD, kill_mode="control-group"),
        GOOD,
    ),
    ("stop-timeout", GUNICORN, replace(GOOD, timeout_stop=20.0), GOOD),
    ("fdstore", replace(UVICORN, keeps_sockets=True), GOOD, replace(GOOD, fdstore_max=8)),
    (
        "fdstore-size",
        replace(GUNICORN, keeps_sockets=True, sockets_kept=2),
        replace(GOOD, fdstore_max=1),
        replace(GOOD, fdstore_max=2),
    ),
    (
        "podman-sdnotify",
        AppFacts(sdnotify="conmon"),
        replace(POD_GOOD, exec_start=((*PODMAN[:3], *PODMAN[4:]),)),  # no --sdnotify: conmon
        POD_GOOD,
    ),
    (
        "podman-sdnotify",
        AppFacts(sdnotify="ignore"),
        replace(POD_GOOD, exec_start=((*PODMAN[:3], "--sdnotify=ignore", *PODMAN[4:]),)),
        POD_GOOD,
    ),
    (
        "podman-notify-access",
        AppFacts(sdnotify="container"),
        replace(POD_GOOD, notify_access="main"),
        POD_GOOD,
    ),
]


def _fired(unit: UnitConfig, facts: AppFacts) -> list[str]:
    return [r.check for r in check(unit, facts) if r.verdict not in ("ok", "skipped")]


def _findings(unit: UnitConfig, facts: AppFacts) -> list[str]:
    return [r.check for r in check(unit, facts) if r.verdict in FINDINGS]


@pytest.mark.parametrize(
    ("name", "facts", "wrong", "control"), RULE_CASES, ids=[c[0] for c in RULE_CASES]
)
def test_rule_fires_on_the_wrong_unit_only(
    name: str, facts: AppFacts, wrong: UnitConfig, control: UnitConfig
) -> None:
    assert _fired(wrong, facts) == [name]
    assert _fired(control, facts) == []


# Sound units a user writes: none of them is a finding (a note at most).
TYPICAL = [
    *[replace(GOOD, timeout_start=float(s)) for s in (10, 20, 30, 45, 60, 90)],
    replace(GOOD, timeout_start=math.inf),
    UnitConfig("x.service", type="notify"),  # nothing but Type=: systemd's defaults
]


@pytest.mark.parametrize(
    "facts",
    [UVICORN, EXEC, GUNICORN, AppFacts(), AppFacts(sdnotify="container")],
    ids=["uvicorn", "exec", "gunicorn", "unknown", "podman"],
)
@pytest.mark.parametrize("unit", TYPICAL, ids=lambda u: f"start={u.timeout_start}")
def test_typical_units_have_no_finding(unit: UnitConfig, facts: AppFacts) -> None:
    if facts.forwards_signals:  # sdready exec: the kill-mode check's fix, as documented
        unit = replace(unit, kill_mode="mixed")
    if facts.sdnotify:  # podman run: as docs/containers.md and Quadlet write it
        unit = replace(unit, notify_access="all", exec_start=(PODMAN,))
    assert _findings(unit, facts) == []


def test_a_start_limit_below_ready_timeout_is_a_note_not_a_warning() -> None:
    """systemd failing a start that never listens is sound: INFO, exit status 0."""
    results = check(replace(GOOD, timeout_start=20.0), UVICORN)
    (result,) = [r for r in results if r.verdict not in ("ok", "skipped")]
    assert (result.check, result.verdict) == ("timeout-start", "note")
    assert result.line("b.service") == (
        "b.service: TimeoutStartSec=20s is not longer than sdready's ready_timeout (30 s): a "
        "start that never listens is failed by systemd, before sdready's on_timeout='warn' "
        "would act. Fine as it is; to change it, write: TimeoutStartSec=60"
    )


def test_every_rule_is_tested_and_has_its_texts() -> None:
    assert {rule.check for rule in RULES} == {case[0] for case in RULE_CASES}
    for rule in RULES:
        assert rule.text in vars(texts).values(), rule.check  # from the one texts module


def test_the_line_names_setting_value_why_and_fix() -> None:
    (result,) = [
        r
        for r in check(replace(GOOD, type="simple"), UVICORN)
        if r.verdict not in {"ok", "skipped"}
    ]
    assert result.line("b.service") == (
        "b.service: Type=simple makes systemd start the units ordered after this one as soon "
        "as the process exists, before uvicorn listens, and ignore READY=1. Write: Type=notify"
    )


def test_unknown_facts_skip_rather_than_guess() -> None:
    results = check(replace(GOOD, watchdog=10.0, exec_reload=KILL_HUP), AppFacts())
    verdicts = {r.check: r.verdict for r in results}
    assert verdicts["type"] == verdicts["watchdog-off"] == verdicts["exec-reload"] == "skipped"
    assert verdicts["timeout-start"] == "ok"  # generic: sdready's default ready_timeout


# -- the bounded runner ---------------------------------------------------------------------

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def test_runner_returns_status_and_output() -> None:
    code, output = _run_bounded(["sh", "-c", "echo Id=x; echo oops >&2; exit 3"], ENV, 10)
    assert (code, output) == (3, "Id=x\noops\n")


def test_runner_is_bounded() -> None:
    with pytest.raises(UnitError, match=r"took over 0\.3 s"):
        _run_bounded(["sleep", "30"], ENV, 0.3)


def test_runner_missing_program() -> None:
    with pytest.raises(UnitError, match="No such file"):
        _run_bounded(["sdready-no-such-program"], ENV, 5)


def test_runner_ends_with_the_child_even_if_another_process_holds_the_pipe() -> None:
    """A process forked meanwhile (gunicorn booting a worker) keeps the pipe open: the
    child's exit, not EOF, ends the read (subprocess would wait for that process)."""
    started = time.monotonic()
    code, output = _run_bounded(["sh", "-c", "echo Id=x; sleep 20 & exit 0"], ENV, 15)
    assert (code, output) == (0, "Id=x\n")
    assert time.monotonic() - started < 15  # the bound itself was not what ended it


def test_import_sdready_does_not_load_the_checks() -> None:
    import subprocess

    code = (
        "import sdready, sys\n"
        "checks = {'sdready._units._unitcheck', 'sdready._units._unitinfo',"
        " 'sdready._units._appfacts'}\n"
        "assert not checks & set(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_python_script_with_sdready_inside_is_a_known_front_end(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("from sdready.plugins.flask import SystemdNotify\n")
    (tmp_path / "client.py").write_text("import urllib.request\n")
    facts = describe_command(["/v/python", "app.py"], {}, str(tmp_path))
    assert facts.known and facts.front_end == "python" and facts.server is None
    assert not describe_command(["/v/python", "client.py"], {}, str(tmp_path)).known


def test_keeping_sockets_is_read_from_the_command_line_and_config(tmp_path: Path) -> None:
    argv = ["sdready", "exec", "--listen", "127.0.0.1:8000", "--", "/v/uvicorn", "--fd", "3"]
    assert describe_command(argv).keeps_sockets
    assert not describe_command(["sdready", "exec", "--", "/v/uvicorn", "a:app"]).keeps_sockets
    gunicorn = ["/v/gunicorn", "-c", "python:sdready.plugins.gunicorn", "a:app"]
    assert describe_command(gunicorn, {"SDREADY_KEEP_SOCKETS": "1"}).keeps_sockets
    assert not describe_command(gunicorn, {"SDREADY_KEEP_SOCKETS": "0"}).keeps_sockets
    assert not describe_command(gunicorn).keeps_sockets  # default: only with a store
    (tmp_path / "gunicorn.conf.py").write_text(
        "sdready_keep_sockets = True\nfrom sdready.plugins.gunicorn import install\n"
    )
    assert describe_command(["/v/gunicorn", "a:app"], {}, str(tmp_path)).keeps_sockets


def test_reference_lists_every_check_with_its_message() -> None:
    reference = (Path(__file__).resolve().parents[2] / "docs" / "reference.md").read_text()
    for rule in RULES:
        why, fix = rule.text
        assert f"| `{rule.check}` | `{rule.setting}=` | {rule.severity} |" in reference
        assert f"| {why} | `{fix}` |" in reference, rule.check
    assert texts.CHECK_WATCHDOG_HEALTH in reference


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"INVOCATION_ID": "abc"}, "abc"),  # Type=simple: no NOTIFY_SOCKET
        ({"INVOCATION_ID": "abc", "NOTIFY_SOCKET": "/run/systemd/notify"}, "abc"),
        ({"INVOCATION_ID": "abc", "NOTIFY_SOCKET": "/run/user/0/systemd/notify"}, "abc"),
        ({"INVOCATION_ID": "abc", "NOTIFY_SOCKET": "/tmp/pytest-1/recorder.sock"}, None),
        ({"NOTIFY_SOCKET": "/run/systemd/notify"}, None),
        ({}, None),
    ],
)
def test_the_check_runs_only_under_a_service_manager(
    environ: dict[str, str], expected: str | None
) -> None:
    from sdready._env import invocation_id

    assert invocation_id(environ) == expected


def test_the_gunicorn_plugin_stop_budget_covers_a_short_timeout_stop_sec() -> None:
    covered = replace(GUNICORN, extends_stop=True)
    short = replace(GOOD, timeout_stop=10.0)
    assert _fired(short, covered) == []  # Type=notify: the plugin extends the stop
    assert _fired(replace(short, type="simple"), covered) == ["type", "stop-timeout"]


def test_engine_facts_in_a_gunicorn_worker_are_not_the_plugins(
    notify_socket: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ASGI plugin in a gunicorn worker (gunicorn without sdready's plugin) notifies from
    a child and extends no stop; in gunicorn's main process the engine is the plugin."""
    from sdready import Readiness
    from sdready._units._unitcheck import _engine_facts

    facts = describe_command(["/v/gunicorn", "-k", "uvicorn_worker.UvicornWorker", "a:app"])
    assert facts.front_end is None and not facts.extends_stop
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(os.getpid() + 100000))  # another main
    worker = _engine_facts(Readiness(), facts)
    assert worker.ready_from_child and not worker.extends_stop
    monkeypatch.setenv("SYSTEMD_EXEC_PID", str(os.getpid()))
    arbiter = _engine_facts(Readiness(), facts)
    assert not arbiter.ready_from_child and arbiter.extends_stop
    assert arbiter.front_end == "gunicorn"


# -- sdready doctor when it cannot check ----------------------------------------------------


def _doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sdready", "doctor", *args],
        env=env if env is not None else dict(os.environ),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _no_session(**extra: str) -> dict[str, str]:
    """The environment without a user session (su, sudo, a cron job, CI)."""
    drop = ("XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS", "INVOCATION_ID", "NOTIFY_SOCKET")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


SYSTEM_MANAGER = Path("/run/systemd/system").exists()  # sd_booted(3)


@pytest.mark.skipif(shutil.which("systemctl") is None, reason="systemctl missing")
def test_doctor_names_a_missing_system_manager_or_unit() -> None:
    """The real systemctl: without systemd as PID 1 (this machine type) a plain sentence
    and what to do, not sd_bus's bare 'Host is down'; with it, systemctl's not-found."""
    result = _doctor("nosuch-sdready-unit", env=_no_session())
    assert result.returncode == 3 and result.stdout == "", result
    first, hint = result.stderr.splitlines()
    if SYSTEM_MANAGER:
        assert first == "Unit nosuch-sdready-unit.service could not be found.", result.stderr
    else:
        assert first.startswith(
            "Cannot ask systemd about nosuch-sdready-unit.service: no system manager here ("
        ), result.stderr
        assert "systemd is not PID 1" in hint and "--user" in hint, hint
    assert hint.startswith("Hint: "), hint


@pytest.mark.skipif(shutil.which("systemctl") is None, reason="systemctl missing")
def test_doctor_user_without_a_user_manager_says_so_and_json_is_json() -> None:
    result = _doctor("--user", "app", env=_no_session())
    assert result.returncode == 3, result
    assert result.stderr.startswith(
        "Cannot ask systemd about app.service: no user manager here (Failed to connect to bus"
    ), result.stderr
    assert "Hint: No user manager in this session" in result.stderr, result.stderr
    report = json.loads(_doctor("--user", "--json", "app", env=_no_session()).stdout)
    assert report["status"] == 3 and report["results"] == [], report
    assert report["error"].startswith("Cannot ask systemd about app.service"), report
    assert "drop --user" in report["hint"], report


def test_doctor_without_systemctl_and_without_a_unit(tmp_path: Path) -> None:
    result = _doctor("app", env=_no_session(PATH=str(tmp_path)))
    assert result.returncode == 3, result
    assert result.stderr.splitlines()[0] == (
        "Cannot ask systemd about app.service: no system manager here "
        "(systemctl: No such file or directory)."
    ), result.stderr
    # No UNIT outside any unit: --json still prints JSON.
    report = json.loads(_doctor("--json", env=_no_session(PATH=str(tmp_path))).stdout)
    assert report == {
        "unit": None,
        "user": False,
        "status": 3,
        "error": "Give a UNIT: this process runs in none.",
        "hint": None,
        "results": [],
    }
