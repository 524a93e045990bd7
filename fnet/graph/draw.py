"""Drawing a recorded computation (``fnet.graph.Tape``) as the book draws it.

Each node is a circle with its operation symbol (``×``, ``+``, ``exp``); each
input is its name at the start of an arrow. A black arrow runs forward, left
to right, labelled with the value it carries; beneath it a red arrow runs
backward, labelled with the gradient passed back along it (after
``Tape.backward``). The output's arrow carries the seed, ``1``.

The drawing is Graphviz DOT text, made here as plain text; turning it into
SVG, PNG or PDF needs the Graphviz program ``dot`` (Debian/Ubuntu package
``graphviz``), run as a subprocess by ``render``.

``draw_network(net, input_shape)`` draws a network's layers instead (Figure
5-29 of the book): boxes, the shapes flowing forward and back, and the
``repeat``, ``+`` and ``concat`` nodes where the network branches.

The DOT text is regular, so tests and tools can read it: node ids are
``"input:<name>"``, ``"op:<step>"``, ``"const:<step>:<slot>"`` and
``"output"``; each connection is one line ``A -> B [label=...]`` for the
forward value and, after backward, one line ``A -> B [dir=back, ...,
label=...]`` for the gradient.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fnet.core import Layer, check_shape, output_shape


class Recording(Protocol):
    """What drawing needs of a recording (``fnet.graph.Tape`` has it).

    ``steps``: the node applications in order, each with ``node`` (its ``symbol``),
    ``inputs`` (an int index into ``vars`` or a constant with a ``value``),
    ``static`` and ``out``; ``vars``: every value, each with ``index``, ``name``
    and ``value``; ``inputs``: the named inputs; ``output``: the value backward
    started from (``None`` before it); ``grad(var)`` and ``edge_grad(step, slot)``:
    the gradients of the last backward pass.
    """

    @property
    def steps(self) -> Sequence[Any]: ...
    @property
    def vars(self) -> Sequence[Any]: ...
    @property
    def inputs(self) -> Mapping[str, Any]: ...
    @property
    def output(self) -> Any: ...
    def grad(self, var: Any) -> Any: ...
    def edge_grad(self, step: int, slot: int) -> Any: ...

FORMATS = ("svg", "png", "pdf")
"""What ``render`` asks ``dot`` for; ``.dot`` and ``.gv`` are written as text."""

GRADIENT_COLOR = "#d62728"
FONT = "Helvetica"


def format_value(value, precision: int = 4) -> str:
    """A value as the book writes it: ``220``, ``2.2``, ``1.1``; small arrays in brackets.

    ``precision`` significant digits, so float rounding (``220.00000000000003``)
    does not show. Arrays of more than 4 entries show their dtype and shape.
    """
    a = np.asarray(value)
    if a.ndim == 0:
        return _number(a.item(), precision)
    if a.size <= 4:
        return "[" + " ".join(_number(v, precision) for v in a.ravel().tolist()) + "]"
    return f"{a.dtype.name}[{','.join(map(str, a.shape))}]"


def _number(v, precision: int) -> str:
    if isinstance(v, bool):
        return str(v)
    return f"{v:.{precision}g}"


def to_dot(tape: Recording, *, title: str | None = None, precision: int = 4) -> str:
    """The tape's graph as DOT text, left to right, in the book's style (module docstring)."""
    lines = [f"digraph {_quote(title or 'tape')} {{",
             "  rankdir=LR;",
             "  ordering=in;",
             "  nodesep=0.5;",
             "  ranksep=0.9;",
             f'  node [fontname="{FONT}", fontsize=14];',
             f'  edge [fontname="{FONT}", fontsize=12, arrowsize=0.7];']
    if title:
        lines.append(f'  labelloc=t; label={_quote(title)}; fontname="{FONT}";')
    producer = {step.out: f"op:{i}" for i, step in enumerate(tape.steps)}
    uses: dict[int, int] = {}
    for step in tape.steps:
        for ref in step.inputs:
            if isinstance(ref, int):
                uses[ref] = uses.get(ref, 0) + 1
    for name, var in tape.inputs.items():
        label = _quote(name)
        if uses.get(var.index, 0) > 1 and tape.output is not None:
            # used more than once: show where its gradients add up
            total = format_value(tape.grad(var), precision)
            label = f'<{_html(name)}<br/><font color="{GRADIENT_COLOR}">&#931; {_html(total)}</font>>'
        lines.append(f"  {_quote('input:' + name)} [shape=plaintext, label={label}];")
        producer[var.index] = f"input:{name}"
    for i, step in enumerate(tape.steps):
        symbol = step.node.symbol
        if step.static:
            symbol += " " + " ".join(map(str, step.static))
        if len(symbol) == 1:  # × + /: drawn large, as in the book
            size = "width=0.5, fixedsize=true, fontsize=20"
        elif len(symbol) <= 3:  # exp log sum: circles of one size
            size = "width=0.75, fixedsize=true"
        else:  # "repeat 3": the circle grows to fit
            size = "margin=0.02"
        lines.append(f"  {_quote(f'op:{i}')} [shape=circle, label={_quote(symbol)}, {size}];")
    for i, step in enumerate(tape.steps):
        head = f"op:{i}"
        for slot, ref in enumerate(step.inputs):
            if isinstance(ref, int):
                lines.extend(_edges(producer[ref], head, tape.vars[ref].value, tape.edge_grad(i, slot),
                                    precision))
            else:
                # a constant is labelled with its value and, as in the book, gets no gradient
                tail = _quote(f"const:{i}:{slot}")
                label = _quote(format_value(ref.value, precision))
                lines.append(f"  {tail} [shape=plaintext, label={label}];")
                lines.append(f"  {tail} -> {_quote(head)};")
    out = tape.output
    if out is not None:
        lines.append(f"  \"output\" [shape=plaintext, label={_quote(out.name or '')}];")
        lines.extend(_edges(producer[out.index], "output", out.value, tape.grad(out), precision))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _edges(tail: str, head: str, value, grad, precision: int) -> list[str]:
    edge = f"  {_quote(tail)} -> {_quote(head)}"
    lines = [f"{edge} [label={_quote(format_value(value, precision))}];"]
    if grad is not None:
        lines.append(f"{edge} [dir=back, color=\"{GRADIENT_COLOR}\", fontcolor=\"{GRADIENT_COLOR}\", "
                     f"label={_quote(format_value(grad, precision))}];")
    return lines


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot_program() -> str | None:
    """The path of Graphviz's ``dot``, or ``None`` if it is not installed."""
    return shutil.which("dot")


