"""The import graph, read from the source with `ast` (lazy imports inside functions included):
no cycles between modules or between packages, labserver never imports labclient, and in labclient imports
only go down the layers: cli -> features -> tracking -> store and models -> core."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"labclient": "client", "labserver": "server", "labtrainers": "trainers", "labmigrations": "migrations"}

# labclient's layers, top to bottom; a module may import its own subpackage, or any layer below its own
LAYERS = {
    "labclient.cli": 5,
    "labclient.training": 4,
    "labclient.exchange": 4,
    "labclient.compare": 4,
    "labclient.diary": 4,
    "labtrainers": 3.5,  # trainers are plugins the training loop runs; they may use the models layer
    "labclient.tracking": 3,
    "labclient.store": 2,
    "labclient.models": 2,
    "labclient": 1,  # the core: errors, config, paths, files, safe_text
    "labserver": 0,  # what both the server and the client may rely on: tag and team names, routes, errors
    "labmigrations": -1,
}
# features that build on another feature, never the other way round (the package graph stays acyclic)
SIDEWAYS = {("labclient.compare", "labclient.exchange"), ("labclient.compare", "labclient.training")}
MAX_TOP_LEVEL_MODULES = 15


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module of ours that `name` imports, at module level or inside a function."""
    is_package = path.name == "__init__.py"
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from labclient.store import refs` imports the module labclient.store.refs
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in MODULES:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                imported.add(candidate)
                break
    return imported


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _package(module: str) -> str:
    """The unit of layering: labclient's subpackages and core, or a whole other top-level package."""
    parts = module.split(".")
    if parts[0] == "labclient" and len(parts) > 1 and (ROOT / "client" / parts[1]).is_dir():
        return ".".join(parts[:2])
    return parts[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_lazy_imports():
    # check_server imports the server API inside the function: a graph without lazy imports would miss cycles
    assert len(GRAPH) > 60
    assert "labclient.store.server_api" in GRAPH["labclient.store.client"]
    assert "labclient.training.loop" in GRAPH["labclient.cli.train"]


def test_no_module_cycles():
    assert _cycles(GRAPH) == []


def test_no_package_cycles():
    packages: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        packages.setdefault(_package(module), set()).update(
            _package(target) for target in targets if _package(target) != _package(module)
        )
    assert _cycles(packages) == []


def test_the_server_and_the_migrations_never_import_the_client():
    offending = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if module.startswith(("labserver", "labmigrations")) and target.startswith(("labclient", "labtrainers"))
    )
    assert offending == []
    assert not [t for m, ts in GRAPH.items() if m.startswith("labmigrations") for t in ts if t.startswith("labserver")]


def test_imports_only_go_down_the_layers():
    offending = []
    for module, targets in GRAPH.items():
        source = _package(module)
        for target in targets:
            destination = _package(target)
            if source == destination or (source, destination) in SIDEWAYS:
                continue
            if LAYERS[destination] >= LAYERS[source]:
                offending.append(f"{module} -> {target}")
    assert offending == [], "imports must go down: cli -> features -> tracking -> store, models -> core"


@pytest.mark.parametrize("layer", sorted(name for name in LAYERS if name.startswith("labclient.")))
def test_every_layer_exists(layer):
    assert (ROOT / "client" / layer.split(".")[1] / "__init__.py").is_file()


def test_client_top_level_stays_small():
    top = sorted(path.stem for path in (ROOT / "client").glob("*.py") if path.stem != "__init__")
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
