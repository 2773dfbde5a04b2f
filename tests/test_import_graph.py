"""The package's imports form no cycle: neither between modules nor between top-level
subpackages (e.g. models → bench → models). Read from the source with ast, every import
counted (also those inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lightyolo"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports (`from pkg import mod` counts as pkg.mod)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    graph = {module_name(p): imported_modules(p, modules) for p in paths}
    # A package's __init__ is imported with any of its modules: not an edge of its own.
    return {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, …, a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def subpackage(module: str) -> str:
    """`lightyolo.models.necks.pan` → `lightyolo.models`; top-level modules stand alone."""
    return ".".join(module.split(".")[:2])


def folder_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    folders: dict[str, set[str]] = {}
    for module, targets in graph.items():
        edges = folders.setdefault(subpackage(module), set())
        edges |= {subpackage(t) for t in targets} - {subpackage(module)}
    return folders


def test_no_import_cycle_between_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_no_import_cycle_between_subpackages() -> None:
    cycle = find_cycle(folder_graph(import_graph()))
    assert cycle is None, "import cycle between subpackages: " + " → ".join(cycle)


def test_train_imports_nothing_outside_train() -> None:
    outside = {
        (module, target)
        for module, targets in import_graph().items() if subpackage(module) == "lightyolo.train"
        for target in targets if subpackage(target) != "lightyolo.train"
    }
    assert not outside


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ],
)
def test_find_cycle_reports_a_cycle_and_only_a_cycle(graph, expected) -> None:
    assert find_cycle(graph) == expected


def test_the_walk_sees_the_known_edges() -> None:
    graph = import_graph()
    assert "lightyolo.models.detector" in graph["lightyolo.pipeline"]
    assert "lightyolo.models.operators" in graph["lightyolo.models.blocks"]
    assert folder_graph(graph)["lightyolo.measure"] >= {"lightyolo.models"}


def mlflow_importers() -> set[str]:
    """The package's modules that import mlflow (any submodule, at any depth of the file)."""
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if any(name == "mlflow" or name.startswith("mlflow.") for name in names):
                found.add(module_name(path))
    return found


def test_only_the_store_package_imports_mlflow() -> None:
    importers = mlflow_importers()
    assert "lightyolo.store.client" in importers  # the walk sees the store's own imports
    outside = sorted(m for m in importers if not m.startswith("lightyolo.store."))
    assert not outside, f"mlflow imported outside lightyolo/store/: {outside} (docs/mlflow.md)"
