"""The shape of the product's code, read from its source with `ast`: the import graph of agent/, graphs/ and
tools/ (every import that runs, also those inside functions; not those for annotations only), its cycles
and its upward imports (tools/ knows no graph and no door, graphs/ no door), the modules at the top of
tools/, and the longest functions and classes. `python tests/helpers/architecture.py` prints it as JSON
lines (for a closing note); tests/unit/test_architecture.py asserts on it."""

from __future__ import annotations

import ast
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAYERS = ("agent", "graphs", "tools")  # a front door may import a graph, a graph a tool; never upwards


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def product_files() -> list[Path]:
    return sorted(path for layer in LAYERS for path in (REPO / layer).rglob("*.py"))


def _type_only(tree: ast.AST) -> set[int]:
    """The nodes under `if TYPE_CHECKING:` (imports for annotations only: never run)."""
    guarded = [node for node in ast.walk(tree) if isinstance(node, ast.If)
               and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"]
    return {id(inner) for node in guarded for stmt in node.body for inner in ast.walk(stmt)}


def _imported(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The modules `module` imports when it runs: `from package import submodule` counts the submodule
    alone, `from module import name` the module."""
    names: set[str] = set()
    type_only = _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package
                package = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            submodules = {f"{base}.{alias.name}" for alias in node.names} & modules
            names.update(submodules)
            if len(submodules) < len(node.names):
                names.add(base)
    return names


def import_graph() -> dict[str, set[str]]:
    """module -> the product modules it imports (a name imported from a package counts as the package,
    or as its submodule when one of that name exists)."""
    files = product_files()
    modules = {module_name(path) for path in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        module = module_name(path)
        names = _imported(ast.parse(path.read_text(encoding="utf-8")), module, path.name == "__init__.py",
                          modules)
        graph[module] = {name for name in names if name in modules and name != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def package_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles between the packages of tools/ (tools.data, tools.training, ...), a module's imports counted
    for its package; the top-level modules of tools/ count as themselves."""
    def package(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if parts[0] == "tools" else parts[0]

    packages: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        packages[package(module)].update(package(t) for t in targets if package(t) != package(module))
    return cycles(packages)


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    rank = {layer: n for n, layer in enumerate(LAYERS)}
    return sorted((module, target) for module, targets in graph.items() for target in targets
                  if rank[target.split(".")[0]] < rank[module.split(".")[0]])


@dataclass(frozen=True)
class Definition:
    kind: str  # "function" (methods included) or "class"
    name: str  # module:qualified name
    lines: int


def _definitions_in(tree: ast.AST, module: str, prefix: str = "") -> list[Definition]:
    found: list[Definition] = []
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            kind = "class" if isinstance(child, ast.ClassDef) else "function"
            name = f"{prefix}{child.name}"
            found.append(Definition(kind, f"{module}:{name}", child.end_lineno - child.lineno + 1))
            found.extend(_definitions_in(child, module, f"{name}."))
    return found


def definitions() -> list[Definition]:
    return [definition for path in product_files()
            for definition in _definitions_in(ast.parse(path.read_text(encoding="utf-8")), module_name(path))]


def longest(kind: str, count: int = 3) -> list[Definition]:
    return sorted((d for d in definitions() if d.kind == kind), key=lambda d: -d.lines)[:count]


def tools_tree() -> dict[str, list[str]]:
    """Each package of tools/ (and "." for the top) with its modules."""
    tree: dict[str, list[str]] = defaultdict(list)
    for path in sorted((REPO / "tools").rglob("*.py")):
        folder = path.parent.relative_to(REPO / "tools").as_posix()
        tree[folder].append(path.name)
    return dict(tree)


def node_lengths() -> dict[str, int]:
    """The lines of each node of the graph: the functions of graphs/nodes/ called with (state, runtime)."""
    lengths: dict[str, int] = {}
    for path in sorted((REPO / "graphs" / "nodes").glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and [a.arg for a in node.args.args[:2]] == ["state", "runtime"]:
                lengths[f"{module_name(path)}:{node.name}"] = node.end_lineno - node.lineno + 1
    return lengths


if __name__ == "__main__":
    graph = import_graph()
    lines = sum(len(path.read_text(encoding="utf-8").splitlines()) for path in product_files())
    print(json.dumps({"architecture": "import graph", "modules": len(graph), "lines": lines,
                      "imports": sum(map(len, graph.values())), "module_cycles": cycles(graph),
                      "package_cycles": package_cycles(graph), "upward_imports": upward_imports(graph)}))
    print(json.dumps({"architecture": "tools tree", "top_level_modules": len(tools_tree()["."]),
                      "tree": tools_tree()}))
    for kind in ("function", "class"):
        print(json.dumps({"architecture": f"longest {kind}s" if kind == "function" else "longest classes",
                          "top": [(d.name, d.lines) for d in longest(kind, 5)]}))
    print(json.dumps({"architecture": "node functions", "lines": node_lengths()}))
