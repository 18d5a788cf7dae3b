"""The package layout holds: no import cycle between modules, and no import from a lower layer to a higher one.

Every import is read with `ast` (module level, inside functions and under TYPE_CHECKING alike),
so a lazy import that closes a cycle counts. The layers follow the data's path (docs/README.md, Layout).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

# Rank of each part: a module may import its own part and parts of a lower rank, nothing else.
# Two parts of one rank are independent of each other.
LAYERS: dict[str, int] = {
    "nstage": 0,  # foundations: errors, geometry, paths, progress, atomic_output, stations (the station table), cohort_executor
    "nstage.ingest": 1,
    "nstage.stationmap": 2,
    "nstage.analysis": 3,
    "nstage.outputs": 4,
    "nstage.summary": 4,
    "nstage.pipeline": 5,
    "nstage.runner": 6,
    "nstage.training": 6,
    "nstage.training.federated": 7,  # federated training (NVFlare) over the training recipe
    "nstage.synth": 6,
    "nstage.route": 7,
    "nstage.batch": 7,  # `nstage batch`: many studies through nstage.runner, on the cohort executor
    "nstage.commands": 8,
    "nstage.cli": 8,
    "operators": 9,
    "app": 10,
    "bench": 10,
    "label_app": 10,  # the MONAI Label app: thin tasks over the domain package
}
FOUNDATIONS = {"nstage", "nstage.errors", "nstage.geometry", "nstage.paths", "nstage.progress", "nstage.atomic_output", "nstage.stations",
               "nstage.cohort_executor"}
SOURCES = ("nstage", "operators", "bench", "app.py", "label_app")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for src in SOURCES:
        p = REPO / src
        for f in [p] if p.is_file() else sorted(p.rglob("*.py")):
            files[module_name(f)] = f
    return files


MODULES = source_files()


def imported_modules(name: str, path: Path) -> set[str]:
    """The project modules that `name` imports (a `from package import module` names the module)."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:  # `import nstage.ingest.study` names the module; keep the longest known prefix
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


GRAPH = {name: imported_modules(name, path) for name, path in MODULES.items()}


def part(module: str) -> str:
    """The entry of LAYERS a module belongs to (the longest matching prefix)."""
    if module in FOUNDATIONS:
        return "nstage"
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    if best is None or best == "nstage":
        raise AssertionError(f"{module} belongs to no layer of tests/test_layers.py: place it in a stage package or in LAYERS")
    return best


def test_the_walk_reads_the_project() -> None:
    assert {"nstage.pipeline", "nstage.ingest.study", "nstage.stationmap.registration", "app"} <= set(MODULES)
    assert "nstage.analysis.classifier.station_case" in GRAPH["nstage.analysis.classifier.inference"]
    assert "nstage.outputs.report.images" in GRAPH["nstage.outputs.report.page"]  # `from nstage.outputs.report import images`


def test_every_module_has_a_layer() -> None:
    placed = {m: part(m) for m in MODULES}
    assert set(placed.values()) == set(LAYERS), "a layer of LAYERS holds no module: drop it or fill it"


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports into the same or a higher layer of another part."""
    bad = []
    for a, targets in sorted(graph.items()):
        for b in sorted(targets):
            pa, pb = part(a), part(b)
            if pa != pb and LAYERS[pb] >= LAYERS[pa]:
                bad.append(f"{a} ({pa}, layer {LAYERS[pa]}) imports {b} ({pb}, layer {LAYERS[pb]})")
    return bad


def test_no_upward_or_sideways_import() -> None:
    bad = layer_violations(GRAPH)
    assert not bad, "\n".join(bad)


def test_the_layer_check_sees_an_upward_import() -> None:
    assert layer_violations({"nstage.ingest.study": {"nstage.stationmap.registration", "nstage.geometry"}}) == [
        "nstage.ingest.study (nstage.ingest, layer 1) imports nstage.stationmap.registration (nstage.stationmap, layer 2)"]
    assert layer_violations({"nstage.training.cache": {"nstage.synth.case"}})  # same layer, other part
    assert not layer_violations({"nstage.pipeline": {"nstage.ingest.study", "nstage.analysis.nrules"}})


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as a list of modules, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle() -> None:
    cycle = find_cycle(GRAPH)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
