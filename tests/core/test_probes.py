"""The readiness/liveness answers: derived from the phase, nothing else (issue 22)."""

from __future__ import annotations

import asyncio

import pytest
from sdready import ReadyOptions
from sdready._engine._probes import LIVE, READY, Answer, Probes, answer
from sdready.integration import Phase, Readiness


@pytest.mark.parametrize("phase", [p for p in Phase if p is not Phase.READY])
def test_readiness_is_503_with_the_phase_outside_ready(phase: Phase) -> None:
    assert answer(READY, phase, failing=False) == Answer(503, phase.value.encode())


def test_readiness_is_200_only_when_ready_and_healthy() -> None:
    assert answer(READY, Phase.READY, failing=False) == Answer(200, b"ready")
    assert answer(READY, Phase.READY, failing=True) == Answer(503, b"unhealthy")


def test_liveness_follows_health_alone() -> None:
    assert answer(LIVE, Phase.STARTING, failing=False) == Answer(200, b"live")
    assert answer(LIVE, Phase.READY, failing=True) == Answer(503, b"unhealthy")


def test_paths_match_exactly() -> None:
    probes = Probes(ReadyOptions(ready_path="/readyz", live_path="/livez"))
    assert (probes.match("/readyz"), probes.match("/livez")) == (READY, LIVE)
    assert probes.match("/readyz/") is None and probes.match("/") is None
    assert not Probes(ReadyOptions())


def test_an_engine_without_notify_socket_moves_with_a_ready_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    engine = Readiness(ReadyOptions(ready_path="/readyz"))
    assert engine.active and not engine.enabled
    engine.starting()
    engine.waiting()
    assert engine.ready("Ready") is True  # the phase moved, nothing was sent
    assert engine.phase is Phase.READY
    engine.stopping()
    assert engine.phase is Phase.STOPPING
    inert = Readiness(ReadyOptions())  # control: today's engine outside systemd
    inert.starting()
    assert not inert.active and inert.phase is Phase.NEW


def test_a_hung_async_health_check_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)

    async def hangs() -> bool:
        await asyncio.sleep(3600)
        return True

    engine = Readiness(ReadyOptions(ready_path="/readyz", health=hangs))
    engine.starting()
    engine.waiting()
    engine.ready("Ready")
    probes = Probes(engine.options)
    # Returns at all (HEALTH_BOUND); a hang would end at pytest's timeout.
    assert asyncio.run(probes.answer_async(READY, engine)) == Answer(503, b"unhealthy")


def test_probe_options_are_checked_and_read_from_settings() -> None:
    options = ReadyOptions.from_settings(
        {"ready_path": "/readyz", "live_path": "/livez", "shutdown_delay": "1500ms"}
    )
    assert (options.ready_path, options.live_path, options.shutdown_delay) == (
        "/readyz",
        "/livez",
        1.5,
    )
    assert ReadyOptions.from_settings({"shutdown_delay": "0"}).shutdown_delay == 0
    for bad in ({"ready_path": "readyz"}, {"shutdown_delay": -1}, {"shutdown_delay": True}):
        with pytest.raises(ValueError):
            ReadyOptions(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="differ"):
        ReadyOptions(ready_path="/z", live_path="/z")
