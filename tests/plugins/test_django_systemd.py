"""The A-depends-on-B story with a real systemd, B a Django project.

Unit B serves the test project (tests/_django_site): under uvicorn with the plugin's
get_asgi_application, under waitress-serve, or under gunicorn with sdready's gunicorn
plugin; the project sleeps between setting Django up and the server binding. Unit A
(``Requires=``/``After=`` B, ``Type=oneshot``) does one GET with a 1 s timeout, the moment
systemd starts it. With ``Type=notify`` and sdready, A succeeds every time. The controls
run the same pair the ways that fail: Django without sdready (``Type=simple``: A starts at
once), READY from ``AppConfig.ready()`` (before the server binds), gunicorn without the
plugin (its READY at boot, before the worker has loaded Django).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from _django_support import command, site_env
from _servers import reserved_port
from _systemd import UserManager, python_for_units

pytest.importorskip("django")
pytest.importorskip("waitress")
pytest.importorskip("uvicorn")
pytest.importorskip("gunicorn")

pytestmark = [pytest.mark.systemd, pytest.mark.slow, pytest.mark.timeout(300)]

ROUNDS = 10
CONTROL_ROUNDS = 3
GET_SCRIPT = (
    "import sys, urllib.request; "
    "urllib.request.urlopen(f'http://127.0.0.1:{sys.argv[1]}/', timeout=1).read()"
)


@dataclass(frozen=True)
class Pair:
    """How B is served, and what A's result must be every round."""

    kind: str
    service_type: str
    expected: str
    gap: float = 0.5  # B's slow startup between Django's setup and the bind
    env: dict[str, str] = field(default_factory=dict)


PAIRS = {
    "uvicorn": Pair("uvicorn", "notify", "success"),
    "waitress": Pair("waitress", "notify", "success"),
    # The worker's startup must outlast A's 1 s timeout for the control below to fail.
    "gunicorn-plugin": Pair("gunicorn-plugin", "notify", "success", gap=1.5),
}
CONTROLS = {
    "uvicorn-without-sdready": Pair(
        "uvicorn", "simple", "exit-code", env={"SITE_MODE": "plain", "SITE_ASGI": "django"}
    ),
    # READY comes before the gap: it must outlast A's own start on a loaded machine.
    "waitress-ready-from-app-config": Pair(
        "waitress", "notify", "exit-code", gap=1.5, env={"SITE_MODE": "naive"}
    ),
    "gunicorn-without-the-plugin": Pair("gunicorn", "notify", "exit-code", gap=1.5),
}


def _write_pair(systemd: UserManager, pair: Pair, port: int) -> tuple[str, str]:
    python, python_env = python_for_units()
    env = {**python_env, **site_env(gap=pair.gap), **pair.env}
    environment = " ".join(f'"{key}={value}"' for key, value in env.items())
    server, client = systemd.unit_name("django-b"), systemd.unit_name("django-a")
    log = systemd.work_dir / f"{server}.log"
    systemd.write_unit(
        server,
        f"""\
        [Service]
        Type={pair.service_type}
        ExecStart={" ".join(command(pair.kind, port))}
        WorkingDirectory={systemd.work_dir}
        Environment={environment}
        StandardOutput=append:{log}
        StandardError=append:{log}
        TimeoutStartSec=30
        TimeoutStopSec=10
        """,
        reload=False,
    )
    systemd.write_dependent_unit(
        client,
        server,
        f'{python} -c "{GET_SCRIPT}" {port}',
        log=systemd.work_dir / f"{client}.log",
    )
    return server, client


def _run_pair(systemd: UserManager, server: str, client: str) -> tuple[str, str]:
    """Start A (which pulls in B); return A's Result and B's STATUS; stop both."""
    try:
        # For a oneshot unit, `systemctl start` returns once its ExecStart has exited.
        systemd.run("start", client, check=False, timeout=60)
        result = systemd.show(client, "Result")["Result"]
        status = systemd.show(server, "StatusText")["StatusText"]
        started = systemd.show(server, "ExecMainStartTimestampMonotonic")
        assert int(started["ExecMainStartTimestampMonotonic"]) > 0  # B really ran
        return result, status
    finally:
        systemd.stop_units(client, server)
        systemd.reset(client, server)


def _rounds(systemd: UserManager, pair: Pair, rounds: int) -> list[tuple[str, str]]:
    with reserved_port() as port:
        server, client = _write_pair(systemd, pair, port)
        outcomes = [_run_pair(systemd, server, client) for _ in range(rounds)]
    results = [result for result, _ in outcomes]
    assert results == [pair.expected] * rounds, (
        f"{results}\n{systemd.describe(client)}{systemd.describe(server)}"
    )
    return outcomes


@pytest.mark.parametrize("name", PAIRS)
def test_dependent_unit_always_reaches_a_notify_django_unit(
    name: str, systemd: UserManager
) -> None:
    outcomes = _rounds(systemd, PAIRS[name], ROUNDS)
    assert all(status.startswith("Ready: ") for _, status in outcomes), outcomes


@pytest.mark.parametrize("name", CONTROLS)
def test_the_same_pair_without_sdready_fails(name: str, systemd: UserManager) -> None:
    _rounds(systemd, CONTROLS[name], CONTROL_ROUNDS)
