"""Every unit-file snippet a reader can copy from README.md, docs/ or examples/ is valid,
and ``sdready doctor`` finds it clean (exit status 0) once a real systemd loaded it.

systemd allows no comment after a value: ``Type=notify  # stay activating`` is read as the
value ``notify  # stay activating``, rejected, and the line dropped, so the unit silently
becomes ``Type=simple``. Each ```ini block holding a unit section is written out as a unit
and run through ``systemd-analyze verify``; any complaint about it fails the test.

Snippets with systemd >= 253 settings (``Type=notify-reload``, ``ReloadSignal=``) go to the
``systemd-analyze`` of the systemd 254 tree (``.ci/systemd254``) when the host's is older.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from _systemd import HOST, Systemd, UserManager, systemd_254

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("examples/**/README.md")])
_BLOCK = re.compile(r"^```ini\n(.*?)^```", re.M | re.S)
_SECTION = re.compile(r"^\[(Unit|Service|Socket|Install|Container)\]", re.M)
_EXEC = re.compile(r"^(Exec\w+=[-@+!:|]*)(\S+)", re.M)
# Keys and values systemd 252 (this machine's analyzer) does not know yet.
NEWER_SINCE = 253
_NEWER = re.compile(r"^(Type=notify-reload|ReloadSignal=|FileDescriptorStorePreserve=)", re.M)
_QUADLET = re.compile(r"^\[Container\]\n.*?(?=^\[|\Z)", re.M | re.S)


def _snippets() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in _BLOCK.finditer(text):
            if _SECTION.search(match.group(1)):
                line = text.count("\n", 0, match.start()) + 1
                found.append((f"{doc.relative_to(ROOT)}:{line}", match.group(1)))
    return found


SNIPPETS = _snippets()


def _analyzer_version(systemd: Systemd = HOST) -> int:
    out = subprocess.run(
        [systemd.tool("systemd-analyze"), "--version"],
        env={**os.environ, **systemd.env()},
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    match = re.search(r"systemd (\d+)", out)
    return int(match.group(1)) if match else 0


def analyzer_for(snippet: str) -> Systemd:
    """The host's systemd, or the 254 tree for a snippet the host's analyzer is too old for.

    Without the tree the test skips (fails under ``SDREADY_REQUIRE_SYSTEMD=1``).
    """
    if not _NEWER.search(snippet) or _analyzer_version() >= NEWER_SINCE:
        return HOST
    tree = systemd_254()
    reason = tree.unavailable_reason()
    if reason is None:
        return tree
    message = f"systemd >= {NEWER_SINCE} settings, an older analyzer, and {reason}"
    if os.environ.get("SDREADY_REQUIRE_SYSTEMD") == "1":
        pytest.fail(f"SDREADY_REQUIRE_SYSTEMD=1 but: {message} (.ci/systemd254 fetches it)")
    pytest.skip(f"{message}: .ci/systemd254 fetches it")


def as_unit(snippet: str, *, keep_commands: bool = False) -> str:
    """The snippet as a loadable service: programs that exist (unless *keep_commands*: what
    ``sdready doctor`` reads), an ExecStart= if it has none.

    A Quadlet ``[Container]`` section is podman's, not systemd's: it is dropped, and the
    ``[Service]`` part the generator copies is checked.
    """
    text = _QUADLET.sub("", snippet)
    if not keep_commands:
        text = _EXEC.sub(lambda m: m.group(1) + "/bin/true", text)
    if "ExecStart=" not in text:
        text = text.replace("[Service]\n", "[Service]\nExecStart=/bin/true\n", 1)
    if "[Service]" not in text:
        text += "\n[Service]\nExecStart=/bin/true\n"
    return text


def verify(snippet: str, tmp_path: Path, systemd: Systemd = HOST) -> str:
    """What *systemd*'s ``systemd-analyze verify`` says about *snippet* (empty: no complaint)."""
    unit = tmp_path / "snippet.service"
    unit.write_text(as_unit(snippet))
    result = subprocess.run(
        [systemd.tool("systemd-analyze"), "verify", "--man=no", str(unit)],
        env={**os.environ, **systemd.env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return (result.stderr + (result.stdout if result.returncode else "")).strip()


needs_analyzer = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze missing"
)


def test_docs_have_unit_snippets() -> None:
    assert len(SNIPPETS) >= 8, SNIPPETS


@needs_analyzer
@pytest.mark.parametrize(("where", "snippet"), SNIPPETS, ids=[w for w, _ in SNIPPETS])
def test_unit_snippet_verifies(where: str, snippet: str, tmp_path: Path) -> None:
    systemd = analyzer_for(snippet)
    complaints = verify(snippet, tmp_path, systemd)
    assert not complaints, f"{where}:\n{snippet}\n--- {systemd}'s verify:\n{complaints}"


@needs_analyzer
def test_a_trailing_comment_is_caught(tmp_path: Path) -> None:
    """Control: the 0.1 README's broken line makes the check fail."""
    broken = '[Service]\nType=notify                # stay "activating" until READY=1\n'
    assert "Failed to parse service type" in verify(broken, tmp_path)


@needs_analyzer
def test_newer_settings_are_checked_by_a_newer_analyzer(tmp_path: Path) -> None:
    """Control: the 254 analyzer catches a mistake in a notify-reload snippet."""
    snippet = "[Service]\nType=notify-reload\nReloadSignal=SIGHUPP\n"
    systemd = analyzer_for(snippet)
    assert not verify(snippet.replace("SIGHUPP", "SIGHUP"), tmp_path, systemd)
    assert "Failed to parse signal name" in verify(snippet, tmp_path, systemd)


# systemd's stock defaults, which the snippets count on: the private manager's are shorter,
# for the tests' speed. A later assignment (the snippet's) wins.
STOCK_DEFAULTS = "[Service]\nTimeoutStartSec=90s\nTimeoutStopSec=90s\n\n"


@pytest.mark.systemd
@pytest.mark.parametrize(("where", "snippet"), SNIPPETS, ids=[w for w, _ in SNIPPETS])
def test_unit_snippet_is_clean_under_doctor(
    where: str, snippet: str, request: pytest.FixtureRequest
) -> None:
    """Loaded (not started) by the private manager, commands as written: doctor reads the
    unit as systemd resolved it and the server from its ExecStart=, and exits 0."""
    fixture = "user_manager_254" if _NEWER.search(snippet) else "user_manager"
    manager: UserManager = request.getfixturevalue(fixture)
    with manager.scoped():
        name = manager.unit_name("snippet")
        manager.write_unit(name, STOCK_DEFAULTS + as_unit(snippet, keep_commands=True))
        result = manager.doctor(name)
        assert result.returncode == 0, f"{where}:\n{snippet}\n{result.stdout}{result.stderr}"
