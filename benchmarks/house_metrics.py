"""The shape of the package, for a before/after of a restructuring (issue 23's closing note):
module count, the largest modules, the longest functions, and which modules import mlflow.

    python benchmarks/house_metrics.py [CHECKOUT ...]      # default: this checkout

Lines are physical lines of each file (blank and comment lines included); a function's length
is its `end_lineno - lineno + 1` (ast), nested functions counted inside their parent too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOP = 5


def house(checkout: Path) -> str:
    package = checkout / "lightyolo"
    modules = sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)
    sizes = sorted(((len(p.read_text().splitlines()), p.relative_to(checkout)) for p in modules), reverse=True)
    functions, mlflow_users = [], []
    for path in modules:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append((node.end_lineno - node.lineno + 1, f"{path.relative_to(checkout)}:{node.name}"))
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if any(n == "mlflow" or n.startswith("mlflow.") for n in names):
                mlflow_users.append(str(path.relative_to(checkout)))
    functions.sort(reverse=True)
    lines = [f"{checkout}: {len(modules)} modules, {sum(s for s, _ in sizes)} lines",
             "  largest modules: " + ", ".join(f"{p} ({n})" for n, p in sizes[:TOP]),
             "  longest functions: " + ", ".join(f"{name} ({n})" for n, name in functions[:TOP]),
             "  modules importing mlflow: " + (", ".join(sorted(set(mlflow_users))) or "none")]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    for checkout in [Path(a).resolve() for a in argv] or [REPO]:
        print(house(checkout))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