tape_to_dot = to_dot  # the name of fnet 0.1's first release


def render(graph: Recording | str, path: str | Path, fmt: str | None = None, *, title: str | None = None,
           precision: int = 4) -> Path:
    """Write a drawing to ``path``, as DOT text or drawn by Graphviz.

    ``graph`` is a recording (a ``Tape``; ``title`` and ``precision`` go to
    ``to_dot``) or DOT text itself. ``fmt`` defaults to the suffix of ``path``:
    ``dot``/``gv`` write the text (no Graphviz needed); ``svg``, ``png``,
    ``pdf`` run ``dot -T<fmt>``.

    **Raises:** ``RuntimeError`` if ``dot`` is needed but missing (the message
    names the Debian package ``graphviz``) or fails; ``ValueError`` for an
    unknown format.
    """
    path = Path(path)
    dot_text = graph if isinstance(graph, str) else to_dot(graph, title=title, precision=precision)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt in ("dot", "gv"):
        path.write_text(dot_text, encoding="utf-8")
        return path
    if fmt not in FORMATS:
        raise ValueError(f"render: unknown format {fmt!r} for {path}; use .dot/.gv text or one of "
                         f"{', '.join('.' + f for f in FORMATS)}")
    dot = dot_program()
    if dot is None:
        raise RuntimeError(f"render: drawing {path.name} needs the Graphviz program 'dot', which is not "
                           "installed; install the Debian/Ubuntu package graphviz (apt-get install "
                           "graphviz), or write DOT text instead (a .dot path)")
    proc = subprocess.run([dot, f"-T{fmt}", "-o", str(path)], input=dot_text.encode("utf-8"),
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"render: dot -T{fmt} failed for {path}: "
                           f"{proc.stderr.decode('utf-8', 'replace').strip()}")
    return path


