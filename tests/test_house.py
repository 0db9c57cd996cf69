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


def test_a_new_method_is_one_entry_of_the_table(spring_data, tmp_path, monkeypatch):
    """A method no file knows by name, added to METHODS alone, trains, evaluates and is described end to end:
    the multi-step forecaster without any ensemble spread, whose members are all the same (spread 0, SSR 0)."""
    from dataclasses import dataclass

    from dyffusion import methods
    from dyffusion.cli.main import main
    from dyffusion.info import run_info
    from tests.test_baselines import BASELINE_NETWORK

    @dataclass
    class Deterministic(methods.MultiStep):
        choices = ()

    monkeypatch.setitem(methods.METHODS, "deterministic",
                        Deterministic("Deterministic", False, "one multi-step forecaster, no ensemble spread"))
    run = tmp_path / "run"
    assert main(["fit", str(spring_data), "--out", str(run), "--method", "deterministic", "--horizon", "4",
                 "--max-epochs", "1", "--quiet", "--set", "data.time_stride=2", "--set", "trainer.batches_per_epoch=2",
                 "--set", "baseline.batch_size=8", "--set", "baseline.val_members=2", *BASELINE_NETWORK]) == 0
    assert main(["evaluate", str(run), "--members", "3", "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    metrics = (tmp_path / "eval" / "metrics.json").read_text()
    import json

    scores = json.loads(metrics)
    assert scores["method"] == "deterministic" and scores["mean"]["ssr"] == 0.0
    info = run_info(run)
    assert info["method"] == "deterministic" and info["training"]["stages"]["forecaster"]["status"] == "finished"
