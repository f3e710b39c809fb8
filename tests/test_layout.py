"""The package's import graph has no cycles (module- and function-level imports, outside TYPE_CHECKING):
every module can be read, and tested, after the ones it depends on."""

from __future__ import annotations

from pathlib import Path

from helpers import module_imports

import yolodbg

PACKAGE = Path(yolodbg.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _parents(name: str, modules: dict[str, Path]) -> set[str]:
    """The packages Python runs first when it imports ``name`` (``a.b.c`` runs ``a.b``'s ``__init__``),
    below the top-level package, which every module imports anyway."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(2, len(parts))} & set(modules)


def _graph() -> dict[str, set[str]]:
    """Module -> the yolodbg modules it imports (``from pkg import mod`` names the module itself), and the
    packages whose ``__init__`` that import runs."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for module, imported in module_imports(path):
            target = f"{module}.{imported}" if f"{module}.{imported}" in modules else module
            if target in modules and target != name:
                deps.add(target)
                deps.update(_parents(target, modules) - _parents(name, modules) - {name})
        graph[name] = deps
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None (depth-first search with colours)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    assert len(graph) > 40 and sum(map(len, graph.values())) > 100  # it did read the package
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _package(module: str, modules: dict[str, Path]) -> str:
    return module if modules.get(module, Path()).name == "__init__.py" else module.rpartition(".")[0]


def test_no_module_imports_a_private_name_from_another_package():
    """``from yolodbg.x import _y`` or ``import yolodbg._x`` only inside x's own package: what starts
    with an underscore may change without notice, so other packages must not lean on it."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    offences, checked = [], 0
    for name, path in modules.items():
        for module, imported in module_imports(path):
            if not module.startswith("yolodbg"):
                continue
            checked += 1
            source = f"{module}.{imported}" if f"{module}.{imported}" in modules else module
            private = [
                p
                for p in f"{module}.{imported}".split(".")[1:]
                if p.startswith("_") and not p.startswith("__")
            ]
            if private and _package(source, modules) != _package(name, modules):
                offences.append(f"{name} imports {module}.{imported}")
    assert checked > 200
    assert offences == []