# --------------------------------------------------------------------------- a network's layers


def draw_network(net: Layer, input_shape: tuple, *, title: str | None = None, rankdir: str = "LR") -> str:
    """A network's layer graph as DOT text, as the book draws Figure 5-29.

    One box per layer (its key path and kind); the arrows carry, above, the
    shape of the value flowing forward and, below in red, the shape of the
    gradient flowing back (``dL/dx`` has ``x``'s shape). Where a value fans out
    to several layers a ``repeat`` node is drawn (its backward adds the
    gradients up: ``Σ``); where branches merge, a ``+`` node (its backward passes
    the gradient to each branch) or a ``concat`` node (its backward splits it).
    Combinators below the top are dashed frames labelled with their key and kind.

    The graph comes from the combinators' ``Layer.wiring``; a combinator without
    one is drawn as a single box. ``input_shape`` as for ``init``, e.g.
    ``(None, 784)``; ``rankdir``: ``"LR"`` (left to right) or ``"TB"`` (top to
    bottom, for deep networks). ``render(dot_text, "net.svg")`` draws it.
    """
    if rankdir not in ("LR", "TB"):
        raise ValueError(f"draw_network: rankdir must be 'LR' or 'TB', got {rankdir!r}")
    shape = check_shape(input_shape, "draw_network")
    g = _NetGraph()
    x = g.value("input", shape)
    g.node("input", "plaintext", "x", ())
    y = _NetWalk(g, net, "", ()).run(x) if net.children and net.wiring else g.layer(net, net.name, (), x)
    g.node("output", "plaintext", "y", ())
    g.consume(y, "output")
    return g.dot(title or "network", rankdir)


