"""The phase shared with forked processes (gunicorn's workers answer from their arbiter's
engine): written on every move, read in another process, answered from there."""

from __future__ import annotations

import os

import pytest
from sdready import ReadyOptions
from sdready._engine._probes import READY, Answer, Probes
from sdready.integration import Phase, PhaseCell, Readiness, WSGIProbeApp


def _in_child(cell: PhaseCell) -> str:
    """The phase a forked child reads from *cell*, sent back over a pipe."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            os.write(write, cell.phase.value.encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        return os.read(read, 64).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)


def test_a_forked_child_reads_every_move_of_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    cell = PhaseCell()
    engine = Readiness(ReadyOptions(ready_path="/readyz"))
    engine.publish_phase(cell.publish)
    seen = [_in_child(cell)]
    engine.starting()
    seen.append(_in_child(cell))
    engine.ready("Ready")
    seen.append(_in_child(cell))
    engine.stopping()
    seen.append(_in_child(cell))
    assert seen == ["new", "starting", "ready", "stopping"]


def test_control_a_copy_of_the_phase_in_the_child_stays_behind() -> None:
    # What a worker holding its own copy would answer: the phase at its fork, forever.
    copy = {"phase": Phase.READY}
    cell = PhaseCell()
    cell.publish(Phase.READY)
    go_r, go_w = os.pipe()
    back_r, back_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child: reads once the parent has moved)
        os.read(go_r, 1)
        os.write(back_w, f"{copy['phase'].value} {cell.phase.value}".encode())
        os._exit(0)
    copy["phase"] = Phase.STOPPING
    cell.publish(Phase.STOPPING)
    os.write(go_w, b"!")
    answer = os.read(back_r, 64).decode()
    os.waitpid(pid, 0)
    for fd in (go_r, go_w, back_r, back_w):
        os.close(fd)
    assert answer.split() == ["ready", "stopping"]


def test_a_probe_answers_from_the_cell() -> None:
    cell = PhaseCell()
    probes = Probes(ReadyOptions(ready_path="/readyz"))
    assert probes.answer_blocking(READY, cell) == Answer(503, b"new")
    cell.publish(Phase.READY)
    assert probes.answer_blocking(READY, cell) == Answer(200, b"ready")
    unhealthy = Probes(ReadyOptions(ready_path="/readyz", health=lambda: False))
    assert unhealthy.answer_blocking(READY, cell) == Answer(503, b"unhealthy")


def test_the_wsgi_wrapper_answers_probes_and_passes_the_rest() -> None:
    cell = PhaseCell()
    cell.publish(Phase.STOPPING)
    calls: list[str] = []

    def app(environ: dict[str, object], start_response: object) -> list[bytes]:
        calls.append(str(environ["PATH_INFO"]))
        return [b"app"]

    wrapped = WSGIProbeApp(app, Probes(ReadyOptions(ready_path="/readyz")), lambda: cell)
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        started.append((status, headers))

    assert wrapped({"PATH_INFO": "/readyz"}, start_response) == [b"stopping"]
    assert started[0][0] == "503 Service Unavailable"
    assert ("Content-Length", "8") in started[0][1]
    assert wrapped({"PATH_INFO": "/"}, start_response) == [b"app"]
    assert calls == ["/"]  # the app never saw the probe
