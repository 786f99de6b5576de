"""The public surface: complete, sorted, and cheap to import."""

from __future__ import annotations

import os
import subprocess
import sys

import sdready
import sdready.testing


def test_all_is_sorted_and_complete() -> None:
    for module in (sdready, sdready.testing):
        assert module.__all__ == sorted(module.__all__)
        # isidentifier(): pytest's assertion rewriting reaches an installed (not editable)
        # sdready through its pytest11 entry point and adds "@py_builtins" and "@pytest_ar",
        # names no import can write or see.
        public = {n for n in vars(module) if not n.startswith("_") and n.isidentifier()}
        # Names loaded on first use (PEP 562 __getattr__) are public once resolved.
        public |= {
            n for n in module.__all__ if n[0] != "_" and getattr(module, n, None) is not None
        }
        submodules = {"texts", "testing", "plugins", "integration"}
        exported = set(module.__all__) - {"__version__"}
        assert exported <= public
        leftovers = public - exported - submodules - {"annotations", "TYPE_CHECKING"}
        assert not leftovers, (
            f"{module.__name__} has public names missing from __all__: {leftovers}"
        )


def test_import_sdready_imports_no_framework_and_no_asyncio() -> None:
    code = (
        "import sys, sdready, sdready.plugins; "
        "bad = [m for m in ('asyncio', 'starlette', 'fastapi', 'flask', 'werkzeug', 'django', "
        "'gunicorn', 'uvicorn', 'hypercorn', 'waitress', 'pytest') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_progress_is_exported_and_inert_outside_systemd() -> None:
    code = (
        "import threading, sdready; "
        "print(sdready.progress('Loading', extend=3), threading.active_count())"
    )
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert "progress" in sdready.__all__
    assert out.stdout.split() == ["False", "1"]  # nothing sent, no thread started


def test_version_is_in_one_place() -> None:
    from sdready._version import __version__

    assert sdready.__version__ == __version__


def test_changelog_publishes_this_version() -> None:
    """The newest release heading in CHANGELOG.md is the package's own version; what is not
    released yet stays under "Unreleased", above it."""
    import re
    from pathlib import Path

    changelog = Path(__file__).resolve().parents[2] / "CHANGELOG.md"
    headings = re.findall(r"^## (.+)$", changelog.read_text(), re.M)
    assert headings[0] == "Unreleased", headings
    assert headings[1].split(" ")[0] == sdready.__version__, headings


def test_py_typed_ships() -> None:
    from pathlib import Path

    assert (Path(sdready.__file__).parent / "py.typed").exists()
