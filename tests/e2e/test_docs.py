"""The documentation's relative links lead somewhere.

Every relative link in README.md (and the other Markdown files at the top, BENCHMARKS.md),
docs/**/*.md, kong/README.md, tests/**/README.md, crates/**/README.md and fuzz/README.md must
point to a file or directory that exists, and a `#anchor` (alone, for the same file, or after a
Markdown file's path) must be one that a heading of that file produces under GitHub's rules: the heading's text, lowercased, spaces turned into `-`, every
character but letters, digits, `-` and `_` dropped, and `-1`, `-2`... added to repeats. Links
inside code (fenced blocks, `inline code`) are text, not links. No Envoy, no build: a second.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from conftest import ROOT

PATTERNS = ["*.md", "docs/**/*.md", "kong/README.md", "tests/**/README.md", "crates/**/README.md", "fuzz/README.md"]

FENCE = re.compile(r"^ {0,3}(```+|~~~+)")
INLINE_CODE = re.compile(r"(`+)(?:.+?)\1", re.S)
# [text](target) and ![alt](target); the target may be <bracketed> and followed by a "title".
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(\S+)", re.M)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.I)


def documents() -> list[Path]:
    found = set()
    for pattern in PATTERNS:
        found |= {path for path in ROOT.glob(pattern) if path.is_file() and "target" not in path.relative_to(ROOT).parts}
    return sorted(found)


def prose(text: str) -> str:
    """The text outside fenced code blocks (those lines blanked, so line numbers hold)."""
    lines, fence = [], None
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) and not line.strip(fence[0] + " "):
                fence = None
            lines.append("")
        elif match:
            fence = match.group(1)
            lines.append("")
        else:
            lines.append(line)
    return "\n".join(lines)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's Markdown text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").lower()
    text = "".join(char for char in text if char.isalnum() or char in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = prose(path.read_text())
    found, seen = set(), {}
    for line in text.splitlines():
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    found |= set(HTML_ANCHOR.findall(text))
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every relative link in a Markdown file."""
    text = prose(path.read_text())
    text = INLINE_CODE.sub(lambda code: re.sub(r"[^\n]", " ", code.group(0)), text)
    targets = [(match.start(), match.group(1)) for match in INLINE_LINK.finditer(text)]
    targets += [(match.start(), match.group(1)) for match in REFERENCE_DEFINITION.finditer(text)]
    found = []
    for offset, target in targets:
        target = target.strip("<>")
        if not target or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("//"):
            continue  # http:, https:, mailto:... and protocol-relative: not ours to check
        found.append((text.count("\n", 0, offset) + 1, target))
    return found


def broken(path: Path) -> list[str]:
    problems = []
    for line, target in links(path):
        where = f"{path.relative_to(ROOT)}:{line}: {target}"
        file_part, _, anchor = target.partition("#")
        file_part = unquote(file_part.split("?", 1)[0])
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            problems.append(f"{where}: no such file")
            continue
        if not anchor:
            continue
        if destination.is_dir() or destination.suffix.lower() != ".md":
            continue  # anchors of other files (line numbers of source files) are GitHub's own
        if unquote(anchor) not in anchors(destination):
            problems.append(f"{where}: no heading of {destination.relative_to(ROOT)} makes #{anchor}")
    return problems


# --- the checker itself ----------------------------------------------------------------------


@pytest.mark.parametrize("heading,expected", [
    ("Kong (3.4 to 3.10)", "kong-34-to-310"),
    ("Controls: `enabled`, `snooze`, `on_change`", "controls-enabled-snooze-on_change"),
    ("`crud` and `dao:crud`", "crud-and-daocrud"),
    ("TLS to `https://` receivers", "tls-to-https-receivers"),
    ("The filter's shared state: the `event_hooks` `shm_kv` zone", "the-filters-shared-state-the-event_hooks-shm_kv-zone"),
    ("Choices made where Kong or the spec is silent", "choices-made-where-kong-or-the-spec-is-silent"),
    ("[A link](x.md) here", "a-link-here"),
])
def test_slugs_follow_githubs_rules(heading, expected):
    assert slug(heading) == expected


def test_the_checker_finds_what_is_broken(tmp_path, monkeypatch):
    monkeypatch.setattr("test_docs.ROOT", tmp_path)
    (tmp_path / "other.md").write_text("# Other\n\n## A section\n\n## A section\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[fine](other.md#a-section) [repeat](other.md#a-section-1) [self](#page) [web](https://x.org/#y)\n"
        "[missing file](nope.md) [missing anchor](other.md#nope) [own anchor](#nope)\n"
        "`[in code](nope.md)`\n\n"
        "```\n[in a block](nope.md)\n# not a heading\n```\n\n"
        "[ref]: other.md#a-sectio\n"
    )
    problems = broken(page)
    assert [problem.split(": ")[1] for problem in problems] == ["nope.md", "other.md#nope", "#nope", "other.md#a-sectio"]


# --- the repository's documentation ----------------------------------------------------------


def test_the_documentation_is_found():
    found = {str(path.relative_to(ROOT)) for path in documents()}
    assert {"README.md", "kong/README.md", "docs/src/SUMMARY.md", "tests/host/README.md", "tests/scenarios/README.md"} <= found
    assert sum(name.startswith("docs/") for name in found) >= 20


@pytest.mark.parametrize("path", documents(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    assert broken(path) == []


def test_the_book_lists_every_page():
    """mdBook builds only what SUMMARY.md lists: a page left out would be missing from the book."""
    src = ROOT / "docs" / "src"
    listed = {(src / target).resolve() for _, target in links(src / "SUMMARY.md")}
    pages = {path.resolve() for path in src.rglob("*.md") if path.name != "SUMMARY.md"}
    assert pages - listed == set(), "pages missing from docs/src/SUMMARY.md"