class _NetGraph:
    """The nodes and connections of a network drawing, collected before any DOT is written."""

    def __init__(self):
        self.nodes: list[tuple[str, str, str, tuple]] = []  # (id, shape, label, frames)
        self.frames: dict[tuple, str] = {}  # frame path -> label
        self.values: list[dict] = []  # each: producer node id, shape, consumers
        self.count = 0

    def value(self, producer: str, shape) -> int:
        self.values.append({"producer": producer, "shape": tuple(shape), "consumers": []})
        return len(self.values) - 1

    def node(self, node_id: str, kind: str, label: str, frames: tuple) -> None:
        self.nodes.append((node_id, kind, label, frames))

    def consume(self, value: int, node_id: str) -> None:
        self.values[value]["consumers"].append(node_id)

    def layer(self, layer: Layer, path: str, frames: tuple, x: int) -> int:
        node_id = f"layer:{path}"
        key = path.rpartition("/")[2]
        self.node(node_id, "box", key if key == layer.name else f"{key}\n{layer.name}", frames)
        self.consume(x, node_id)
        return self.value(node_id, output_shape(layer, self.values[x]["shape"]))

    def merge(self, symbol: str, xs: tuple, frames: tuple, shape) -> int:
        self.count += 1
        node_id = f"{symbol}:{self.count}"
        self.node(node_id, "circle", symbol, frames)
        for x in xs:
            self.consume(x, node_id)
        return self.value(node_id, shape)

    def dot(self, title: str, rankdir: str) -> str:
        edges: list[tuple[str, str, tuple, str]] = []  # (tail, head, shape, gradient prefix)
        for i, v in enumerate(self.values):
            tail, consumers = v["producer"], v["consumers"]
            if len(consumers) > 1:  # a fan-out: the repeat node, whose backward sums the gradients
                where = [next(f for n, _, _, f in self.nodes if n == c) for c in consumers]
                common = ()  # the innermost frame holding every branch
                while len(common) < min(map(len, where)) and all(f[len(common)] == where[0][len(common)]
                                                                 for f in where):
                    common = where[0][: len(common) + 1]
                self.node(f"repeat:{i}", "circle", "repeat", common)
                edges.append((tail, f"repeat:{i}", v["shape"], "Σ "))
                tail = f"repeat:{i}"
            edges += [(tail, head, v["shape"], "") for head in consumers]
        lines = [f"digraph {_quote(title)} {{", f"  rankdir={rankdir};", "  nodesep=0.4;", "  ranksep=0.5;",
                 f'  node [fontname="{FONT}", fontsize=12];',
                 f'  edge [fontname="{FONT}", fontsize=10, arrowsize=0.6];',
                 f'  labelloc=t; label={_quote(title)}; fontname="{FONT}";']
        lines += self._frame((), "  ")
        for tail, head, shape, prefix in edges:
            text = _shape_text(shape)
            edge = f"  {_quote(tail)} -> {_quote(head)}"
            lines.append(f"{edge} [label={_quote(text)}];")
            lines.append(f"{edge} [dir=back, color=\"{GRADIENT_COLOR}\", fontcolor=\"{GRADIENT_COLOR}\", "
                         f"label={_quote(prefix + text)}];")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _frame(self, frame: tuple, indent: str) -> list[str]:
        lines = []
        for node_id, kind, label, frames in self.nodes:
            if frames == frame:
                size = ", width=0.45, fixedsize=true, fontsize=16" if label == "+" else (
                    ", margin=0.03" if kind == "circle" else "")
                style = ', style="rounded"' if kind == "box" else ""
                text = "\\n".join(_quote(part)[1:-1] for part in label.split("\n"))  # DOT's line break
                lines.append(f'{indent}{_quote(node_id)} [shape={kind}, label="{text}"{style}{size}];')
        for sub, label in self.frames.items():
            if len(sub) == len(frame) + 1 and sub[:-1] == frame:
                lines.append(f"{indent}subgraph {_quote('cluster_' + '/'.join(sub))} {{")
                lines.append(f'{indent}  label={_quote(label)}; style=dashed; color="#888888"; '
                             f'fontcolor="#555555";')
                lines += self._frame(sub, indent + "  ")
                lines.append(f"{indent}}}")
        return lines


class _NetWalk:
    """``fnet.core.Wiring`` over a drawing: ``call`` draws the child, ``add``/``concat`` the merge nodes."""

    def __init__(self, g: _NetGraph, layer: Layer, prefix: str, frames: tuple):
        self.g, self.layer, self.prefix, self.frames = g, layer, prefix, frames
        self.children = dict(layer.children)

    def run(self, x: int) -> int:
        return self.layer.wiring(self, x)

    def call(self, key, x):
        child, path = self.children[key], self.prefix + key
        if child.children and child.wiring:
            frames = (*self.frames, key)
            self.g.frames[frames] = f"{path} ({child.name})"
            return _NetWalk(self.g, child, f"{path}/", frames).run(x)
        return self.g.layer(child, path, self.frames, x)

    def add(self, *xs):
        return self.g.merge("+", xs, self.frames, self.g.values[xs[0]]["shape"])

    def concat(self, *xs):
        shapes = [self.g.values[x]["shape"] for x in xs]
        return self.g.merge("concat", xs, self.frames, (*shapes[0][:-1], sum(s[-1] for s in shapes)))

    def each_step(self, key, x):
        """One box for the child run on every time step (its inside is not drawn)."""
        child, path = self.children[key], self.prefix + key
        n, t, *rest = self.g.values[x]["shape"]
        out = output_shape(child, (None if n is None or t is None else n * t, *rest))
        node_id = f"layer:{path}"
        self.g.node(node_id, "box", f"{key}\neach time step ({child.name})", self.frames)
        self.g.consume(x, node_id)
        return self.g.value(node_id, (n, t, *out[1:]))


def _shape_text(shape) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"
