"""The shape of the code: no import cycle in src/, no module over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

from support.paths import REPO

SRC = REPO / "src"
PACKAGE = "karpathy_gpt"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """The modules of the package that ``path`` imports, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # "from . import x" names a module x; "from .m import y" the module m.
            targets = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
            targets = targets or [base]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def test_no_import_cycle_in_src():
    paths = {module_name(p): p for p in (SRC / PACKAGE).rglob("*.py")}
    graph = {name: imports_of(path, name, set(paths)) for name, path in paths.items()}
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(trail[trail.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert len(graph) > 40 and any(graph.values()), "the import graph was not read"
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_no_module_is_over_400_lines():
    sizes = {
        path.relative_to(REPO): len(path.read_text().splitlines())
        for folder in ("src", "tests", "benchmarks")
        for path in (REPO / folder).rglob("*.py")
    }
    assert len(sizes) > 50
    assert not {p: n for p, n in sizes.items() if n > MAX_LINES}
