"""The house plan of CONVENTIONS.md holds: module-level imports form no circle and point down the layers, and
no source file is over 400 lines."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dyffusion"
# Lowest first; a module may import from its own layer or a lower one (CONVENTIONS.md, "Map of the house").
LAYERS = [
    ["errors", "io", "distributed", "networks", "metrics"],
    ["data"],
    ["ensemble", "method.schedule", "method.sampler", "simulators"],
    ["config"],
    ["plots", "method", "baselines"],
    ["methods"],
    ["run"],
    ["evaluation", "info"],
    ["training"],
    ["api", "demo", ""],  # "": the package's own __init__
    ["cli"],
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules imported at module level (not under ``if TYPE_CHECKING``, not inside functions)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for statement in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(statement, ast.ImportFrom) and (statement.module or "").startswith("dyffusion"):
                base = statement.module.removeprefix("dyffusion").lstrip(".")
                found.add(base)
                found.update(f"{base}.{alias.name}".lstrip(".") for alias in statement.names
                             if f"{base}.{alias.name}".lstrip(".") in modules)
            elif isinstance(statement, ast.Import):
                found.update(alias.name.removeprefix("dyffusion").lstrip(".") for alias in statement.names
                             if alias.name.startswith("dyffusion"))
    return {name for name in found if name in modules}


def _layer(module: str) -> int:
    """The layer of the longest matching room (``method.sampler`` before ``method``)."""
    rooms = [(len(room), index) for index, layer in enumerate(LAYERS) for room in layer
             if module == room or module.startswith(room + ".") or (room == "" and module == "")]
    if not rooms:
        pytest.fail(f"dyffusion.{module} is in no layer of the house plan")
    return max(rooms)[1]


def test_imports_point_down_the_layers_and_form_no_circle():
    modules = _modules()
    graph = {module: _imports(path, modules) - {module} for module, path in modules.items()}
    upward = [f"dyffusion.{module} imports dyffusion.{target}" for module, targets in graph.items()
              for target in targets if _layer(target) > _layer(module) and not target.startswith(module + ".")
              and module != ""]
    assert not upward, upward
    # A circle: a module reached again from itself (depth-first, the package's own __init__ aside).
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                pytest.fail("import circle: " + " -> ".join([*path[path.index(target):], target]))
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_no_source_file_over_400_lines():
    long = {str(path.relative_to(PACKAGE)): count for path in PACKAGE.rglob("*.py")
            if (count := len(path.read_text().splitlines())) > 400}
    assert not long, long
