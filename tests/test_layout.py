"""The layout of fnet/: floors of modules with imports only downwards, no import circle, and size limits.

A module may import only modules of lower floors (docs/design.md, "Layout"). Imports
anywhere in a file count: at the top, inside functions, under ``TYPE_CHECKING``.
``from fnet.graph import draw`` imports the module ``fnet.graph.draw``; a module's own
package ``__init__`` (which Python runs first) is not an edge.
"""

import ast
import subprocess
import sys
from pathlib import Path

from script_runner import ROOT

FNET = ROOT / "fnet"

# floor -> modules. A new module gets a floor here (test_every_module_has_a_floor).
FLOORS = {
    0: ["fnet._args", "fnet._text", "fnet._trees", "fnet.data.datasets", "fnet.data.idx",
        "fnet.errors", "fnet.graph.draw", "fnet.train.augment"],
    1: ["fnet.checkpoint", "fnet.core", "fnet.data.locate", "fnet.distributed",
        "fnet.gradcheck.numerical", "fnet.gradcheck.report", "fnet.graph.nodes",
        "fnet.initializers", "fnet.layers._checks", "fnet.layers._spatial", "fnet.losses",
        "fnet.schedules", "fnet.shuffle"],
    2: ["fnet.combinators", "fnet.data.decoded", "fnet.data.downloader", "fnet.gradcheck.layer",
        "fnet.graph.tape", "fnet.layers._through_time", "fnet.layers.activations",
        "fnet.layers.affine", "fnet.layers.conv", "fnet.layers.dropout", "fnet.layers.embedding",
        "fnet.layers.normalization", "fnet.layers.pooling", "fnet.layers.shape", "fnet.net",
        "fnet.optim", "fnet.views.network", "fnet.views.summary"],
    3: ["fnet.data.loaders", "fnet.gradcheck", "fnet.graph", "fnet.language_model",
        "fnet.layers.recurrent", "fnet.metrics", "fnet.train.settings", "fnet.views"],
    4: ["fnet.data", "fnet.layers", "fnet.train.checks", "fnet.train.epoch", "fnet.train.evaluate",
        "fnet.train.stopping"],
    5: ["fnet.models", "fnet.train.loop", "fnet.train.programs"],
    6: ["fnet", "fnet.cli_models", "fnet.train.fit"],
    7: ["fnet.cli_options", "fnet.train"],
    8: ["fnet.cli_use"],
    9: ["fnet.cli"],
}
FLOOR = {m: f for f, mods in FLOORS.items() for m in mods}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(FNET.rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """The fnet modules ``name`` imports, anywhere in its file."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "fnet"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([node.module] if node.module else []))
            if base.split(".")[0] != "fnet":
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if sub in MODULES else base)
    return {m for m in found if m != name and not name.startswith(m + ".")}


GRAPH = {name: _imports(name) for name in MODULES}


def test_every_module_has_a_floor():
    missing, gone = sorted(set(MODULES) - set(FLOOR)), sorted(set(FLOOR) - set(MODULES))
    assert not missing and not gone, f"give these modules a floor in FLOORS: {missing}; remove these: {gone}"


def test_imports_go_only_down():
    upward = [f"{a} (floor {FLOOR[a]}) imports {b} (floor {FLOOR[b]})"
              for a, deps in GRAPH.items() for b in sorted(deps) if FLOOR[b] >= FLOOR[a]]
    assert not upward, "\n".join(upward)


def test_no_import_circle():
    # with floors strictly decreasing along every edge a circle is impossible; check it directly too
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for d in GRAPH[m]:
            if state.get(d) == 1:
                raise AssertionError("import circle: " + " -> ".join([*stack[stack.index(d):], d]))
            if d not in state:
                visit(d, [*stack, d])
        state[m] = 2

    for m in GRAPH:
        if m not in state:
            visit(m, [m])


def test_every_module_imports_on_its_own():
    # one process; before each import every fnet module is forgotten, so each is imported first
    script = (
        "import importlib, sys\n"
        f"for name in {sorted(MODULES)!r}:\n"
        "    for m in [m for m in sys.modules if m == 'fnet' or m.startswith('fnet.')]:\n"
        "        del sys.modules[m]\n"
        "    importlib.import_module(name)\n"
        "print('ok')\n")
    proc = subprocess.run([sys.executable, "-W", "ignore::DeprecationWarning", "-c", script], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_size_limits():
    assert _lines(ROOT / "scripts" / "bench.py") <= 300
    fit = next(n for n in ast.parse((FNET / "train" / "fit.py").read_text()).body
               if isinstance(n, ast.FunctionDef) and n.name == "fit")
    assert fit.end_lineno - fit.lineno + 1 <= 80, "fnet.train.fit should read top to bottom in one screen"
