"""The shape of the house: the import graph of each distribution has no circles (counting
every import, also those under ``TYPE_CHECKING`` and inside functions), the sandbox needs
nothing of the SDK's private modules, and ``Client`` stays thin.

``python tests/test_layout.py`` prints the graph.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "suno_mp4": ROOT / "suno_mp4",
    "suno_mp4_sandbox": ROOT / "sandbox" / "suno_mp4_sandbox",
}


def _module_name(package: str, path: Path, base: Path) -> str:
    parts = [package, *path.relative_to(base).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of our two packages it imports (anywhere in its source)."""
    modules: dict[str, Path] = {}
    for package, base in PACKAGES.items():
        for path in base.rglob("*.py"):
            modules[_module_name(package, path, base)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                    target = f"{anchor}.{node.module}" if node.module else anchor
                else:
                    target = node.module or ""
                candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            for candidate in candidates:
                if candidate in modules and candidate != name:
                    edges.add(candidate)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


# A package's __init__ re-exports its modules; a module importing its own package's
# public names would be the only way back. Edges into __init__ are kept, so that shows.


def test_no_import_circles() -> None:
    assert _cycles(import_graph()) == []


def test_the_sandbox_uses_only_the_sdks_public_names() -> None:
    graph = import_graph()
    private = {
        f"{name} -> {target}"
        for name, targets in graph.items()
        if name.startswith("suno_mp4_sandbox")
        for target in targets
        if target.startswith("suno_mp4.")
    }
    assert private == set()


def test_the_client_module_stays_thin() -> None:
    lines = (ROOT / "suno_mp4" / "_client.py").read_text().count("\n")
    assert lines < 300, f"_client.py has {lines} lines"


if __name__ == "__main__":
    sys.setrecursionlimit(10_000)
    graph = import_graph()
    for module in sorted(graph):
        print(f"{module}: {', '.join(sorted(graph[module])) or '-'}")
    print("circles:", _cycles(graph) or "none")
