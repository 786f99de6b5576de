"""README.md's links work where it is read without the repository around it.

The package index renders README.md as the project's description: a relative link there
(``docs/reference.md``) points into the index, not at the file. So every link is absolute,
and each one into this repository names a file (and heading) that exists in the checkout.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPOSITORY = "https://github.com/sdready/sdready/"
_INLINE = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)")
_DEFINITION = re.compile(r"^\[[^\]\n]+\]:\s*(\S+)", re.M)
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_IN_REPOSITORY = re.compile(r"(?:blob|tree)/main/([^#]*)(?:#(.*))?")


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def problems(markdown: str) -> list[str]:
    """Why each link of *markdown* would not work on the package index (empty: all fine)."""
    text = _FENCE.sub("", markdown)  # code blocks hold no links
    found = []
    for target in _INLINE.findall(text) + _DEFINITION.findall(text):
        if not target.startswith(("https://", "http://", "mailto:")):
            found.append(f"{target}: relative, broken on the package index")
            continue
        if not target.startswith(REPOSITORY):
            continue
        match = _IN_REPOSITORY.fullmatch(target.removeprefix(REPOSITORY))
        if match is None:
            continue  # the repository's own pages (issues, releases)
        path = ROOT / match.group(1)
        if not path.exists():
            found.append(f"{target}: no {match.group(1)} in the repository")
        elif match.group(2) and path.is_file():
            headings = re.findall(r"^#+ (.+)$", path.read_text(), re.M)
            if match.group(2) not in {_slug(h) for h in headings}:
                found.append(f"{target}: no such heading in {match.group(1)}")
    return found


def test_readme_links_are_absolute_and_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    assert _INLINE.search(readme) or _DEFINITION.search(readme), "README.md has no links?"
    assert problems(readme) == []


def test_broken_links_are_caught() -> None:
    """Control: the 0.1 README's relative links, a missing file and a missing heading."""
    broken = (
        "See [the reference](docs/reference.md#flask-config-keys) and [x][gone].\n"
        "Also [the plot][plot].\n\n"
        f"[gone]: {REPOSITORY}blob/main/docs/nothing-here.md\n"
        f"[plot]: {REPOSITORY}blob/main/docs/reference.md#no-such-heading\n"
    )
    found = problems(broken)
    assert len(found) == 3, found
    assert "relative" in found[0]
    assert "no docs/nothing-here.md" in found[1]
    assert "no such heading" in found[2]


def test_links_in_code_blocks_are_not_links() -> None:
    assert problems("```python\nx = a[0](b)\n```\n") == []
