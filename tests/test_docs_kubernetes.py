"""docs/kubernetes.md's Deployment is valid against Kubernetes' own schemas (offline)."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate  # the test dependency group: offline schemas
import pytest
import yaml

DOC = Path(__file__).resolve().parents[1] / "docs" / "kubernetes.md"


def _yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)


def test_the_deployment_validates() -> None:
    blocks = _yaml_blocks()
    assert blocks, "no yaml block in docs/kubernetes.md"
    for block in blocks:
        data = yaml.safe_load(block)
        kubernetes_validate.validate(data, "1.30.0", strict=True)
        container = data["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert "lifecycle" not in container  # no preStop sleep needed


def test_control_an_invalid_deployment_is_refused() -> None:
    data = yaml.safe_load(_yaml_blocks()[0])
    data["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(data, "1.30.0", strict=True)
