"""Drawing a recorded computation (``fnet.graph.Tape``) as the book draws it.

Each node is a circle with its operation symbol (``×``, ``+``, ``exp``); each
input is its name at the start of an arrow. A black arrow runs forward, left
to right, labelled with the value it carries; beneath it a red arrow runs
backward, labelled with the gradient passed back along it (after
``Tape.backward``). The output's arrow carries the seed, ``1``.

The drawing is Graphviz DOT text, made here as plain text; turning it into
SVG, PNG or PDF needs the Graphviz program ``dot`` (Debian/Ubuntu package
``graphviz``), run as a subprocess by ``render``.

A network's layers are drawn by ``fnet.views.draw_network``, with the same
style (``GRADIENT_COLOR``, ``FONT``) and quoting (``quote``).

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
    lines = [f"digraph {quote(title or 'tape')} {{",
             "  rankdir=LR;",
             "  ordering=in;",
             "  nodesep=0.5;",
             "  ranksep=0.9;",
             f'  node [fontname="{FONT}", fontsize=14];',
             f'  edge [fontname="{FONT}", fontsize=12, arrowsize=0.7];']
    if title:
        lines.append(f'  labelloc=t; label={quote(title)}; fontname="{FONT}";')
    producer = {step.out: f"op:{i}" for i, step in enumerate(tape.steps)}
    uses: dict[int, int] = {}
    for step in tape.steps:
        for ref in step.inputs:
            if isinstance(ref, int):
                uses[ref] = uses.get(ref, 0) + 1
    for name, var in tape.inputs.items():
        label = quote(name)
        if uses.get(var.index, 0) > 1 and tape.output is not None:
            # used more than once: show where its gradients add up
            total = format_value(tape.grad(var), precision)
            label = f'<{_html(name)}<br/><font color="{GRADIENT_COLOR}">&#931; {_html(total)}</font>>'
        lines.append(f"  {quote('input:' + name)} [shape=plaintext, label={label}];")
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
        lines.append(f"  {quote(f'op:{i}')} [shape=circle, label={quote(symbol)}, {size}];")
    for i, step in enumerate(tape.steps):
        head = f"op:{i}"
        for slot, ref in enumerate(step.inputs):
            if isinstance(ref, int):
                lines.extend(_edges(producer[ref], head, tape.vars[ref].value, tape.edge_grad(i, slot),
                                    precision))
            else:
                # a constant is labelled with its value and, as in the book, gets no gradient
                tail = quote(f"const:{i}:{slot}")
                label = quote(format_value(ref.value, precision))
                lines.append(f"  {tail} [shape=plaintext, label={label}];")
                lines.append(f"  {tail} -> {quote(head)};")
    out = tape.output
    if out is not None:
        lines.append(f"  \"output\" [shape=plaintext, label={quote(out.name or '')}];")
        lines.extend(_edges(producer[out.index], "output", out.value, tape.grad(out), precision))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _edges(tail: str, head: str, value, grad, precision: int) -> list[str]:
    edge = f"  {quote(tail)} -> {quote(head)}"
    lines = [f"{edge} [label={quote(format_value(value, precision))}];"]
    if grad is not None:
        lines.append(f"{edge} [dir=back, color=\"{GRADIENT_COLOR}\", fontcolor=\"{GRADIENT_COLOR}\", "
                     f"label={quote(format_value(grad, precision))}];")
    return lines


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def quote(text: str) -> str:
    """``text`` as a DOT string: in double quotes, with ``\\`` and ``"`` escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot_program() -> str | None:
    """The path of Graphviz's ``dot``, or ``None`` if it is not installed."""
    return shutil.which("dot")


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
