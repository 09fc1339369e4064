"""The package's shape: its modules import each other without cycles and
never back up through the package itself."""
import ast
import os

import fastsgd

PKG = os.path.dirname(fastsgd.__file__)


def _imports():
    edges = {}
    for name in os.listdir(PKG):
        if not name.endswith(".py"):
            continue
        mod = name[:-3]
        deps = set()
        for node in ast.walk(ast.parse(open(os.path.join(PKG, name)).read())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps.update([node.module.split(".")[0]] if node.module
                            else [a.name for a in node.names])
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and \
                    (node.module or "").split(".")[0] == "fastsgd":
                deps.add("fastsgd" if node.module == "fastsgd" else node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                deps.update("fastsgd" for a in node.names if a.name.split(".")[0] == "fastsgd")
        edges[mod] = deps
    return edges


def test_no_module_imports_the_package_back():
    upward = {m: sorted(d) for m, d in _imports().items() if "fastsgd" in d and m != "__init__"}
    assert upward == {}


def test_no_import_cycles():
    edges = _imports()

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for d in edges.get(todo.pop(), ()):
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    cycles = sorted(m for m in edges if m != "__init__" and m in reach(m))
    assert cycles == []


def test_public_api_type_hints_resolve():
    import typing
    for f in (fastsgd.Sequential.__init__, fastsgd.Sequential.predict,
              fastsgd.Sequential.set_weights, fastsgd.Dense.__init__, fastsgd.Rescaling.__init__,
              fastsgd.Trainer.__init__, fastsgd.Trainer.fit, fastsgd.Trainer.evaluate,
              fastsgd.Trainer.partial_fit, fastsgd.SGD.__init__, fastsgd.Optimizer.step):
        hints = typing.get_type_hints(f)
        assert "return" in hints, f.__qualname__
    assert os.path.exists(os.path.join(PKG, "py.typed"))
    for mod in ("_config", "_core", "_ops", "_net"):
        assert os.path.exists(os.path.join(PKG, f"{mod}.pyi")), mod
