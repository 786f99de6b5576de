"""tests/_state.py knows all of sdready's process-wide state, and its fixture resets it."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from _state import LEFT_OUT, STATE, Global, ProcessState
from sdready._notify import _protocol

ROOT = Path(__file__).resolve().parent.parent


def _module_name(path: Path) -> str:
    top, *rest = path.relative_to(ROOT).with_suffix("").parts
    if rest[-1] == "__init__":
        rest = rest[:-1]
    return ".".join([*{"core": ["sdready"], "plugins": ["sdready", "plugins"]}[top], *rest])


def _starts_empty(value: ast.expr | None) -> bool:
    """``set()``, ``{}``, ``[]``, ``_Private()``: a module global made to be filled later."""
    if isinstance(value, (ast.Set, ast.List)):
        return not value.elts
    if isinstance(value, ast.Dict):
        return not value.keys
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
        name = value.func.id
        made = name in ("set", "dict", "list") or (name[:1] == "_" and name[1:2].isupper())
        return made and not value.args and not value.keywords
    return False


def process_wide_globals() -> set[tuple[str, str]]:
    """Module globals of core/ and plugins/ that a function rebinds (``global``) or that
    start as an empty container or a private object."""
    found: set[tuple[str, str]] = set()
    for path in [*(ROOT / "core").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        module = _module_name(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Global):
                found.update((module, name) for name in node.names)
        for node in tree.body:
            if isinstance(node, ast.Assign) and _starts_empty(node.value):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign) and _starts_empty(node.value):
                targets = [node.target]
            else:
                continue
            found.update((module, t.id) for t in targets if isinstance(t, ast.Name))
    return found


def test_every_process_wide_global_is_known() -> None:
    known = {(item.module, item.name) for item in STATE} | set(LEFT_OUT)
    found = process_wide_globals()
    assert found - known == set(), "add them to tests/_state.py"
    assert known - found == set(), "tests/_state.py names globals that are gone"
    # Control: the scan sees the ones the tests used to reset by hand.
    assert {
        ("sdready._notify._protocol", "_unknown_logged"),
        ("sdready._listen._activation", "_passed"),
    } <= found


@pytest.mark.parametrize("item", STATE, ids=lambda item: f"{item.module}.{item.name}")
def test_each_entry_names_a_real_global(item: Global) -> None:
    try:
        module = importlib.import_module(item.module)
    except ImportError as exc:  # a plugin whose framework is not installed
        if not item.module.startswith("sdready.plugins."):
            raise
        pytest.skip(str(exc))
    assert hasattr(module, item.name)
    if item.fresh is not None:  # the fresh value is of the kind the module starts with
        assert type(item.fresh()) is type(getattr(module, item.name))


def test_a_test_starts_fresh_and_the_process_state_comes_back() -> None:
    before = _protocol._unknown_logged
    state = ProcessState()
    state.start()
    assert _protocol._unknown_logged == set() and _protocol._unknown_logged is not before
    _protocol._unknown_logged.add("READDY")
    state.refuse_netlink()
    from sdready._listen import _proctree

    assert _proctree.sockdiag_support() == (False, "netlink refused by the test")
    state.restore()
    assert _protocol._unknown_logged is before and "READDY" not in before
    assert _proctree.sockdiag_support() != (False, "netlink refused by the test")
