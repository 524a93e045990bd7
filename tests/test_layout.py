"""The layout of fnet/: one home per concept, imports that never run in a circle, short functions.

Every import in a file counts: at the top, inside functions, under ``TYPE_CHECKING``.
``from fnet.graph import draw`` imports the module ``fnet.graph.draw``; a module's own
package ``__init__`` (which Python runs first) is not an edge.

Nothing here lists modules by hand. The floors are computed from the imports: a module
stands one floor above the highest module it imports, and the same holds for the
concepts of the top level (``fnet.train``, ``fnet.layers``, ``fnet.core``, ...), each
package taken as one. An import circle, between modules or between concepts, is what
would make an import run upwards, and is what the tests reject. ``docs/layout.md``
describes every concept; a test checks that it names exactly the ones there are.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

from script_runner import ROOT

FNET = ROOT / "fnet"
FACE = "fnet"  # the package face imports every concept: it is no concept itself


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


def concept(module: str) -> str:
    """The top-level concept a module belongs to: ``fnet.train.loop`` -> ``fnet.train``."""
    return ".".join(module.split(".")[:2])


CONCEPTS = sorted({concept(m) for m in MODULES} - {FACE})
CONCEPT_GRAPH = {c: {concept(d) for m in MODULES if concept(m) == c for d in GRAPH[m]} - {c, FACE}
                 for c in CONCEPTS}


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """An import circle of ``graph`` (``[a, b, a]``), or ``None``."""
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return [*stack[stack.index(d):], d]
            if d not in state and (found := visit(d, [*stack, d])):
                return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m, [m])):
            return found
    return None


def floors(graph: dict[str, set[str]]) -> dict[str, int]:
    """Each node's floor: 0 for one that imports nothing of ``graph``, else one above its highest import."""
    memo: dict[str, int] = {}

    def floor(m):
        if m not in memo:
            memo[m] = 1 + max((floor(d) for d in graph[m] if d in graph), default=-1)
        return memo[m]

    return {m: floor(m) for m in graph}


def test_no_import_circle_between_modules():
    circle = _circle(GRAPH)
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_no_import_circle_between_concepts():
    # a package is one concept: fnet.train importing fnet.cli and fnet.cli importing fnet.train would be
    # a circle even if no two modules import each other
    circle = _circle(CONCEPT_GRAPH)
    assert circle is None, "concepts that import each other: " + " -> ".join(circle)


def test_the_floors_rise_from_the_protocol_to_the_command_line():
    floor = floors(CONCEPT_GRAPH)
    assert floor["fnet.errors"] == 0
    assert floor["fnet.core"] < floor["fnet.combinators"] < floor["fnet.models"] < floor["fnet.train"]
    assert floor["fnet.train"] < floor["fnet.cli"] == max(floor.values())
    # chapter 5's graph (nodes, tape, pictures) stands apart from the layer protocol
    assert not {"fnet.core", "fnet.layers", "fnet.combinators"} & _reaches("fnet.graph")


def _reaches(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for d in CONCEPT_GRAPH[todo.pop()]:
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_the_top_level_holds_concepts_not_pieces_of_the_training_loop():
    # the training loop's pieces live in fnet/train/, the command line's in fnet/cli/
    pieces = {"epoch", "loop", "programs", "fit_checks", "stopping", "cli_options", "cli_models", "cli_use",
              "summary", "init", "draw", "tape"}
    top = {p.stem for p in FNET.glob("*.py")}
    assert not pieces & top, sorted(pieces & top)


def test_layout_md_describes_every_concept():
    text = (ROOT / "docs" / "layout.md").read_text(encoding="utf-8")
    named = set(re.findall(r"^\| `fnet/([\w/]+?)(?:\.py|/)` \|", text, re.M))
    there = {c.removeprefix("fnet.") for c in CONCEPTS}
    assert named == there, (f"docs/layout.md: describe {sorted(there - named)}; "
                            f"remove {sorted(named - there)}")


def test_every_module_imports_on_its_own():
    # one process; before each import every fnet module is forgotten, so each is imported first
    script = (
        "import importlib, sys\n"
        f"for name in {sorted(MODULES)!r}:\n"
        "    for m in [m for m in sys.modules if m == 'fnet' or m.startswith('fnet.')]:\n"
        "        del sys.modules[m]\n"
        "    importlib.import_module(name)\n"
        "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_import_fnet_leaves_the_training_wing_for_its_first_use():
    script = ("import sys, fnet\n"
              "assert 'fnet.train' not in sys.modules and 'fnet.cli' not in sys.modules\n"
              "assert callable(fnet.train.fit) and fnet.checkpoint.load and fnet.language_model.sample\n"
              "assert 'train' in dir(fnet)\n"
              "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


# ----------------------------------------------------------------------------- function length

LIMIT = 60
TABLES = {
    ("fnet.cli.options", "build_parser"): "the table of fnet-train's options, one add_argument each",
}
"""Functions that may be longer than ``LIMIT``: tables, one entry per line."""


def own_lines(fn: ast.FunctionDef) -> int:
    """A function's lines without its docstring and without the functions defined inside it
    (each of those is measured on its own: a layer's forward and backward are functions)."""
    lines = fn.end_lineno - fn.lineno + 1
    if ast.get_docstring(fn, clean=False) is not None:
        lines -= fn.body[0].end_lineno - fn.body[0].lineno + 1

    def inner(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                yield child
            else:
                yield from inner(child)

    return lines - sum(f.end_lineno - f.lineno + 1 for f in inner(fn))


def _functions():
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield name, node


def test_no_function_is_longer_than_a_screen():
    long = {f"{m}.{fn.name}": own_lines(fn) for m, fn in _functions()
            if own_lines(fn) > LIMIT and (m, fn.name) not in TABLES}
    assert not long, f"functions over {LIMIT} lines (split them by what they do): {long}"
    assert all(any(m == mod and fn.name == f for mod, fn in _functions()) for m, f in TABLES), "stale TABLES"


def test_the_training_wing_passes_one_record_not_loose_keywords():
    # fit is the public entry point and takes the user's keywords; past it, the run's settings travel
    # as one record (fnet.train.settings.Settings), so no function takes more than ~8 other parameters
    many = {}
    for m, fn in _functions():
        if not m.startswith("fnet.train.") or fn.name == "fit":
            continue
        a = fn.args
        names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)
                 if x.arg not in ("self", "run", "settings")]
        if len(names) > 9:
            many[f"{m}.{fn.name}"] = len(names)
    assert not many, f"functions of fnet.train with more than 9 parameters beside the record: {many}"
