"""The package's import graph, read with ``ast`` (every import, also those inside functions):
no cycle, and no import from a lower layer to a higher one (docs/architecture.md,
'Dependencies point one way')."""
import ast
import os
from typing import Dict, List, Set

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "clinfonce_plugin")
PACKAGE = "clinfonce_plugin"

# layer of each top-level part, lowest first; a module may import its own layer or lower
LAYERS = {
    "errors": 0, "utils": 0,
    "losses": 1, "metrics": 1, "clusters": 1,
    "config": 2,
    "host": 3,
    "augment": 4, "data": 4,
    "methods": 5,
    "run": 6,
    "evaluate": 7,
    # the commands: the package itself (""), the entry wrapper, `python -m` commands, and the
    # study (`python -m clinfonce_plugin.study`), which runs pretraining and evaluations
    "cli": 8, "zoo": 8, "select_k": 8, "plot_embedding": 8, "study": 8, "": 8,
}
# the top level keeps the registration (__init__), the errors a caller catches, the hydra
# entry wrapper of main_*.py, and the `python -m clinfonce_plugin.<command>` commands
TOP_LEVEL_MODULES = {"__init__", "errors", "cli", "zoo", "select_k", "plot_embedding"}


def module_files(root: str = ROOT) -> Dict[str, str]:
    """{dotted module name: file} of every module of the package."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(root))[:-3].replace(os.sep, ".")
                out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return out


def import_graph(modules: Dict[str, str]) -> Dict[str, Set[str]]:
    """{module: the package modules it imports}: ``from X import y`` counts as an import of
    the submodule X.y when there is one, else of X."""
    graph: Dict[str, Set[str]] = {}
    for name, path in modules.items():
        package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
        targets: Set[str] = set()
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1]
                                    + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The cycles met by a depth-first walk (each as the list of its modules, closed)."""
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def part(module: str) -> str:
    """The top-level part a module belongs to ("" for the package's own __init__)."""
    return module[len(PACKAGE) + 1:].split(".")[0] if module != PACKAGE else ""


def upward_imports(graph: Dict[str, Set[str]]) -> List[str]:
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if LAYERS[part(b)] > LAYERS[part(a)])


# ----------------------------------------------------------------- the checks themselves
def test_every_part_of_the_package_has_a_layer():
    parts = {part(m) for m in module_files()}
    assert parts - set(LAYERS) == set(), "give each new subpackage or module a layer here"


def test_the_top_level_keeps_only_registration_errors_and_commands():
    top = {name[:-3] for name in os.listdir(ROOT) if name.endswith(".py")}
    assert top == TOP_LEVEL_MODULES


def test_every_folder_is_a_regular_package():
    # setup.py's find_packages installs only folders with an __init__.py
    folders = [folder for folder, _, files in os.walk(ROOT)
               if "__pycache__" not in folder and any(f.endswith(".py") for f in files)]
    assert [f for f in folders if not os.path.isfile(os.path.join(f, "__init__.py"))] == []


def test_the_import_graph_has_no_cycle():
    assert cycles(import_graph(module_files())) == []


def test_no_import_goes_from_a_lower_layer_to_a_higher_one():
    assert upward_imports(import_graph(module_files())) == []


def test_losses_metrics_and_clusters_never_import_methods_run_or_evaluate():
    graph = import_graph(module_files())
    low = [m for m in graph if part(m) in ("losses", "metrics", "clusters")]
    assert low  # the walk found them
    reached = {b for a in low for b in graph[a]}
    assert not {b for b in reached if part(b) in ("methods", "run", "evaluate", "host")}


# ----------------------------------------------------------------- the walker on known cases
def _write(tmp_path, files: Dict[str, str]) -> str:
    root = tmp_path / PACKAGE
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root)


def test_the_walker_finds_a_cycle_through_a_function_level_import(tmp_path):
    root = _write(tmp_path, {
        "__init__.py": "",
        "evaluate/__init__.py": "",
        "evaluate/a.py": "from .b import f\n",
        "evaluate/b.py": "def f():\n    from .c import g\n",
        "evaluate/c.py": "from clinfonce_plugin.evaluate import a\n",
    })
    found = cycles(import_graph(module_files(root)))
    assert found == [["clinfonce_plugin.evaluate.a", "clinfonce_plugin.evaluate.b",
                      "clinfonce_plugin.evaluate.c", "clinfonce_plugin.evaluate.a"]]


def test_the_walker_finds_an_upward_import(tmp_path):
    root = _write(tmp_path, {
        "__init__.py": "",
        "losses/__init__.py": "",
        "losses/x.py": "from ..methods.m import M\nfrom ..utils import u\n",
        "methods/__init__.py": "",
        "methods/m.py": "from ..losses.x import y\n",
        "utils/__init__.py": "",
        "utils/u.py": "",
    })
    graph = import_graph(module_files(root))
    assert graph["clinfonce_plugin.losses.x"] == {"clinfonce_plugin.methods.m",
                                                 "clinfonce_plugin.utils.u"}
    assert upward_imports(graph) == ["clinfonce_plugin.losses.x -> clinfonce_plugin.methods.m"]


@pytest.mark.parametrize("text, target", [
    ("from .. import host\n", "clinfonce_plugin.host"),
    ("from clinfonce_plugin import host\n", "clinfonce_plugin.host"),
    ("import clinfonce_plugin.host\n", "clinfonce_plugin.host"),
    ("from ..host import METHODS\n", "clinfonce_plugin.host"),
])
def test_the_walker_resolves_each_import_form(tmp_path, text, target):
    root = _write(tmp_path, {"__init__.py": "", "host/__init__.py": "METHODS = {}\n",
                             "run/__init__.py": "", "run/r.py": text})
    assert import_graph(module_files(root))["clinfonce_plugin.run.r"] == {target}
