"""The promise, repeated: the moment READY arrives, a GET succeeds (30 fresh starts per class).

Each start is a fresh gunicorn whose app needs 1.5 s (WSGI: at import; ASGI: in lifespan
startup) before it can serve; gunicorn's own READY would come ~1.5 s too early. Starts
run five at a time, each checked by its own thread, so that "at that moment" holds for
every one of them and a class costs about 15 s instead of a minute.
"""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
from _gunicorn_support import (
    Gunicorn,
    asgi_middleware_available,
    assert_no_builtin_ready,
    booted_times,
    worker_cases,
    write_apps,
)
from _servers import http_get, reserved_port, rounds
from sdready.testing import NotifyRecorder

pytest.importorskip("gunicorn")

REPEAT = rounds(30)
BATCH = 5
DELAY = "1.5"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


CASES = [
    *worker_cases(),
    pytest.param(
        "uvicorn_worker.UvicornWorker",
        "asgi_mw_app:app",
        id="uvicorn-SystemdMiddleware",
        marks=pytest.mark.skipif(
            not asgi_middleware_available(), reason="sdready.plugins.asgi not importable yet"
        ),
    ),
]


def _one_start(index: int, worker_class: str, app: str, apps: Path, base: Path) -> None:
    """Start, wait for READY, GET at once, stop with TERM/INT/QUIT; check what was sent."""
    marks = base / f"marks-{index}"
    marks.mkdir()
    asgi = app.startswith("asgi")
    env = {"APP_MARK_DIR": str(marks), "APP_LIFESPAN_DELAY" if asgi else "APP_IMPORT_DELAY": DELAY}
    with ExitStack() as stack:
        recorder = stack.enter_context(NotifyRecorder(set_environment=False))
        port = stack.enter_context(reserved_port())
        g = stack.enter_context(
            Gunicorn(
                ["--bind", f"127.0.0.1:{port}", app],
                apps=apps,
                recorder=recorder,
                worker_class=worker_class,
                env=env,
            )
        )
        ready = g.wait_for("READY=1", 30)
        try:
            status, _ = http_get(("127.0.0.1", port), timeout=1.0)
        except OSError as exc:
            raise AssertionError(
                f"start {index}: GET at READY failed: {exc!r}\n{g.log()}"
            ) from None
        assert status == 200
        assert ready.pid == g.pid
        booted = booted_times(marks)
        assert booted and ready.time >= min(booted.values()), (ready.time, booted)
        # uvicorn-worker lets gunicorn's QUIT/INT run into the 5 s graceful timeout
        # (with or without sdready): stop it with TERM; the others rotate all three.
        g.signal(signal.SIGTERM if "uvicorn" in worker_class else STOP_SIGNALS[index % 3])
        g.wait_for("STOPPING=1", 15)
        assert g.wait(20) == 0
        assert len(recorder.values("READY")) == 1, recorder.messages
        assert_no_builtin_ready(recorder)


@pytest.mark.slow
@pytest.mark.parametrize(("worker_class", "app"), CASES)
def test_get_succeeds_the_moment_ready_arrives(worker_class: str, app: str, tmp_path: Path) -> None:
    apps = write_apps(tmp_path / "apps")
    with ThreadPoolExecutor(BATCH) as pool:
        for start in range(0, REPEAT, BATCH):
            runs = [
                pool.submit(_one_start, i, worker_class, app, apps, tmp_path)
                for i in range(start, min(REPEAT, start + BATCH))
            ]
            for run in runs:
                run.result()
