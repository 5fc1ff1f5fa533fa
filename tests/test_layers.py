"""The package's layering: every import points down the layers, and no modules import each other in a circle.

A newcomer reads the code bottom-up (CONTRIBUTING.md, "Layout and layers"): the foundations (errors, the config
schema), then data and models, accelerations and evaluation, losses, training, the benchmark harness, config
validation, the modes, the command line. An import from a higher layer (a model importing the trainer) is the first step towards
a tangle, so this test reads every import statement (those inside functions too, which only postpone the load)
with `ast` and checks both rules.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "replay_accelerated"

# Bottom to top. A module may import from its own unit and from units of lower layers; a unit is a subpackage
# (`data`, `models`, ...) or a top-level module (`config`, `cli`, ...).
LAYERS = [
    {"__init__", "errors"},  # the package's __init__ is empty, so importing it (for its path) costs nothing
    {"config", "outputs", "input_errors"},
    {"data", "models"},
    {"acceleration", "evaluation"},
    {"losses"},
    {"training"},
    {"benchmarks"},
    {"config_values"},  # the checks that need the registries (loaded only after the schema check passed)
    {"validation"},
    {"modes"},
    {"cli"},
    {"__main__"},
]
LAYER_OF = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    """`replay_accelerated.data.split` -> "data"; `replay_accelerated.cli` -> "cli"; the package -> "__init__"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """The package's modules that `path` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("replay_accelerated")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("replay_accelerated"):
            assert node.level == 0, f"{path}: relative import; the package imports by absolute names"
            for alias in node.names:  # `from replay_accelerated import modes` imports the module `modes`
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if is_module(submodule) else node.module)
    return found


GRAPH = {module_name(path): imports_of(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_unit_has_a_layer():
    units = {unit_of(module) for module in GRAPH}
    assert units <= set(LAYER_OF), f"put {sorted(units - set(LAYER_OF))} into a layer of LAYERS"


def test_imports_point_down_the_layers():
    upward = [f"{module} imports {target} ({unit_of(module)} is layer {LAYER_OF[unit_of(module)]}, "
              f"{unit_of(target)} layer {LAYER_OF[unit_of(target)]})"
              for module, targets in GRAPH.items() for target in sorted(targets)
              if unit_of(target) != unit_of(module) and LAYER_OF[unit_of(target)] >= LAYER_OF[unit_of(module)]]
    assert not upward, "imports up or across the layers:\n" + "\n".join(upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as a path [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if target == module or target not in graph:
                continue
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[module] = "done"
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_no_import_cycles():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("graph, has_cycle", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
    ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, False),  # a diamond is no cycle
])
def test_the_cycle_finder(graph, has_cycle):
    assert (find_cycle(graph) is not None) == has_cycle
