"""The dependency arrows of DESIGN.md point one way; this reads every import to keep them so."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "visionheads"

# layer -> the visionheads layers it must not import
FORBIDDEN = {
    "backbones": {"heads", "tasks", "data", "engine", "cli", "metrics", "viz"},
    "heads": {"tasks", "data", "engine", "cli"},
    "data": {"backbones", "heads", "tasks", "engine", "cli"},
    "metrics": {"backbones", "heads", "tasks", "engine", "cli"},
    "viz": {"backbones", "heads", "tasks", "engine", "cli"},
    "engine": {"tasks", "cli", "heads", "backbones", "data"},
    "tasks": {"cli"},
}


def _layer(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported_layers(path: Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "visionheads" and len(parts) > 1:
                layers.add(parts[1])
    return layers


def test_imports_follow_the_design_arrows():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        forbidden = FORBIDDEN.get(_layer(path), set())
        bad = _imported_layers(path) & forbidden
        if bad:
            violations.append(f"{path.relative_to(PACKAGE)} imports {sorted(bad)}")
    assert not violations, "\n".join(violations)


def test_the_checker_sees_a_violation(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text("from visionheads.tasks.base import Task\nimport visionheads.heads.pooled\n")
    assert _imported_layers(sample) == {"tasks", "heads"}
