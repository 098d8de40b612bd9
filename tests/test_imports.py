"""The package's modules import one way: no circle, at module level or inside functions.

The layers: files -> groups -> constraints -> questions / corrections / results; graph and neighbours -> ccn ->
discovery -> clustering -> runs -> cli and app; in the app, run_result -> teaching -> workbench.
"""

import ast
from pathlib import Path

import l2c_explorer

PACKAGE = Path(l2c_explorer.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package's modules ``path`` imports anywhere in it (module level and inside functions)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # imports for annotations only (``if TYPE_CHECKING:``) never run: they make no circle
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = ".".join(base[: len(base) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # "from . import runfile" imports a module; "from .x import name" imports x
            targets = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules] or [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # a name inside a module, or a submodule's parent
                target = target.rpartition(".")[0]
            if target and target != name and target != "l2c_explorer":
                found.add(target)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each strongly connected group of modules (Tarjan), as a path a -> ... -> a."""
    index, low, on_stack, stack, groups = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_the_import_graph_is_read_from_relative_and_absolute_imports():
    graph = import_graph()
    assert "l2c_explorer.constraints" in graph["l2c_explorer.questions"]  # from .constraints import ...
    assert "l2c_explorer.workbench" not in graph  # only modules of the package
    assert "l2c_explorer.app.teaching" in graph["l2c_explorer.app.workbench"]  # inside a method
    assert "l2c_explorer.similarity_model" not in graph["l2c_explorer.pretrained"]  # for annotations only


def test_the_core_runs_one_way():
    graph = import_graph()
    assert "l2c_explorer.runs" not in graph["l2c_explorer.clustering"]
    assert "l2c_explorer.results" not in graph["l2c_explorer.constraints"]
    assert "l2c_explorer.questions" not in graph["l2c_explorer.constraints"]
    assert "l2c_explorer.app.workbench" not in graph["l2c_explorer.app.teaching"]
    for step in ("sources", "ccn", "discovery", "assignment", "groups", "corrections", "runfile", "planning"):
        assert "l2c_explorer.clustering" not in graph[f"l2c_explorer.{step}"], step


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back():
    assert cycles(import_graph()) == []
