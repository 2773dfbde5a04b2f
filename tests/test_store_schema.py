"""Every name the stages exchange through MLflow is spelled once, in lightyolo/store/schema.py
(docs/mlflow.md): the code outside lightyolo/store/ names tags, metrics, params and artifacts
through the schema's constants and helpers, never as string literals. Read from the source with
ast, so a literal anywhere in a module counts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lightyolo.store import schema

PACKAGE = Path(__file__).resolve().parents[1] / "lightyolo"
# A runs frame's MLflow columns (`Store.runs_frame`): `tags.kind`, `metrics.test/map50_95`, …
FRAME_PREFIXES = ("tags.", "metrics.", "params.")
# Metric and tag name families that the writers log (the report derives its own table columns
# from them, so report/ is exempt from this one rule, not from the others).
METRIC_PREFIXES = tuple(f"{family}/" for family in (
    "train", "val", "test", "val_best", "quick", "sweep", "bench", "deploy", schema.EVAL_SECONDS))
LOGGING_CALLS = {"set_tags", "log_metrics", "log_batch"}


def schema_tag_names() -> set[str]:
    """The schema's tag names that cannot be mistaken for ordinary words (with '_' or '.')."""
    return {value for name, value in vars(schema).items()
            if name.endswith("_TAG") and isinstance(value, str) and ("_" in value or "." in value)}


def literal_text(node: ast.AST) -> str | None:
    """A string constant, or the literal head of an f-string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value)
    return None


def violations(source: str, where: str, *, report: bool = False) -> list[str]:
    found = []
    tags = schema_tag_names()
    tree = ast.parse(source)
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            child.parent = parent  # type: ignore[attr-defined]
    for node in ast.walk(tree):
        text = literal_text(node)
        # (a JoinedStr's head is also walked as a Constant: report it once, as the f-string)
        if text is not None and not isinstance(getattr(node, "parent", None), ast.JoinedStr):
            if text.startswith(FRAME_PREFIXES) and Path(text).suffix not in (".json", ".yaml"):
                found.append(f"{where}:{node.lineno}: MLflow column {text!r}")
            if not report and text.startswith(METRIC_PREFIXES):
                found.append(f"{where}:{node.lineno}: metric or tag name {text!r}")
        if isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            dicts = [a for a in node.args if isinstance(a, ast.Dict)] if called in LOGGING_CALLS else []
            dicts += [k.value for k in node.keywords if k.arg == "tags" and isinstance(k.value, ast.Dict)]
            for key in (k for d in dicts for k in d.keys if k is not None):
                if literal_text(key) is not None:
                    found.append(f"{where}:{key.lineno}: {literal_text(key)!r} logged by its literal name")
        keys = node.keys if isinstance(node, ast.Dict) else (
            [node.slice] if isinstance(node, ast.Subscript) else
            node.args[:1] if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "get" else [])
        for key in (k for k in keys if k is not None):
            if not report and literal_text(key) in tags:
                found.append(f"{where}:{key.lineno}: tag {literal_text(key)!r} spelt out")
    return found


def test_no_tag_metric_or_column_name_is_spelt_outside_the_schema() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "store":
            continue
        found += violations(path.read_text(), str(relative), report=relative.parts[0] == "report")
    assert not found, "names to take from lightyolo/store/schema.py:\n" + "\n".join(found)


@pytest.mark.parametrize("line", [
    'tracker.set_tags({"eval_split": split})',
    'runs = raw["tags.backbone"]',
    'tracker.log_metrics({f"bench/{method}/median_ms": 1.0})',
    'owner = run.tags.get("owner.pid")',
    'RunTracker.start(store, "e", run_name="r", tags={"kind": "report"}, params={})',
])
def test_each_rule_catches_what_it_is_for(line: str) -> None:
    assert violations(line, "example")


def test_names_through_the_schema_pass() -> None:
    good = ('tracker.set_tags({schema.EVAL_SPLIT_TAG: split})\n'
            'column = schema.tag_column("backbone")\n'
            'tracker.log_metrics({schema.bench_metric(method, "median_ms"): 1.0})\n'
            'path = Path("params.json")\n')
    assert violations(good, "example") == []
