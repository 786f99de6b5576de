"""examples/restarts: the .socket units verify with their services (test_examples.py
covers the .service files and the apps)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "restarts"
SOCKETS = sorted(EXAMPLES.glob("*.socket"))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
@pytest.mark.parametrize("socket_unit", SOCKETS, ids=lambda path: path.name)
def test_socket_unit_verifies_with_its_service(socket_unit: Path, tmp_path: Path) -> None:
    service = socket_unit.with_suffix(".service")
    assert service.exists(), f"{socket_unit.name} activates {service.name}, which is missing"
    for unit in (socket_unit, service):
        text = re.sub(r"/srv/[\w.-]+", lambda m: f"{tmp_path}{m.group(0)}", unit.read_text())
        (tmp_path / unit.name).write_text(text)
        for program in re.findall(r"^Exec\w+=[-@+!:]*(\S+)", text, re.M):
            stub = Path(program)
            if stub.is_relative_to(tmp_path) and not stub.exists():
                stub.parent.mkdir(parents=True, exist_ok=True)
                stub.write_text("#!/bin/sh\n")
                stub.chmod(0o755)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / socket_unit.name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
