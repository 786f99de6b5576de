"""The promise of the Flask extension: the moment READY arrives, a GET succeeds.

Every round is a fresh server process with a NotifyRecorder as systemd: werkzeug's
``app.run(threaded=True)``, ``flask run``, waitress ``serve()`` and gunicorn (sync worker,
without sdready's gunicorn plugin). The GET uses the address READY announces and a 1 s
timeout, like a dependent unit would. With ``APP_GAP=0.5`` the app module sleeps between
creating the extension and serving, so a READY sent on ``init_app`` would be caught.
``SDREADY_TEST_ROUNDS`` caps the number of rounds (default 30).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from _flask_support import KINDS, repeat_ready_then_get, write_app
from _servers import rounds

pytest.importorskip("flask")
pytest.importorskip("waitress")

ROUNDS = rounds(30)
# Three servers at a time: the rounds mostly wait (imports, the gap), yet a 2-core host
# shared with other test workers must not turn them into a load test.
CONCURRENCY = 3


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("gap", [0.0, 0.5], ids=["no-gap", "gap-0.5s"])
@pytest.mark.parametrize("kind", KINDS)
def test_get_succeeds_the_moment_ready_arrives(kind: str, gap: float, tmp_path: Path) -> None:
    if kind == "gunicorn":
        pytest.importorskip("gunicorn")
    app = write_app(tmp_path)
    began = time.monotonic()
    results = repeat_ready_then_get(kind, app, rounds=ROUNDS, gap=gap, concurrency=CONCURRENCY)
    failures = [r.detail for r in results if not r.ok]
    assert not failures, f"{len(failures)}/{ROUNDS} rounds failed:\n" + "\n\n".join(failures[:3])
    # READY cannot precede the gap: the extension was created before the sleep.
    assert min(r.ready_after for r in results) >= gap
    print(f"{kind} gap={gap}: {ROUNDS} rounds in {time.monotonic() - began:.1f} s")
