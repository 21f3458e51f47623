"""The library's layers, checked over the syntax tree of every module (docs/architecture.md).

A module imports only from its own layer or lower, never in a cycle (imports inside functions
count), and never a private name of another module; the core packages know nothing of training,
caching or the lab; at most four modules sit loose at the top of `nuwa_lab/`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "nuwa_lab"

# top-level unit -> layer (lower numbers are lower layers; imports point down or sideways)
LAYERS = {
    "config": 0,
    "presets": 0,
    "device": 0,
    "world": 1,
    "attention": 1,
    "tokenizer": 2,
    "model": 2,
    "metrics": 2,
    "tasks": 3,
    "viz": 4,
    "train": 4,
    "recipes": 5,
    "lab": 6,
    "__main__": 7,
    "__init__": 7,
}
CORE = ("world", "attention", "tokenizer", "model")
NOT_FOR_THE_CORE = ("train", "recipes", "lab", "viz")
LOOSE_MODULES_MAX = 4


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def resolve(name: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = name.split(".") if is_package(name) else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str) -> list[tuple[str, str | None, int, bool]]:
    """(imported module, imported name or None, line, inside a function) for nuwa_lab imports."""
    tree = ast.parse(MODULES[name].read_text())
    inner: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inner.update(id(n) for n in ast.walk(fn) if n is not fn)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("nuwa_lab"):
                    out.append((alias.name, None, node.lineno, id(node) in inner))
        elif isinstance(node, ast.ImportFrom):
            target = resolve(name, node)
            if not target.startswith("nuwa_lab"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:  # `from nuwa_lab.x import submodule`
                    out.append((sub, None, node.lineno, id(node) in inner))
                else:
                    out.append((target, alias.name, node.lineno, id(node) in inner))
    return out


def unit(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_unit_has_a_layer():
    missing = sorted({unit(m) for m in MODULES} - set(LAYERS))
    assert not missing, f"give these top-level modules/packages a layer in LAYERS: {missing}"


def test_at_most_four_loose_modules_at_the_top():
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(loose) <= LOOSE_MODULES_MAX, loose


def test_imports_point_down():
    wrong = []
    for name in MODULES:
        for target, _, line, _ in imports_of(name):
            if LAYERS[unit(target)] > LAYERS[unit(name)]:
                wrong.append(f"{MODULES[name].relative_to(PACKAGE.parent)}:{line} -> {target}")
    assert not wrong, "imports pointing up a layer:\n" + "\n".join(wrong)


def test_the_core_knows_nothing_of_training_caching_or_the_lab():
    wrong = [
        f"{name} -> {target}"
        for name in MODULES
        if unit(name) in CORE
        for target, _, _, _ in imports_of(name)
        if unit(target) in NOT_FOR_THE_CORE
    ]
    assert not wrong, wrong


def test_no_private_name_crosses_modules():
    wrong = []
    for name in MODULES:
        for target, imported, line, _ in imports_of(name):
            private_module = any(p.startswith("_") and p != "__init__" for p in target.split("."))
            private_name = imported is not None and imported.startswith("_")
            if (private_module or private_name) and target != name:
                wrong.append(f"{name}:{line} imports {target}.{imported or ''}")
    assert not wrong, wrong


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name in MODULES:
        for target, _, _, _ in imports_of(name):
            if target in MODULES and target != name:
                graph[name].add(target)
    return graph


def test_no_import_cycles():
    """Between modules (a package's `__init__` importing its own submodules is not a cycle)."""
    graph = _graph()
    for name, targets in graph.items():  # drop package -> own submodule edges (re-exports)
        if is_package(name):
            graph[name] = {t for t in targets if not t.startswith(name + ".")}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_inside_functions_are_only_for_optional_heavy_dependencies():
    """An import of nuwa_lab inside a function would hide a dependency (or a cycle)."""
    inner = [
        f"{MODULES[name].relative_to(PACKAGE.parent)}:{line} -> {target}"
        for name in MODULES
        for target, _, line, inside in imports_of(name)
        if inside
    ]
    assert not inner, "nuwa_lab imported inside a function:\n" + "\n".join(inner)


@pytest.mark.parametrize("package", CORE)
def test_importing_a_core_package_stays_light(package):
    code = (
        f"import sys, nuwa_lab.{package}; "
        "print(','.join(sorted(m for m in sys.modules if m.startswith('nuwa_lab'))))"
    )
    loaded = (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        .stdout.strip()
        .split(",")
    )
    heavy = [m for m in loaded if unit(m) in NOT_FOR_THE_CORE]
    assert not heavy, f"import nuwa_lab.{package} loads {heavy}"
    for name in ("matplotlib", "ipywidgets", "papermill"):
        code = f"import sys, nuwa_lab.{package}; print({name!r} in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.stdout.strip() == "False", f"import nuwa_lab.{package} loads {name}"
