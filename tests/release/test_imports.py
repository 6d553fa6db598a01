"""`release/` has no import cycle: its modules form a tree of layers (checked on the source, as the
pipeline reads imports for its fingerprints, so an import inside a function or under
TYPE_CHECKING counts too)."""

from __future__ import annotations

from pathlib import Path

from release.pipeline import PACKAGE, _imported, _source_of

RELEASE = Path(__file__).resolve().parents[2] / "release"


def module_name(path: Path) -> str:
    parts = path.relative_to(RELEASE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in RELEASE.rglob("*.py")}
    return {name: _imported(name, path) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] (depth-first search with an explicit path)."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str]:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target, [*path, target])):
                return cycle
        state[node] = "done"
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return []


def test_release_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30 and all(_source_of(name) for name in graph)
    assert find_cycle(graph) == []


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = import_graph()
    graph[f"{PACKAGE}.proc"] = {*graph[f"{PACKAGE}.proc"], f"{PACKAGE}.deps"}  # proc -> deps -> ... -> proc
    cycle = find_cycle(graph)
    assert cycle[0] == cycle[-1] and f"{PACKAGE}.deps" in cycle and f"{PACKAGE}.proc" in cycle

