"""The package's layers point down only: no import circle inside celery_queue_exporter, and no
module imports from a layer above its own. Pure: reads the source with ``ast``, imports nothing.

Every import counts: module-level and function-local, relative and absolute, and importing
``a.b.c`` counts as importing the packages ``a`` and ``a.b`` too (Python runs their
``__init__``). Imports under ``if TYPE_CHECKING:`` are never executed and are left out of the
circle and layer checks; the one that points up (BrokerConfig names the Transport it carries)
is listed in TYPE_ONLY_UPWARD, so no other can creep in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "celery_queue_exporter"
ROOT = Path(__file__).resolve().parents[1] / "exporter" / PACKAGE

#: Bottom first; a module belongs to the first layer one of whose prefixes it starts with.
#: The root package (``__init__``, version only) sits below everything.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("vocabulary", ("config", "catalogue", "snapshot", "families", "exposition", "deadline",
                    "headtracker", "headbounds", "static_labels", "instrumentation", "urgency",
                    "linefamily", "delayed_delivery")),
    ("event machinery", ("events.decode", "events.tracker", "events.workers", "events.consumer",
                         "events.state", "events")),
    ("brokers", ("brokers",)),
    ("assembly", ("config.brokers", "config.load", "config.parser", "config.docs",
                  "brokers.registry")),
    ("collectors and server", ("collector", "pressure", "events.collector", "shared_render",
                               "server", "cli", "__main__")),
)  # fmt: skip


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, type_only: bool = False) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under ``if TYPE_CHECKING:`` (unless
    ``type_only``)."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if not type_only and isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def _with_parents(name: str, importer: str, known: set[str]) -> set[str]:
    """``name`` and every enclosing package of it inside the package (not the root), less
    the importer's own enclosing packages (already initialised before the importer ran)."""
    pieces = name.split(".")
    names = {".".join(pieces[:i]) for i in range(2, len(pieces) + 1)}
    return {n for n in names if n in known and not importer.startswith(n + ".")}


def import_graph(type_only: bool = False) -> dict[str, set[str]]:
    """module -> the package's modules it imports (and so runs); with ``type_only``, those it
    names for type checkers as well."""
    files = {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}
    known = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), str(path)), type_only):
            if isinstance(node, ast.Import):
                bases = [alias.name for alias in node.names]
                candidates = bases
            else:
                if node.level:
                    anchor = here.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for candidate in candidates:
                if candidate.split(".")[0] == PACKAGE:
                    targets |= _with_parents(candidate, name, known)
        targets.discard(name)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the list of modules around it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def layer_of(module: str) -> int:
    """The index of the module's layer in LAYERS (-1 for the root package)."""
    short = module.removeprefix(PACKAGE).lstrip(".")
    if not short:
        return -1
    best: tuple[int, int] | None = None  # (prefix length, layer): the longest prefix wins
    for index, (_title, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = short == prefix or short.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    if best is None:
        raise AssertionError(f"{module}: in no layer of tests/test_layers.py LAYERS")
    return best[1]


def test_the_graph_sees_relative_absolute_and_function_local_imports() -> None:
    graph = import_graph()
    assert f"{PACKAGE}.config.errors" in graph[f"{PACKAGE}.config.values"]  # relative
    # importing a module runs its package first
    assert f"{PACKAGE}.config" in graph[f"{PACKAGE}.brokers.redis.options"]
    # function-local: the transports import their inspectors only when a broker needs one
    assert f"{PACKAGE}.brokers.redis.inspector" in graph[f"{PACKAGE}.brokers.redis"]


def test_find_cycle_reports_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_inside_the_package() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


#: Type-only imports (``if TYPE_CHECKING:``) that point up a layer: BrokerConfig's ``transport``
#: field is annotated with the Transport it carries (the interface of the broker layer).
TYPE_ONLY_UPWARD = {
    (f"{PACKAGE}.config.model", f"{PACKAGE}.brokers"),
    (f"{PACKAGE}.config.model", f"{PACKAGE}.brokers.base"),
}


def upward(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {
        (module, target)
        for module, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    }


def test_every_import_points_down_or_sideways() -> None:
    found = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, target in sorted(upward(import_graph()))
    ]
    assert found == []


def test_type_only_imports_point_up_only_where_listed() -> None:
    assert upward(import_graph(type_only=True)) == TYPE_ONLY_UPWARD


def test_urls_are_split_in_one_module() -> None:
    """config/urls.py parses a broker URL once (BrokerURL); no other module splits URLs."""
    callers = sorted(
        f"{module_name(path)}:{node.lineno}"
        for path in ROOT.rglob("*.py")
        if path != ROOT / "config" / "urls.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", None)) in {"urlsplit", "urlparse"}
    )
    assert callers == []


@pytest.mark.parametrize("name", ["__getattr__", "__setattr__", "__getattribute__"])
def test_no_attribute_magic_on_configuration_objects(name: str) -> None:
    """Configuration objects are plain: every field is declared where a reader (and a type
    checker) sees it."""
    for path in sorted((ROOT / "config").glob("*.py")) + sorted(ROOT.glob("brokers/*/options.py")):
        tree = ast.parse(path.read_text())
        defined = [
            f"{path.name}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.name == name
        ]
        assert defined == [], f"{name} defined in {defined}"
