"""``draw_network(net, input_shape)``: a network's layers drawn as the book draws Figure 5-29.

Boxes for the layers, the shapes flowing forward above the arrows and the
gradients' shapes below them in red, and the ``repeat``, ``+`` and ``concat``
nodes where the network branches. The graph comes from each combinator's
``Layer.wiring`` (``fnet.core.Wiring``); the DOT text is written in the style of the
tape's pictures (``fnet.graph.draw``), whose ``render`` turns it into SVG.
"""

from __future__ import annotations

from fnet.core import (
    Layer,
    check_shape,
    concat_shape,
    fold_time,
    output_shape,
    param_shapes,
    unfold_time,
    wired_child,
)
from fnet.graph.draw import FONT, GRADIENT_COLOR, quote

__all__ = ["draw_network"]


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
        lines = [f"digraph {quote(title)} {{", f"  rankdir={rankdir};", "  nodesep=0.4;", "  ranksep=0.5;",
                 f'  node [fontname="{FONT}", fontsize=12];',
                 f'  edge [fontname="{FONT}", fontsize=10, arrowsize=0.6];',
                 f'  labelloc=t; label={quote(title)}; fontname="{FONT}";']
        lines += self._frame((), "  ")
        for tail, head, shape, prefix in edges:
            text = _shape_text(shape)
            edge = f"  {quote(tail)} -> {quote(head)}"
            lines.append(f"{edge} [label={quote(text)}];")
            lines.append(f"{edge} [dir=back, color=\"{GRADIENT_COLOR}\", fontcolor=\"{GRADIENT_COLOR}\", "
                         f"label={quote(prefix + text)}];")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _frame(self, frame: tuple, indent: str) -> list[str]:
        lines = []
        for node_id, kind, label, frames in self.nodes:
            if frames == frame:
                size = ", width=0.45, fixedsize=true, fontsize=16" if label == "+" else (
                    ", margin=0.03" if kind == "circle" else "")
                style = ', style="rounded"' if kind == "box" else ""
                text = "\\n".join(quote(part)[1:-1] for part in label.split("\n"))  # DOT's line break
                lines.append(f'{indent}{quote(node_id)} [shape={kind}, label="{text}"{style}{size}];')
        for sub, label in self.frames.items():
            if len(sub) == len(frame) + 1 and sub[:-1] == frame:
                lines.append(f"{indent}subgraph {quote('cluster_' + '/'.join(sub))} {{")
                lines.append(f'{indent}  label={quote(label)}; style=dashed; color="#888888"; '
                             f'fontcolor="#555555";')
                lines += self._frame(sub, indent + "  ")
                lines.append(f"{indent}}}")
        return lines


class _NetWalk:
    """``fnet.core.Wiring`` over a drawing: ``call`` draws the child, ``add``/``concat`` the merge nodes."""

    def __init__(self, g: _NetGraph, layer: Layer, prefix: str, frames: tuple):
        self.g, self.layer, self.prefix, self.frames = g, layer, prefix, frames

    def run(self, x: int) -> int:
        return self.layer.wiring(self, x)

    def child(self, key: str) -> Layer:
        return wired_child(self.layer, key, self.prefix.rstrip("/"))

    def call(self, key, x):
        child, path = self.child(key), self.prefix + key
        if child.children and child.wiring:
            frames = (*self.frames, key)
            self.g.frames[frames] = f"{path} ({child.name})"
            return _NetWalk(self.g, child, f"{path}/", frames).run(x)
        return self.g.layer(child, path, self.frames, x)

    def add(self, *xs):
        return self.g.merge("+", xs, self.frames, self.g.values[xs[0]]["shape"])

    def concat(self, *xs):
        return self.g.merge("concat", xs, self.frames, concat_shape([self.g.values[x]["shape"] for x in xs]))

    def transposed(self, key, x):
        """One box for the output layer that reuses the embedding ``key``'s table ``(V, D)``, transposed."""
        table, _ = param_shapes(self.child(key), (None, 1))
        node_id = f"layer:{self.prefix}{key}^T"
        self.g.node(node_id, "box", f"{key}^T\nthe table, transposed (tied)", self.frames)
        self.g.consume(x, node_id)
        return self.g.value(node_id, (*self.g.values[x]["shape"][:-1], table["W"].shape[0]))

    def each_step(self, key, x):
        """One box for the child run on every time step (its inside is not drawn)."""
        child, path = self.child(key), self.prefix + key
        shape = self.g.values[x]["shape"]
        out = output_shape(child, fold_time(shape))
        node_id = f"layer:{path}"
        self.g.node(node_id, "box", f"{key}\neach time step ({child.name})", self.frames)
        self.g.consume(x, node_id)
        return self.g.value(node_id, unfold_time(shape, out))


def _shape_text(shape) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"
