"""The package's shape: no import cycles, every arrow pointing down, one job per module.

The import graph is read from the source with :mod:`ast` (every ``import`` of a
dlmm module, at module level or inside a function) and checked for cycles
with the standard library's :class:`graphlib.TopologicalSorter`; each module
is also imported alone in a fresh interpreter.
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dlmm"

#: Layers from the bottom up: a module may import only from its own layer or below.
LAYERS = [
    {"exceptions"},
    {"kernels", "distributed", "spec", "progress"},
    {"objective", "optimize", "structure", "io"},
    {"results"},
    {"model", "model_compat", "model_data", "formula_api", "lmer", "simulate",
     "terms_model"},
    {"bench", "__init__"},
    {"cli"},
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "dlmm"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "dlmm":
                continue
            for alias in node.names:  # `from . import x` may name a module
                out.add(f"{target}.{alias.name}" if _exists(f"{target}.{alias.name}")
                        else target)
    return {m for m in out if _exists(m)}


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (PACKAGE.parent / rel).with_suffix(".py").exists() or \
        (PACKAGE.parent / rel / "__init__.py").exists()


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: _imports(path, name) - {name} for name, path in MODULES.items()}


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


def test_no_import_cycles():
    # Packages import their own modules (``dlmm.x`` -> ``dlmm.x.y``); a module
    # importing its package's __init__ is the only way to close a loop there.
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in GRAPH.items()}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError on a cycle


def test_the_cycle_check_can_fail():
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter({"a": {"b"}, "b": {"a"}}).prepare()


def test_every_arrow_points_down():
    upward = [(m, d) for m, deps in GRAPH.items() for d in deps
              if d != "dlmm" and _layer(d) > _layer(m)]
    assert upward == []


def test_kernels_and_distributed_know_only_themselves():
    for module, deps in GRAPH.items():
        top = module.split(".")[1] if "." in module else ""
        if top in ("kernels", "distributed", "spec"):
            foreign = {d for d in deps if d.split(".")[1] not in (top, "exceptions")}
            assert foreign == set(), f"{module} imports {sorted(foreign)}"


def test_every_module_says_its_job_and_stays_small():
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        assert ast.get_docstring(tree), f"{name} has no module docstring"
        assert len(text.splitlines()) <= 600, f"{name} has over 600 lines"


def test_every_module_imports_in_dependency_order():
    """Each module imports with only the modules below it loaded (one interpreter,
    modules in topological order of the graph above)."""
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in GRAPH.items()}
    order = [m for m in graphlib.TopologicalSorter(graph).static_order()
             if not m.endswith("__main__")]
    code = f"import importlib\nfor m in {order!r}:\n    importlib.import_module(m)\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300, capture_output=True)
