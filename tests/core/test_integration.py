"""The public integration API: what docs/reference.md's "Writing an integration" shows works
as written, with a real listener and a NotifyRecorder standing in for systemd."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import sdready.integration
from sdready.testing import NotifyRecorder

REFERENCE = Path(__file__).parents[2] / "docs" / "reference.md"


def _worked_example() -> dict[str, Any]:
    text = REFERENCE.read_text()
    section = text.split("**A worked example**", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), str(REFERENCE), "exec"), namespace)
    return namespace


def test_the_worked_example_sends_ready_once_the_server_listens_then_stopping(
    notify_socket: NotifyRecorder,
) -> None:
    integration = _worked_example()["MyServerIntegration"](ready_timeout=10)
    integration.on_start(app=None)
    integration.on_started()  # the server binds only now
    notify_socket.barrier()
    assert notify_socket.values("READY") == []  # control: nothing listens yet
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        ready = notify_socket.wait_for("READY=1", 10)
        assert f"127.0.0.1:{server.getsockname()[1]}" in ready["STATUS"]
        integration.on_stop()
        notify_socket.wait_for("STOPPING=1", 5)


def test_the_worked_example_is_inert_outside_systemd(monkeypatch: Any) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    integration = _worked_example()["MyServerIntegration"]()
    integration.on_start(app=None)
    integration.on_started()
    assert not integration.readiness.enabled


def test_the_integration_api_is_what_the_bundled_plugins_import() -> None:
    plugins = Path(sdready.integration.__file__).parent / "plugins"
    if not plugins.exists():  # the installed layout: sdready/plugins beside integration.py
        plugins = Path(__file__).parents[2] / "plugins"
    private = [
        f"{path.name}: {line.strip()}"
        for path in plugins.rglob("*.py")
        for line in path.read_text().splitlines()
        if re.match(r"\s*(from|import) sdready\._", line)
    ]
    assert private == []
