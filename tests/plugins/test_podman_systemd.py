"""The seed pair with B in a podman container, under a real (private) systemd user manager.

B is docs/containers.md's unit: ``Type=notify``, ``NotifyAccess=all``, ``podman run
--sdnotify=container``, uvicorn + FastAPI + SystemdNotify inside. conmon relays the app's
``READY=1`` (sent once uvicorn accepts), so A's one GET succeeds every time. The control runs
podman's default ``--sdnotify=conmon``: conmon says READY as soon as the container started,
and A meets a refused connection.

No image is pulled: the container's root is this machine's own, as an overlay
(``--rootfs /:O``), so the venv and tests/ are there at the same paths. What this machine
needs besides (not the recipe): a private podman storage under a temporary directory
(nothing of the host's changes), crun wants a pure cgroup2 hierarchy, so the container runs
in a private mount namespace with one mounted (``unshare --mount``, ``--cgroups=disabled``),
and crun may not raise RLIMIT_NOFILE above the unit's hard limit nor set RLIMIT_NPROC to
the hard limit here (``--ulimit``: the unit's nofile, podman's usual nproc).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _fastapi_units import STARTUP_DELAY, TESTS_DIR, run_pair, write_client_unit
from _servers import reserved_port
from _systemd import UserManager, python_for_units

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(180)]

PODMAN = shutil.which("podman")

# Started by ExecStart=/bin/bash SCRIPT: the machine-specific wrapper around `podman run`.
WRAPPER = """\
nofile="$(ulimit -n):$(ulimit -H -n)"
exec unshare --mount --propagation private \\
    sh -c 'mount -t cgroup2 none /sys/fs/cgroup && exec "$@"' sh \\
    {podman} {run} --ulimit "nofile=$nofile" --ulimit nproc=32768:32768 \\
    --cgroups=disabled {container}
"""


def podman_unavailable() -> str | None:
    if PODMAN is None:
        return "podman is not installed (.ci/run installs Debian's)"
    for tool in ("crun", "conmon", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@pytest.fixture
def storage() -> Iterator[Path]:
    # Short: conmon's attach socket path lives under the runroot (sun_path: 108 bytes).
    path = Path(tempfile.mkdtemp(prefix="sdpod-"))
    try:
        yield path
    finally:
        # Containers ran with --rm in a mount namespace gone with the unit: only files remain.
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


def write_podman_unit(systemd: UserManager, storage: Path, port: int, sdnotify: str) -> str:
    python, env = python_for_units()
    env = {**env, "PYTHONPATH": str(TESTS_DIR), "SDREADY_TEST_STARTUP_DELAY": STARTUP_DELAY}
    app = [python, "-m", "uvicorn", "_asgi_fastapi:app", "--log-level", "warning"]
    run = [
        *("--root", str(storage / "root"), "--runroot", str(storage / "run")),
        *("--storage-driver", "overlay", "--cgroup-manager", "cgroupfs"),
        *("--events-backend", "file", "run", "--rm", f"--sdnotify={sdnotify}"),
        *("--network=host", "--log-driver=k8s-file", "--workdir", str(TESTS_DIR)),
        *(arg for key, value in env.items() for arg in ("--env", f"{key}={value}")),
    ]
    command = [*app, "--host", "127.0.0.1", "--port", str(port)]
    script = WRAPPER.format(
        podman=shlex.quote(str(PODMAN)),
        run=shlex.join(run),
        # --rootfs ends podman's options: what follows is the container's command.
        container=shlex.join(["--rootfs", "/:O", *command]),
    )
    name = systemd.unit_name(f"podman-b-{sdnotify}")
    wrapper = systemd.work_dir / f"{name}.sh"
    wrapper.write_text(script)
    log = systemd.work_dir / f"{name}.log"
    systemd.write_unit(
        name,
        f"""\
        [Service]
        Type=notify
        NotifyAccess=all
        ExecStart=/bin/bash {wrapper}
        StandardOutput=append:{log}
        StandardError=append:{log}
        TimeoutStartSec=30
        TimeoutStopSec=10
        """,
    )
    return name


def run_pairs(
    systemd: UserManager, storage: Path, sdnotify: str, rounds: int
) -> tuple[list[str], str, str]:
    """*rounds* runs of the pair: the results, B's output, and what systemd says of B."""
    reason = podman_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with reserved_port() as port:
        server = write_podman_unit(systemd, storage, port, sdnotify)
        client = write_client_unit(systemd, server, port)
        results = [run_pair(systemd, client, server) for _ in range(rounds)]
    log = systemd.work_dir / f"{server}.log"
    return results, log.read_text() if log.exists() else "", systemd.describe(server)


def test_dependent_unit_always_reaches_a_podman_container(
    systemd: UserManager, storage: Path
) -> None:
    results, log, described = run_pairs(systemd, storage, "container", 5)
    assert results == ["success"] * 5, described
    # The app saw the container and said once what conmon will not pass on.
    assert log.count("in a container (podman): NOTIFY_SOCKET is a proxy") == 5, log


def test_control_podman_default_sdnotify_conmon_fails(systemd: UserManager, storage: Path) -> None:
    # Proves the test above can fail: conmon's READY=1 when the container started.
    results, _, described = run_pairs(systemd, storage, "conmon", 2)
    assert results == ["exit-code"] * 2, described
