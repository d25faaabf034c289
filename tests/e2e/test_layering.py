"""The code's shape, as the architecture promises it (docs/src/architecture.md): no import cycle
among the modules of crates/core (a module may use those below it, never one that uses it back),
and no production source file over 600 lines. Fast, reads the sources only (no Envoy)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "crates" / "core" / "src"
MAX_LINES = 600


def production_text(path: Path) -> str:
    """A source file without its comments and its inline test module."""
    text = re.sub(r"//[^\n]*", "", path.read_text())
    return re.split(r"#\[cfg\((?:all\()?test[^\]]*\]\s*(?:pub\(crate\) )?mod tests", text)[0]


def modules(root: Path) -> dict[str, Path]:
    """Every module of a crate by path (`source::traffic`), its `tests.rs` files left out."""
    found = {}
    for path in sorted(root.rglob("*.rs")):
        if path.name == "tests.rs":
            continue
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] in ("mod", "lib"):
            parts = parts[:-1]
        found["::".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules `name` uses through `crate::` and `super::` paths, each resolved to the
    longest module it names; a module's own ancestors are not counted (a child may use its
    parent's items)."""

    def resolve(dotted: str) -> str | None:
        parts = [part for part in dotted.split("::") if part]
        while parts:
            candidate = "::".join(parts)
            if candidate in known:
                return candidate
            parts.pop()
        return None

    text = production_text(path)
    parent = "::".join(name.split("::")[:-1])
    targets = [resolve(found) for found in re.findall(r"crate::([a-z_:]+)", text)]
    targets += [resolve((parent + "::" if parent else "") + found) for found in re.findall(r"\bsuper::([a-z_:]+)", text)]
    return {t for t in targets if t and t != name and not name.startswith(t + "::")}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def module_graph() -> dict[str, set[str]]:
    known = modules(CORE)
    return {name: imports(name, path, known) for name, path in known.items()}


def top_level_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, targets in module_graph().items():
        if not name:
            continue  # lib.rs declares the modules
        top = name.split("::")[0]
        graph.setdefault(top, set()).update(t.split("::")[0] for t in targets if t.split("::")[0] != top)
    return graph


def test_no_import_cycle_among_the_core_s_modules():
    assert cycles(module_graph()) == []


def test_no_import_cycle_among_the_core_s_top_level_modules():
    assert cycles(top_level_graph()) == []


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


PRODUCTION = sorted(
    path
    for crate in ("core", "filter", "cli")
    for path in (ROOT / "crates" / crate / "src").rglob("*.rs")
    if path.name != "tests.rs"
)


@pytest.mark.parametrize("path", PRODUCTION, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_production_source_file_is_over_600_lines(path: Path):
    lines = production_text(path).count("\n")
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)}: {lines} lines"
