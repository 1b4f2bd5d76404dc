"""The package's Python modules import one another without a cycle.

Every import counts, the ones inside functions too: a lazy import is still
a cycle in the layering.  The layers below ``tornado_cgen.ioloop`` reach it
through the registration in ``tornado_cgen.loop`` instead.
"""
import ast
import pathlib

import tornado_cgen

PKG = pathlib.Path(tornado_cgen.__file__).parent
MODULES = {p.stem: p for p in PKG.glob("*.py")
           if p.stem not in ("__init__", "__main__")}


def _imports(path):
    """The sibling modules ``path`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module is None:
                names = [a.name for a in node.names]
            elif node.level == 1:
                names = [node.module.split(".")[0]]
            elif node.level == 0 and node.module and \
                    node.module.startswith("tornado_cgen."):
                names = [node.module.split(".")[1]]
            elif node.level == 0 and node.module == "tornado_cgen":
                names = [a.name for a in node.names]
            else:
                names = []
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names
                     if a.name.startswith("tornado_cgen.")]
        else:
            continue
        found.update(n for n in names if n in MODULES)
    return found


def test_no_import_cycle():
    graph = {name: _imports(path) for name, path in MODULES.items()}
    # Depth-first search for a back edge, reporting the cycle it closes.
    state = {}

    def visit(name, stack):
        state[name] = "open"
        for dep in sorted(graph[name]):
            if state.get(dep) == "open":
                cycle = stack[stack.index(dep):] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, stack + [dep])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_layers():
    # loop <- concurrent <- gen <- ioloop, each using those below it.
    assert "ioloop" not in _imports(MODULES["loop"])
    assert {"gen", "loop", "concurrent"} <= _imports(MODULES["ioloop"])
    assert "ioloop" not in _imports(MODULES["gen"])
    assert "ioloop" not in _imports(MODULES["concurrent"])
