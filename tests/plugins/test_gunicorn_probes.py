"""``ready_path`` and ``shutdown_delay`` under gunicorn (issue 22): the workers answer the
probe from the arbiter's phase, and the arbiter holds its SIGTERM while they keep serving.

A NotifyRecorder plays systemd; without one the run is Kubernetes' (no ``NOTIFY_SOCKET``),
where the endpoint must still follow the phase.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from _gunicorn_support import Gunicorn, worker_cases, write_apps
from _servers import http_get, reserved_port
from _systemd import wait_until
from sdready.testing import NotifyRecorder

pytest.importorskip("gunicorn")
pytestmark = pytest.mark.timeout(120)


#: Long, so that the GETs during it never race its end; a second SIGTERM ends it.
LONG_DELAY = 60.0
CASES = worker_cases()


#: A config module that shows sdready's INFO lines (gunicorn configures only its own logs).
INFO_CONFIG = """\
import logging as _logging

_logging.basicConfig(format="sdready %(levelname)s %(message)s")
_logging.getLogger("sdready").setLevel(_logging.INFO)

from sdready.plugins.gunicorn import install

install(globals())
"""


def _env(apps: Path, **extra: str) -> dict[str, str]:
    # The second worker imports the app 3 s after the first: READY waits for both
    # (ready_workers=all), and meanwhile the first one serves, and answers the probe.
    stagger = apps / "stagger"
    stagger.mkdir(exist_ok=True)
    return {
        "APP_STAGGER_DIR": str(stagger),
        "APP_STAGGER_STEP": "3",
        "SDREADY_READY_WORKERS": "all",
        "SDREADY_READY_PATH": "/readyz",
        **extra,
    }


@pytest.mark.parametrize(("worker_class", "app"), CASES)
def test_endpoint_answers_across_a_gunicorn_life(
    worker_class: str, app: str, tmp_path: Path
) -> None:
    apps = write_apps(tmp_path / "apps")
    (apps / "conf_info.py").write_text(INFO_CONFIG)
    env = _env(apps, SDREADY_SHUTDOWN_DELAY=str(LONG_DELAY))
    if app.startswith("asgi"):  # its lifespan startup, not its import, takes the time
        env = {**env, "APP_STAGGER_STEP": "0", "APP_LIFESPAN_DELAY": "0"}
    with reserved_port() as port, NotifyRecorder(set_environment=False) as recorder:
        address = ("127.0.0.1", port)
        args = ["--bind", f"127.0.0.1:{port}", app]
        with Gunicorn(
            args,
            apps=apps,
            recorder=recorder,
            workers=2,
            worker_class=worker_class,
            env=env,
            config="python:conf_info",
        ) as g:
            if not app.startswith("asgi"):
                g.wait_for(lambda m: "(1/2)" in m.get("STATUS", ""), 30)  # one worker serves
                early = http_get(address, "/readyz", timeout=10)
                assert (early.status, early.body) == (503, "starting"), early
            g.wait_for("READY=1", 30)
            assert http_get(address, "/readyz") == (200, "ready")
            assert http_get(address, "/").status == 200

            g.signal(signal.SIGTERM)
            stopping = g.wait_for("STOPPING=1", 10)
            assert stopping["EXTEND_TIMEOUT_USEC"] == str(int((LONG_DELAY + 5) * 1_000_000))
            assert http_get(address, "/readyz") == (503, "stopping")
            for _ in range(4):  # both workers: still accepting and serving
                assert http_get(address, "/").status == 200
            assert g.alive()
            assert "keeps serving for the shutdown delay of 60 s" in g.log()

            g.signal(signal.SIGTERM)  # a second SIGTERM: gunicorn's own graceful stop, now
            assert g.wait(20) == 0
            assert "shutdown delay over" in g.log()
            assert [m for m in recorder.messages if "STOPPING" in m] == [stopping]


def test_control_without_the_options_the_app_answers_and_sigterm_stops_at_once(
    tmp_path: Path,
) -> None:
    apps = write_apps(tmp_path / "apps")
    with reserved_port() as port, NotifyRecorder(set_environment=False) as recorder:
        address = ("127.0.0.1", port)
        args = ["--bind", f"127.0.0.1:{port}", "wsgi_app:app"]
        with Gunicorn(args, apps=apps, recorder=recorder, workers=2) as g:
            g.wait_for("READY=1", 30)
            probe = http_get(address, "/readyz")
            assert probe.status == 200 and probe.body.startswith("v1 "), probe  # the app's
            g.signal(signal.SIGTERM)
            g.wait_for("STOPPING=1", 10)
            assert g.wait(20) == 0  # no second signal needed: nothing held it
            with pytest.raises(OSError):
                http_get(address, "/", timeout=0.5)


def test_sigint_ends_the_delay(tmp_path: Path) -> None:
    apps = write_apps(tmp_path / "apps")
    env = {"SDREADY_SHUTDOWN_DELAY": str(LONG_DELAY)}
    with reserved_port() as port, NotifyRecorder(set_environment=False) as recorder:
        args = ["--bind", f"127.0.0.1:{port}", "wsgi_app:app"]
        with Gunicorn(args, apps=apps, recorder=recorder, env=env) as g:
            g.wait_for("READY=1", 30)
            g.signal(signal.SIGTERM)
            g.wait_for("STOPPING=1", 10)
            assert http_get(("127.0.0.1", port), "/").status == 200
            g.signal(signal.SIGINT)
            assert g.wait(20) == 0


def test_without_systemd_the_endpoint_follows_the_phase(tmp_path: Path) -> None:
    # Kubernetes: no NOTIFY_SOCKET, yet the arbiter counts its workers and its phase moves.
    apps = write_apps(tmp_path / "apps")
    env = _env(apps, SDREADY_LIVE_PATH="/livez")
    with reserved_port() as port:
        address = ("127.0.0.1", port)
        args = ["--bind", f"127.0.0.1:{port}", "wsgi_app:app"]
        with Gunicorn(args, apps=apps, recorder=None, workers=2, env=env) as g:

            def answer() -> tuple[int, str]:
                try:
                    response = http_get(address, "/readyz", timeout=5)
                except OSError:
                    return (0, "")
                return (response.status, response.body)

            wait_until(lambda: answer()[0] == 503, timeout=20, message=g.log)
            assert answer() == (503, "starting")  # one worker serves; READY needs both
            wait_until(lambda: answer() == (200, "ready"), timeout=20, message=g.log)
            assert http_get(address, "/livez") == (200, "live")


def test_health_makes_both_endpoints_503(tmp_path: Path) -> None:
    apps = write_apps(tmp_path / "apps")
    (apps / "conf_unhealthy.py").write_text(
        "sdready_ready_path = '/readyz'\n"
        "sdready_live_path = '/livez'\n\n\n"
        "def sdready_health():\n"
        "    return False\n\n\n"
        "from sdready.plugins.gunicorn import install\n\n"
        "install(globals())\n"
    )
    with reserved_port() as port, NotifyRecorder(set_environment=False) as recorder:
        address = ("127.0.0.1", port)
        args = ["--bind", f"127.0.0.1:{port}", "wsgi_app:app"]
        with Gunicorn(args, apps=apps, recorder=recorder, config="python:conf_unhealthy") as g:
            g.wait_for("READY=1", 30)
            assert http_get(address, "/readyz") == (503, "unhealthy")
            assert http_get(address, "/livez") == (503, "unhealthy")
            assert http_get(address, "/").status == 200


def test_a_stop_before_ready_is_not_delayed(tmp_path: Path) -> None:
    # No balancer sends traffic to a gunicorn that never served: the delay does not apply,
    # and the booting worker is ended at once (as without a delay).
    apps = write_apps(tmp_path / "apps")
    env = {"SDREADY_SHUTDOWN_DELAY": str(LONG_DELAY), "APP_IMPORT_DELAY": str(LONG_DELAY)}
    with reserved_port() as port, NotifyRecorder(set_environment=False) as recorder:
        args = ["--bind", f"127.0.0.1:{port}", "wsgi_app:app"]
        with Gunicorn(args, apps=apps, recorder=recorder, env=env) as g:
            g.wait_for("STATUS=Booting workers (0/1)", 30)
            g.signal(signal.SIGTERM)
            stopping = g.wait_for("STOPPING=1", 10)
            assert "EXTEND_TIMEOUT_USEC" not in stopping
            g.wait(20)  # not LONG_DELAY (twice: the delay and the import)
