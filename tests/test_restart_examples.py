"""examples/restarts: the .socket units verify with their services (test_examples.py
covers the .service files and the apps)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _systemd import verify_units

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "restarts"
SOCKETS = sorted(EXAMPLES.glob("*.socket"))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
@pytest.mark.parametrize("socket_unit", SOCKETS, ids=lambda path: path.name)
def test_socket_unit_verifies_with_its_service(socket_unit: Path, tmp_path: Path) -> None:
    service = socket_unit.with_suffix(".service")
    assert service.exists(), f"{socket_unit.name} activates {service.name}, which is missing"
    complaints = verify_units((socket_unit, service), socket_unit.name, tmp_path)
    assert not complaints, complaints
