"""The package's layout: every directory of code under core/ and plugins/ is shipped."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shipped_packages() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text()
    listing = re.search(r"^packages = \[(.*?)\]", text, re.M | re.S)
    assert listing is not None
    return set(re.findall(r'"([\w.]+)"', listing.group(1)))


def packages_on_disk() -> set[str]:
    found = set()
    for top, name in ((ROOT / "core", "sdready"), (ROOT / "plugins", "sdready.plugins")):
        for init in top.rglob("__init__.py"):
            parts = init.parent.relative_to(top).parts
            found.add(".".join((name, *parts)))
    return found


def test_every_package_on_disk_is_listed_in_pyproject() -> None:
    assert packages_on_disk() == shipped_packages()


def test_the_control_a_missing_subpackage_is_seen() -> None:
    assert packages_on_disk() - (shipped_packages() - {"sdready._engine"}) == {"sdready._engine"}
