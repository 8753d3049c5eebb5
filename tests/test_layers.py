"""The dependency arrows of DESIGN.md point one way and no module imports itself in a circle; this reads every
import to keep them so, and imports every module on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "visionheads"

# layer -> the visionheads layers it must not import
FORBIDDEN = {
    "backbones": {"deploy", "heads", "tasks", "runtime", "data", "engine", "cli", "recipes", "metrics", "viz"},
    "heads": {"deploy", "tasks", "runtime", "data", "engine", "cli", "recipes"},
    "data": {"deploy", "backbones", "heads", "tasks", "runtime", "engine", "cli", "recipes"},
    "metrics": {"deploy", "backbones", "heads", "tasks", "runtime", "engine", "cli", "recipes"},
    "viz": {"deploy", "backbones", "heads", "tasks", "runtime", "engine", "cli", "recipes"},
    "engine": {"deploy", "tasks", "runtime", "cli", "recipes", "heads", "backbones", "data"},
    # The runtime runs tasks through its RunnableTask protocol: it knows no task, head or body by name.
    "runtime": {"tasks", "heads", "backbones", "cli", "recipes", "comparing"},
    "tasks": {"cli", "recipes", "comparing"},
    # Exported files run without the training stack: the light runtime reads images and decodes, nothing more.
    "deploy": {"tasks", "runtime", "heads", "backbones", "engine", "cli", "recipes", "comparing", "metrics", "viz"},
    "recipes": {"cli"},
}


def _module_name(path: Path) -> str:
    parts = ("visionheads", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imported_modules(path: Path) -> set[str]:
    """The visionheads modules `path` imports, anywhere in it (functions and TYPE_CHECKING blocks included)."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from package import module` imports the module; `from module import name` the module itself.
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & set(MODULES)
            imported |= submodules or {node.module}
    return {name for name in imported if name in MODULES}


def _layer(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_imports_follow_the_design_arrows():
    violations = []
    for module, path in MODULES.items():
        bad = {_layer(imported) for imported in _imported_modules(path)} & FORBIDDEN.get(_layer(module), set())
        if bad:
            violations.append(f"{module} imports {sorted(bad)}")
    assert not violations, "\n".join(violations)


def test_no_module_imports_itself_in_a_circle():
    graph = {module: _imported_modules(path) - {module} for module, path in MODULES.items()}
    circles, state = [], {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                circles.append(" -> ".join([*trail[trail.index(imported) :], imported]))
            elif imported not in state:
                visit(imported, [*trail, imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, "\n".join(circles)


def test_the_checker_sees_imports_and_circles(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text("from visionheads.tasks.base import Task\nfrom visionheads import engine\n")
    assert _imported_modules(sample) == {"visionheads.tasks.base", "visionheads.engine"}


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    # One interpreter, every visionheads module dropped from sys.modules before the next one is imported alone:
    # an import that only works after another module (a hidden circle) fails here.
    script = f"""
import importlib, sys
failures = []
for name in {sorted(MODULES)!r}:
    for loaded in [m for m in sys.modules if m == "visionheads" or m.startswith("visionheads.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as error:
        failures.append(f"{{name}}: {{type(error).__name__}}: {{error}}")
print("\\n".join(failures))
sys.exit(1 if failures else 0)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
