"""A private systemd user manager for tests and demos.

:class:`UserManager` starts ``systemd --user`` in its own mount namespace, where a tmpfs on
``/run/systemd`` holds the ``/run/systemd/system`` marker that makes it behave as under a
booted systemd, with a fresh ``XDG_RUNTIME_DIR`` and ``XDG_CONFIG_HOME``. Every ``systemctl``
and ``systemd-run`` call goes through ``nsenter`` into that namespace, so the client sees what
the manager sees (outside it, ``is-system-running`` reports ``offline``). Where the cgroup
file system is writable, the manager also gets its own top-level cgroup, as
``user@.service`` would: two managers (pytest-xdist workers) then never trim or watch each
other's unit cgroups, and whatever a broken run leaves behind can be found and killed.

Usage outside pytest (the demo imports this module; pytest is imported lazily)::

    with UserManager() as manager:
        unit = manager.run_python("import sdready; sdready.ready(); ...")
        manager.wait_for(unit, ActiveState="active")

In tests, ``from _systemd import user_manager`` in conftest.py provides the session-scoped
``user_manager`` fixture (built on first access, see :func:`__getattr__`).

Another systemd than the host's: ``UserManager(systemd=Systemd.tree(root))`` runs the manager
*and* its clients (``systemctl``, ``systemd-run``, ``systemd-analyze``) from an unpacked
package tree, with ``LD_LIBRARY_PATH`` at the tree's ``libsystemd-shared``, so client and
manager always match. ``.ci/systemd254`` unpacks systemd 254 into ``.cache/systemd-254/root``
(``SDREADY_SYSTEMD_ROOT`` points elsewhere); :func:`systemd_254` finds it, and the
``user_manager_254`` fixture runs a manager from it for tests of systemd >= 253 behaviour
(``Type=notify-reload``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_PROPERTIES",
    "HOST",
    "Systemd",
    "SystemdUnavailable",
    "UnitTimeout",
    "UserManager",
    "python_for_units",
    "systemd_254",
    "unavailable_reason",
    "verify_units",
    "wait_until",
]

SYSTEMD = "/usr/lib/systemd/systemd"
_REPO = Path(__file__).resolve().parent.parent
# Where .ci/systemd254 unpacks bookworm-backports' systemd 254.
TREE_254 = _REPO / ".cache" / "systemd-254" / "root"
DEFAULT_PROPERTIES = ("ActiveState", "SubState", "StatusText", "NRestarts", "Result", "MainPID")
# Property values come in many types; the ones we pass are rendered with str().
PropertyValue = str | int | float
Properties = Mapping[str, PropertyValue] | Iterable[tuple[str, PropertyValue]]

# Launched as ``sh -c SCRIPT sh CONSOLE_TTY CGROUP_DIR...`` in a new mount namespace: join
# our cgroups, hide the host's /run/systemd behind a tmpfs holding the "booted" marker, put
# our pty on /dev/console (the manager logs to the console device, never to stderr, and
# refuses anything that is not a tty), then become the manager: same pid all the way, so
# Popen.pid is the namespace's anchor.
_LAUNCH = """
set -e
console=$1; shift
for d in "$@"; do echo $$ > "$d/cgroup.procs"; done
[ -d /run/systemd ] || mkdir -p /run/systemd
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mkdir -p /run/systemd/system
mount --bind "$console" /dev/console
exec {systemd} --user
"""

# Lower than systemd's 90 s so a unit that ignores SIGTERM cannot stall teardown for long.
_USER_CONF = """\
[Manager]
DefaultTimeoutStopSec=5s
DefaultTimeoutStartSec=30s
"""


class SystemdUnavailable(RuntimeError):
    """A private systemd user manager cannot run here; the message is the skip reason."""


class UnitTimeout(AssertionError):
    """A unit did not reach the expected state in time; the message carries diagnostics."""


@dataclasses.dataclass(frozen=True)
class Systemd:
    """Which systemd runs the manager and its clients: the host's, or an unpacked tree.

    A tree is what ``dpkg -x`` makes of Debian's ``systemd`` and ``libsystemd-shared``
    packages: ``ROOT/lib/systemd/systemd``, ``ROOT/bin/systemctl``,
    ``ROOT/usr/bin/systemd-run`` (or their merged-/usr places) and
    ``ROOT/usr/lib/<multiarch>/systemd/libsystemd-shared-NNN.so``, which the binaries find
    through ``LD_LIBRARY_PATH`` (it beats their RUNPATH, the host's copy). Paths compiled
    into the binaries still name the host's files: unit search paths, generators, and the
    binary ``daemon-reexec`` executes (see :meth:`UserManager.daemon_reexec`).
    """

    root: Path | None = None  # None: the host's systemd, clients from PATH

    @classmethod
    def tree(cls, root: str | os.PathLike[str]) -> Systemd:
        return cls(Path(root).resolve())

    @property
    def manager(self) -> str:
        """The ``systemd`` binary."""
        if self.root is None:
            return SYSTEMD
        return self._find("lib/systemd/systemd", "usr/lib/systemd/systemd")

    def tool(self, name: str) -> str:
        """How to call client *name* (``systemctl``, ``systemd-analyze``, …)."""
        if self.root is None:
            return name
        return self._find(f"usr/bin/{name}", f"bin/{name}")

    def _find(self, *candidates: str) -> str:
        assert self.root is not None
        paths = [self.root / c for c in candidates]
        return str(next((p for p in paths if p.exists()), paths[0]))

    def env(self) -> dict[str, str]:
        """What the manager and the clients need in their environment (the library path)."""
        if self.root is None:
            return {}
        libs = sorted(self.root.glob("usr/lib/*/systemd/libsystemd-shared-*.so"))
        return {"LD_LIBRARY_PATH": str(libs[0].parent)} if libs else {}

    @functools.cached_property
    def version(self) -> int:
        """``systemd --version``'s number (0 when it does not run)."""
        try:
            out = subprocess.run(
                [self.manager, "--version"],
                env={**os.environ, **self.env()},
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout
        except OSError:
            return 0
        match = re.match(r"systemd (\d+)", out)
        return int(match.group(1)) if match else 0

    def unavailable_reason(self) -> str | None:
        """Why this systemd's binaries cannot run here, or None."""
        if self.root is None:
            if not os.access(SYSTEMD, os.X_OK):
                return f"systemd is not installed ({SYSTEMD} missing)"
            for tool in ("systemctl", "systemd-run"):
                if shutil.which(tool) is None:
                    return f"{tool} is not on PATH"
            return None
        for program in (self.manager, self.tool("systemctl"), self.tool("systemd-run")):
            if not os.access(program, os.X_OK):
                return f"no systemd tree at {self.root} ({program} missing)"
        if not self.version:
            return f"{self.manager} --version does not run (LD_LIBRARY_PATH: {self.env()})"
        return None

    def __str__(self) -> str:
        if self.root is None:
            return "the host's systemd"
        return f"systemd {self.version} in {self.root}"


HOST = Systemd()


def systemd_254() -> Systemd:
    """The systemd 254 tree: ``$SDREADY_SYSTEMD_ROOT`` or ``.ci/systemd254``'s cache.

    Check :meth:`Systemd.unavailable_reason` before use: the tree may not be fetched.
    """
    return Systemd.tree(os.environ.get("SDREADY_SYSTEMD_ROOT") or TREE_254)


def unavailable_reason(systemd: Systemd = HOST) -> str | None:
    """Why a private user manager cannot run on this machine, or None if it should."""
    if not sys.platform.startswith("linux"):
        return f"systemd needs Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return "a private systemd user manager needs root (mount namespace and tmpfs mount)"
    for tool in ("unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH"
    return systemd.unavailable_reason()


def python_for_units() -> tuple[str, dict[str, str]]:
    """The interpreter a unit should run and the environment it needs to import sdready.

    ``sys.executable`` of a venv finds the venv's site-packages (and an editable sdready) by
    itself; an explicit ``PYTHONPATH`` of the test run is passed on, since the manager does
    not inherit the caller's environment. Unbuffered output keeps unit logs complete when a
    unit is killed.
    """
    env = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return sys.executable, env


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
) -> Any:
    """Poll *predicate* until it returns something truthy; raise :class:`UnitTimeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise UnitTimeout(f"after {timeout:.1f} s: {text}")
        time.sleep(interval)


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"<{path}: {exc.strerror}>"
    text = data[-limit:].decode("utf-8", "replace")
    return text if len(data) <= limit else "…" + text


def _cgroup_hierarchies() -> list[Path]:
    """The cgroup mounts whose placement decides where a systemd manager roots its tree."""
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():  # pure cgroup v2
        return [root]
    # Hybrid/legacy: name=systemd tracks processes, "unified" delivers empty notifications.
    return [p for p in (root / "systemd", root / "unified") if (p / "cgroup.procs").exists()]


class UserManager:
    """A private ``systemd --user`` instance and helpers to run and inspect units in it.

    Not thread-safe; one per process (pytest-xdist workers each start their own). Unit names
    carry a random tag, so managers sharing the host's cgroup tree cannot collide.
    """

    def __init__(
        self, *, start_timeout: float = 20.0, log_level: str = "info", systemd: Systemd = HOST
    ) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.systemd = systemd
        self.start_timeout = start_timeout
        self.log_level = log_level
        self.base_dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._cgroups: list[Path] = []
        self._console: _Console | None = None
        self._counter = 0
        self._units: list[str] = []  # started or written by us, in order, for cleanup
        self._unit_files: dict[str, Path] = {}

    # -- paths -----------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        if self.base_dir is None:
            raise RuntimeError("UserManager is not started")
        return self.base_dir / name

    @property
    def runtime_dir(self) -> Path:
        """``XDG_RUNTIME_DIR`` of the manager (its private bus and notify socket live here)."""
        return self._dir("run")

    @property
    def config_dir(self) -> Path:
        """``XDG_CONFIG_HOME`` of the manager."""
        return self._dir("config")

    @property
    def unit_dir(self) -> Path:
        """Where :meth:`write_unit` puts unit files (``$XDG_CONFIG_HOME/systemd/user``)."""
        return self.config_dir / "systemd" / "user"

    @property
    def work_dir(self) -> Path:
        """Scripts and unit output logs; removed by :meth:`stop`."""
        return self._dir("work")

    @property
    def log_path(self) -> Path:
        """The manager's log (bind-mounted over its /dev/console) and its children's stderr."""
        return self._dir("manager.log")

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("UserManager is not started")
        return self.process.pid

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> UserManager:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the manager and wait until it is ``running``.

        Raises :class:`SystemdUnavailable` when this machine cannot run it (the reason says
        why, with the manager's log), after cleaning up what was created.
        """
        reason = unavailable_reason(self.systemd)
        if reason is not None:
            raise SystemdUnavailable(reason)
        # Socket paths under XDG_RUNTIME_DIR must fit sun_path (108 bytes): stay short.
        parent = tempfile.gettempdir()
        if len(parent) > 40:
            parent = "/tmp"
        _sweep_stale(parent)
        self.base_dir = Path(tempfile.mkdtemp(prefix=f"sdready-sd-{self.tag}-", dir=parent))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.runtime_dir.mkdir(mode=0o700)
        self.unit_dir.mkdir(parents=True)
        self.work_dir.mkdir()
        for name in ("data", "state", "cache"):
            self._dir(name).mkdir()
        conf = _USER_CONF
        if "LD_LIBRARY_PATH" in self.systemd.env():
            # A user manager hands its own environment to its units; `unset-environment`
            # cannot remove that part. Empty, the variable changes nothing for them.
            conf += "DefaultEnvironment=LD_LIBRARY_PATH=\n"
        (self.config_dir / "systemd" / "user.conf").write_text(conf)
        self._cgroups = self._make_cgroups()
        self._console = _Console(self.log_path)

        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "XDG_CONFIG_HOME": str(self.config_dir),
            "XDG_DATA_HOME": str(self._dir("data")),
            "XDG_STATE_HOME": str(self._dir("state")),
            "XDG_CACHE_HOME": str(self._dir("cache")),
            "SYSTEMD_LOG_TARGET": "console",  # no journald here: our pty, see _LAUNCH
            "SYSTEMD_LOG_LEVEL": self.log_level,
            **self.systemd.env(),
        }
        command = ["unshare", "--mount", "--propagation", "private"]
        if _has_pdeathsig():
            # If the test run dies hard, SIGTERM makes a user manager start exit.target.
            # (The signal follows the *thread* that started us: start from a long-lived one.)
            command += ["setpriv", "--pdeathsig", "TERM"]
        launch = _LAUNCH.format(systemd=shlex.quote(self.systemd.manager))
        command += ["sh", "-c", launch, "sh", self._console.tty]
        command += [str(p) for p in self._cgroups]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,  # generators and early failures (unshare, mount) write here
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C for pytest is not a signal for systemd
            )
        self._dir("pid").write_text(f"{self.process.pid}\n")  # for _sweep_stale
        self._wait_running(self.start_timeout)

    def _make_cgroups(self) -> list[Path]:
        made: list[Path] = []
        for hierarchy in _cgroup_hierarchies():
            path = hierarchy / f"sdready-{self.tag}"
            try:
                path.mkdir()
            except OSError:
                # Read-only cgroupfs (unprivileged container): run without isolation.
                for done in made:
                    with contextlib.suppress(OSError):
                        done.rmdir()
                return []
            made.append(path)
        return made

    def _wait_running(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise SystemdUnavailable(
                    f"systemd --user exited with {self.process.returncode} while starting:\n"
                    + _tail(self.log_path)
                )
            # Exit code 1 merely means "not running yet"; we read the word.
            result = self.run("is-system-running", check=False, timeout=5)
            state = result.stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.05)
        raise SystemdUnavailable(
            f"systemd --user did not reach 'running' within {timeout:.0f} s (last state "
            f"{state!r}):\n" + _tail(self.log_path)
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop our units, ask the manager to exit, wait, kill leftovers, remove everything.

        Safe to call twice and after a failed :meth:`start`.
        """
        process = self.process
        try:
            if process is not None and process.poll() is None:
                with contextlib.suppress(Exception):
                    self.cleanup()
                with contextlib.suppress(Exception):
                    self.run("exit", check=False, timeout=5)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.terminate()  # exit.target again, in case "exit" got lost
                    try:
                        process.wait(timeout / 2)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait(5)
        finally:
            self.process = None
            self._units.clear()
            self._unit_files.clear()
            if self._console is not None:
                self._console.close()
                self._console = None
            _remove_cgroups(self.tag)
            if self.base_dir is not None:
                shutil.rmtree(self.base_dir, ignore_errors=True)
                self.base_dir = None

    # -- running commands ------------------------------------------------------------------

    def _client_env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "SYSTEMD_PAGER": "",
            "SYSTEMD_COLORS": "0",
            **self.systemd.env(),
        }

    def command(
        self, program: str, *args: str, check: bool = True, timeout: float = 10.0
    ) -> subprocess.CompletedProcess[str]:
        """Run *program* (``systemctl``, ``systemd-run``, …) inside the manager's namespace.

        systemd's own clients come from the manager's :class:`Systemd`, so they match it.
        """
        argv = ["nsenter", "--mount", f"--target={self.pid}", "--", self.systemd.tool(program)]
        argv += args
        try:
            result = subprocess.run(
                argv,
                env=self._client_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise UnitTimeout(f"{shlex.join(argv[4:])} took over {timeout} s") from exc
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, argv[4:], result.stdout, result.stderr
            )
        return result

    def run(
        self, *args: str, check: bool = True, timeout: float = 10.0
    ) -> subprocess.CompletedProcess[str]:
        """``systemctl --user ARGS`` against this manager."""
        return self.command("systemctl", "--user", *args, check=check, timeout=timeout)

    def doctor(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """``sdready doctor --user ARGS`` inside the manager's namespace, with this manager's
        own ``systemctl`` first on PATH (the client doctor runs must match the manager)."""
        env = {**os.environ, **self._client_env()}
        if self.systemd.root is not None:
            env["PATH"] = f"{Path(self.systemd.tool('systemctl')).parent}:{env['PATH']}"
        sdready = str(Path(sys.executable).parent / "sdready")
        argv = ["nsenter", "--mount", f"--target={self.pid}", "--", sdready, "doctor", "--user"]
        return subprocess.run(
            [*argv, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def unit_name(self, base: str, suffix: str = ".service") -> str:
        """A unit name no other manager on this host (or earlier call) uses."""
        self._counter += 1
        return f"sdready-{base}-{self.tag}-{self._counter}{suffix}"

    def systemd_run(
        self,
        *argv: str,
        unit: str = "unit",
        properties: Properties = (),
        service_type: str | None = "notify",
        env: Mapping[str, str] | None = None,
        wait_started: bool = False,
        timeout: float = 10.0,
    ) -> str:
        """Start *argv* as a transient service; return its unique name.

        :param unit: base of the name (see :meth:`unit_name`).
        :param properties: ``-p`` settings, e.g. ``{"WatchdogSec": "1"}``; pass pairs to
            repeat a key (``[("After", b), ("Requires", b)]``).
        :param wait_started: wait for the start job (for ``Type=notify``: until READY=1 or
            failure); by default return at once and let the caller :meth:`wait_for`.
        Output goes to ``work_dir/<name>.log``, shown by :meth:`describe`.
        """
        name = self.unit_name(unit)
        log = self.work_dir / f"{name}.log"
        args = [f"--unit={name}", "--user", "--quiet"]
        if not wait_started:
            args.append("--no-block")
        pairs = list(properties.items() if isinstance(properties, Mapping) else properties)
        if service_type is not None:
            pairs.insert(0, ("Type", service_type))
        pairs += [("StandardOutput", f"append:{log}"), ("StandardError", f"append:{log}")]
        args += [f"--property={key}={value}" for key, value in pairs]
        args += [f"--setenv={key}={value}" for key, value in (env or {}).items()]
        self._units.append(name)
        try:
            self.command("systemd-run", *args, "--", *argv, timeout=timeout)
        except subprocess.CalledProcessError as exc:
            raise AssertionError(
                f"systemd-run failed ({exc.returncode}): {exc.stderr.strip()}\n"
                + self.describe(name)
            ) from exc
        return name

    def write_script(self, source: str, *, name: str = "script") -> Path:
        """Write dedented Python *source* into the work dir; return its path."""
        self._counter += 1
        path = self.work_dir / f"{name}-{self._counter}.py"
        path.write_text(textwrap.dedent(source))
        return path

    def run_python(
        self,
        source: str,
        *args: str | os.PathLike[str],
        unit: str = "py",
        properties: Properties = (),
        service_type: str | None = "notify",
        env: Mapping[str, str] | None = None,
        wait_started: bool = False,
    ) -> str:
        """Run Python *source* (dedented) as a transient service; return the unit name.

        The script runs with the test run's interpreter (:func:`python_for_units`), so it
        imports sdready; *args* become its ``sys.argv[1:]``.
        """
        script = self.write_script(source, name=unit)
        python, python_env = python_for_units()
        return self.systemd_run(
            python,
            str(script),
            *(os.fspath(a) for a in args),
            unit=unit,
            properties=properties,
            service_type=service_type,
            env={**python_env, **(env or {})},
            wait_started=wait_started,
        )

    def write_unit(self, name: str, text: str, *, reload: bool = True) -> Path:
        """Write a unit file into :attr:`unit_dir` (then ``daemon-reload``); return its path.

        Use :meth:`unit_name` for *name* so parallel managers do not share cgroups.
        """
        path = self.unit_dir / name
        path.write_text(textwrap.dedent(text))
        self._unit_files[name] = path
        self._units.append(name)
        if reload:
            self.daemon_reload()
        return path

    def write_dependent_unit(
        self,
        name: str,
        server: str,
        command: str,
        *,
        log: Path,
        environment: str = "",
        reload: bool = True,
    ) -> Path:
        """A oneshot unit that needs *server* (``Requires=``, ``After=``) and runs *command*
        once, output to *log*: the seed's service A, started only once *server* is."""
        env_line = f"Environment={environment}\n" if environment else ""
        return self.write_unit(
            name,
            f"[Unit]\nRequires={server}\nAfter={server}\n\n[Service]\nType=oneshot\n"
            f"ExecStart={command}\n{env_line}"
            f"StandardOutput=append:{log}\nStandardError=append:{log}\n",
            reload=reload,
        )

    def start_unit(self, name: str, *, wait_started: bool = False, timeout: float = 10.0) -> None:
        """``systemctl --user start`` (``--no-block`` unless *wait_started*)."""
        args = ["start", name] if wait_started else ["start", "--no-block", name]
        self.run(*args, timeout=timeout)

    # -- state -----------------------------------------------------------------------------

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """``systemctl --user show -p ...`` parsed into a dict (all of DEFAULT_PROPERTIES by
        default). Note an unloaded (garbage-collected) unit shows ``LoadState=not-found``."""
        props = props or DEFAULT_PROPERTIES
        result = self.run("show", f"--property={','.join(props)}", unit, timeout=5)
        values: dict[str, str] = {}
        for line in result.stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key] = value
        return values

    def wait_for(
        self,
        unit: str,
        predicate: Callable[[dict[str, str]], bool] | None = None,
        *,
        timeout: float = 10.0,
        interval: float = 0.05,
        props: Sequence[str] = DEFAULT_PROPERTIES,
        **expected: str | int,
    ) -> dict[str, str]:
        """Poll :meth:`show` until every ``prop=value`` in *expected* (and *predicate*) holds.

        Returns the matching properties; raises :class:`UnitTimeout` with the last values and
        :meth:`describe` output otherwise.
        """
        __tracebackhide__ = True
        wanted = {key: str(value) for key, value in expected.items()}
        names = tuple(dict.fromkeys([*props, *wanted]))
        last: dict[str, str] = {}

        def matches() -> bool:
            nonlocal last
            last = self.show(unit, *names)
            if any(last.get(k) != v for k, v in wanted.items()):
                return False
            return predicate is None or predicate(last)

        wait_until(
            matches,
            timeout=timeout,
            interval=interval,
            message=lambda: (
                f"{unit}: wanted {wanted or predicate}, last {last}\n" + self.describe(unit)
            ),
        )
        return last

    def wait_ended(
        self, unit: str, *, timeout: float = 10.0, props: Sequence[str] = DEFAULT_PROPERTIES
    ) -> dict[str, str]:
        """Wait until *unit* has run and ended (``failed`` or ``inactive``).

        A unit started with ``--no-block`` is still ``inactive`` before its job runs: the
        end counts only once the unit has left ``inactive`` at least once.
        """
        __tracebackhide__ = True
        return self.wait_for(
            unit,
            lambda p: (
                p["ActiveState"] in ("failed", "inactive")
                and p["InactiveExitTimestampMonotonic"] not in ("", "0")
            ),
            timeout=timeout,
            props=(*props, "InactiveExitTimestampMonotonic"),
        )

    def hold(
        self,
        unit: str,
        seconds: float,
        predicate: Callable[[dict[str, str]], bool] | None = None,
        *,
        interval: float = 0.1,
        props: Sequence[str] = DEFAULT_PROPERTIES,
        **expected: str | int,
    ) -> dict[str, str]:
        """Assert that *expected*/*predicate* keeps holding for *seconds* (polling)."""
        __tracebackhide__ = True
        wanted = {key: str(value) for key, value in expected.items()}
        names = tuple(dict.fromkeys([*props, *wanted]))
        deadline = time.monotonic() + seconds
        while True:
            now = self.show(unit, *names)
            bad = {k: now.get(k) for k, v in wanted.items() if now.get(k) != v}
            if bad or (predicate is not None and not predicate(now)):
                raise AssertionError(
                    f"{unit} left {wanted or predicate} within {seconds} s: now {now}\n"
                    + self.describe(unit)
                )
            if time.monotonic() >= deadline:
                return now
            time.sleep(interval)

    def unit_log(self, unit: str) -> str:
        """What *unit* wrote to stdout/stderr so far (units from :meth:`systemd_run`)."""
        try:
            return (self.work_dir / f"{unit}.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self, unit: str | None = None) -> str:
        """Journal-free diagnostics: ``systemctl status``, the unit's output, manager log."""
        parts: list[str] = []
        try:
            if unit is not None:
                status = self.run(
                    "status", "--no-pager", "--full", "--lines=0", unit, check=False, timeout=5
                )
                parts.append(f"$ systemctl --user status {unit}\n{status.stdout}{status.stderr}")
                parts.append(f"--- output of {unit}:\n{_tail(self.work_dir / f'{unit}.log')}")
            else:
                status = self.run("status", "--no-pager", "--lines=0", check=False, timeout=5)
                parts.append(f"$ systemctl --user status\n{status.stdout}{status.stderr}")
        except Exception as exc:  # diagnostics must not hide the original failure
            parts.append(f"<systemctl status failed: {exc!r}>")
        if self.base_dir is not None:
            parts.append(f"--- manager log:\n{self._manager_log_for(unit)}")
        return "\n".join(parts)

    def _manager_log_for(self, unit: str | None, limit: int = 40) -> str:
        # The manager is shared by the session: keep this unit's lines and general ones,
        # drop other units' chatter.
        lines = _tail(self.log_path, 64_000).splitlines()
        if unit is not None:
            lines = [line for line in lines if unit in line or ".service: " not in line]
        return "\n".join(lines[-limit:])

    # -- management ------------------------------------------------------------------------

    def daemon_reload(self) -> None:
        self.run("daemon-reload", timeout=30)

    def daemon_reexec(self, timeout: float = 20.0) -> None:
        """``systemctl --user daemon-reexec``, then wait until the manager answers again.

        Host's systemd only: a manager re-executes the binary path compiled into it, which
        for a tree's manager is the host's (older) systemd.
        """
        if self.systemd.root is not None:
            raise RuntimeError(f"daemon-reexec would replace {self.systemd} by the host's")
        self.run("daemon-reexec", timeout=timeout)
        self._wait_running(timeout)

    def reset(self, *units: str) -> None:
        """``reset-failed`` so failed units are forgotten (their names may be reused)."""
        self.run("reset-failed", *units, check=False, timeout=10)

    def stop_units(self, *units: str, timeout: float = 15.0) -> None:
        """Stop *units* and wait for the stop jobs (bounded by DefaultTimeoutStopSec)."""
        if units:
            self.run("stop", *units, check=False, timeout=timeout)

    def cleanup(self, units: Sequence[str] | None = None) -> None:
        """Stop, reset and forget *units* (default: every unit we started or wrote)."""
        targets = list(self._units if units is None else units)
        if not targets:
            return
        self.stop_units(*targets)
        self.reset(*targets)
        removed = False
        for name in targets:
            path = self._unit_files.pop(name, None)
            if path is not None:
                path.unlink(missing_ok=True)
                removed = True
            if name in self._units:
                self._units.remove(name)
        if removed:
            self.daemon_reload()

    @contextlib.contextmanager
    def scoped(self) -> Iterator[UserManager]:
        """Clean up the units started inside the block when it ends (pass or fail)."""
        first = len(self._units)
        try:
            yield self
        finally:
            self.cleanup(self._units[first:])


def _remove_cgroups(tag: str) -> None:
    """Kill anything left in the ``sdready-<tag>`` subtrees and remove them, everywhere.

    systemd also creates the tree in v1 controller hierarchies (memory, pids, …) we never
    joined; a healthy exit leaves them empty, a killed manager leaves its units behind.
    """
    root = Path("/sys/fs/cgroup")
    name = f"sdready-{tag}"
    trees = [root / name]
    with contextlib.suppress(OSError):
        trees += [Path(e.path) / name for e in os.scandir(root) if e.is_dir()]
    trees = [t for t in trees if t.is_dir()]
    for _attempt in range(50):  # ~2.5 s at most: killed processes take a moment to go
        busy = False
        for tree in trees:
            for dirpath, _dirs, _files in os.walk(tree, topdown=False):
                for pid in _read_pids(Path(dirpath) / "cgroup.procs"):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                    busy = True
                try:
                    os.rmdir(dirpath)
                except FileNotFoundError:
                    pass
                except OSError:
                    busy = True
        if not busy:
            return
        time.sleep(0.05)


def _sweep_stale(parent: str) -> None:
    """Remove what managers of crashed runs left: their base dir and cgroups.

    A base dir holds the manager's pid; a dead pid means nobody will clean up after it.
    A live manager's dir is never touched, so parallel workers are safe.
    """
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            if not entry.name.startswith("sdready-sd-"):
                continue
            try:
                pid = int((Path(entry.path) / "pid").read_text())
            except (OSError, ValueError):
                continue  # starting right now, or not ours
            if Path(f"/proc/{pid}").exists():
                continue
            _remove_cgroups(entry.name.split("-")[2])
            shutil.rmtree(entry.path, ignore_errors=True)


class _Console:
    """A pty standing in for the manager's /dev/console, copied into the log by a thread.

    systemd only logs to a tty there; we keep the slave open ourselves so the master never
    sees a hangup between the manager's opens, and drain it continuously so the manager
    never blocks on a full tty buffer.
    """

    def __init__(self, log_path: Path) -> None:
        import threading
        import tty

        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # bytes as written: no echo, no newline translation
        self.tty = os.ttyname(self._slave)
        self._log = open(log_path, "ab", buffering=0)  # noqa: SIM115  # closed in close()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._copy, name="systemd-console", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        import select

        while True:
            ready, _, _ = select.select([self._master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(self._master, 65536)
                except OSError:
                    return
                self._log.write(data.replace(b"\r\n", b"\n"))
            elif self._stop.is_set():
                return  # stop only once drained

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for fd in (self._slave, self._master):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._log.close()


@functools.cache
def _has_pdeathsig() -> bool:
    """setpriv --pdeathsig exists since util-linux 2.33."""
    if shutil.which("setpriv") is None:
        return False
    result = subprocess.run(["setpriv", "--help"], capture_output=True, text=True, check=False)
    return "--pdeathsig" in result.stdout


def _read_pids(path: Path) -> list[int]:
    try:
        return [int(line) for line in path.read_text().split()]
    except (OSError, ValueError):
        return []


# fixture name -> (which systemd, what to do when it is missing)
_FIXTURES: dict[str, tuple[Callable[[], Systemd], str]] = {
    "user_manager": (lambda: HOST, ""),
    "user_manager_254": (systemd_254, " (.ci/systemd254 fetches it)"),
}


def _user_manager_fixture(name: str) -> Any:
    import pytest  # only tests need it; the demo imports this module without pytest

    which, hint = _FIXTURES[name]

    @pytest.fixture(scope="session", name=name)
    def user_manager() -> Iterator[UserManager]:
        """A private systemd user manager shared by the session (one per xdist worker)."""
        required = os.environ.get("SDREADY_REQUIRE_SYSTEMD") == "1"
        manager = UserManager(systemd=which())
        try:
            manager.start()
        except SystemdUnavailable as exc:
            if required:
                pytest.fail(f"SDREADY_REQUIRE_SYSTEMD=1 but: {exc}{hint}", pytrace=False)
            pytest.skip(f"no private systemd user manager: {exc}{hint}")
        try:
            yield manager
        finally:
            manager.stop()

    return user_manager


_fixtures: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    # PEP 562: build the pytest fixtures only when conftest imports them, so importing this
    # module (the demo does) never imports pytest.
    if name in _FIXTURES:
        if name not in _fixtures:
            _fixtures[name] = _user_manager_fixture(name)
        return _fixtures[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_EXEC_PROGRAM = re.compile(r"^Exec\w+=[-@+!:|]*(\S+)", re.M)
_SRV_PATH = re.compile(r"/srv/[\w.-]+")


def verify_units(units: Iterable[Path], target: str, tmp_path: Path) -> str:
    """``systemd-analyze verify`` of *target* among *units*; its complaints ('' if none).

    The units name /srv/<app>/... paths: they are moved under *tmp_path*, with stand-in
    executables, since verify checks that every Exec*= program exists; the neighbours are
    written too, as After=/Requires=/a .socket unit load them.
    """
    folder = tmp_path / "units"
    folder.mkdir(exist_ok=True)
    for unit in units:
        text = _SRV_PATH.sub(lambda m: f"{tmp_path}{m.group(0)}", unit.read_text())
        (folder / unit.name).write_text(text)
        for program in _EXEC_PROGRAM.findall(text):
            stub = Path(program)
            if stub.is_relative_to(tmp_path) and not stub.exists():
                stub.parent.mkdir(parents=True, exist_ok=True)
                stub.write_text("#!/bin/sh\n")
                stub.chmod(0o755)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(folder / target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode:
        return result.stderr or result.stdout or f"exit status {result.returncode}"
    return result.stderr.strip()
