"""A tape: record a small computation built from graph nodes, then backprop through the recording.

The book draws a computation as a graph and walks it twice: forward, left to
right, and backward, right to left, each node passing back its local
derivative times what it received. ``Tape`` records the forward walk so the
backward walk can be run for you and both can be drawn::

    g = Tape()
    apple, num, tax = g.input("apple", 100.0), g.input("apple_num", 2.0), g.input("tax", 1.1)
    price = g.apply(graph.mul, g.apply(graph.mul, apple, num), tax, name="price")
    g.backward(price)    # {"apple": 2.2, "apple_num": 110, "tax": 200} (as 0-d arrays)
    g.render("buy_apple.svg")

The nodes stay the pure pairs of ``fnet.graph.nodes``; the tape is a small Python
recorder for teaching and pictures (like micrograd's ``Value``), never used by
layers. It runs eagerly; it is not meant for ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from fnet.graph import draw
from fnet.graph.nodes import Node


@dataclasses.dataclass(frozen=True, eq=False)
class Var:
    """A value recorded on a tape: an input, or the result of a node.

    **Fields:** ``index`` (its position on the tape), ``name`` (always for
    inputs, optional for results), ``value`` (a JAX array).
    """

    tape: Tape = dataclasses.field(repr=False)
    index: int
    name: str | None
    value: jax.Array


@dataclasses.dataclass(frozen=True)
class Const:
    """A plain number or array given to ``Tape.apply`` in place of a ``Var`` (the ``-1`` of ``x * -1``)."""

    value: jax.Array


@dataclasses.dataclass(frozen=True)
class Step:
    """One recorded node application.

    **Fields:** ``node``; ``inputs``: for each array input, the index of the
    ``Var`` it read or a ``Const``; ``static``: the extra Python arguments
    (``repeat``'s count); ``out``: the index of the result ``Var``;
    ``cache``: what the node's forward returned for its backward.
    """

    node: Node
    inputs: tuple[int | Const, ...]
    static: tuple
    out: int
    cache: Any = dataclasses.field(repr=False)


class Tape:
    """A recorder of graph-node applications (see the module docstring).

    ``input`` and ``apply`` record; ``backward`` runs the backward pass from
    one output; ``to_dot`` and ``render`` draw the graph with forward values
    on the arrows and, after ``backward``, the gradients beneath them.
    """

    def __init__(self) -> None:
        self._vars: list[Var] = []
        self._steps: list[Step] = []
        self._inputs: dict[str, Var] = {}
        self._clear_backward()

    def _clear_backward(self) -> None:
        self._output: Var | None = None
        self._grads: dict[int, jax.Array] = {}
        self._edge_grads: dict[tuple[int, int], jax.Array] = {}

    # ------------------------------------------------------------------ recording

    def input(self, name: str, value) -> Var:
        """A named input (``"apple"``): a source of the graph, and a key of ``backward``'s result."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"Tape.input: the name must be a non-empty string, got {name!r}")
        if name in self._inputs:
            raise ValueError(f"Tape.input: there is already an input named {name!r}")
        var = self._new(name, jnp.asarray(value))
        self._inputs[name] = var
        return var

    def apply(self, node: Node, *args, name: str | None = None) -> Var:
        """Record ``node.forward(*args)`` and return its result as a ``Var``.

        The first ``node.arity`` arguments are the node's array inputs: ``Var``
        objects of this tape, or plain numbers and arrays (recorded as
        constants). Any further arguments are passed on as they are
        (``g.apply(graph.repeat, x, 3)``). ``name`` labels the result.
        """
        if len(args) < node.arity:
            raise TypeError(f"Tape.apply: {node!r} takes {node.arity} input(s), got {len(args)}")
        refs: list[int | Const] = []
        values = []
        for a in args[: node.arity]:
            if isinstance(a, Var):
                if a.tape is not self:
                    raise ValueError(f"Tape.apply: {a!r} was recorded on another tape")
                refs.append(a.index)
                values.append(a.value)
            else:
                c = Const(jnp.asarray(a))
                refs.append(c)
                values.append(c.value)
        static = tuple(args[node.arity:])
        out, cache = node.forward(*values, *static)
        var = self._new(name, out)
        self._steps.append(Step(node, tuple(refs), static, var.index, cache))
        return var

    def _new(self, name: str | None, value: jax.Array) -> Var:
        self._clear_backward()  # a drawing must never show gradients of an older graph
        var = Var(self, len(self._vars), name, value)
        self._vars.append(var)
        return var

    # ------------------------------------------------------------------ the backward pass

    def backward(self, output: Var, dout=1.0) -> dict[str, jax.Array]:
        """Backprop from ``output``, seeded with ``dout`` (broadcast to its shape).

        Steps run in reverse order of recording, each calling its node's
        backward with the gradient that reached its result. A value used
        more than once receives one gradient per use, and they add up (the
        ``repeat`` rule, done by the tape).

        **Returns:** ``{input name: d output / d input}``; an input that the
        output does not depend on gets zeros.
        """
        if not isinstance(output, Var) or output.tape is not self:
            raise ValueError("Tape.backward: the output must be a Var of this tape")
        self._clear_backward()
        self._output = output
        seed = jnp.asarray(dout, dtype=jnp.result_type(output.value))
        self._grads = {output.index: jnp.broadcast_to(seed, jnp.shape(output.value))}
        for s in range(len(self._steps) - 1, -1, -1):
            step = self._steps[s]
            if step.out not in self._grads:  # the output does not depend on this step
                continue
            grads = step.node.backward(step.cache, self._grads[step.out])
            if step.node.arity == 1:
                grads = (grads,)
            for slot, (ref, g) in enumerate(zip(step.inputs, grads, strict=True)):
                self._edge_grads[(s, slot)] = g
                if isinstance(ref, int):
                    self._grads[ref] = self._grads[ref] + g if ref in self._grads else g
        return {name: self.grad(var) for name, var in self._inputs.items()}

    def grad(self, var: Var) -> jax.Array:
        """``d output / d var`` from the last ``backward`` (zeros if the output does not depend on it)."""
        if self._output is None:
            raise ValueError("Tape.grad: run backward first")
        return self._grads.get(var.index, jnp.zeros_like(var.value))

    # ------------------------------------------------------------------ reading the recording

    @property
    def vars(self) -> tuple[Var, ...]:
        """Every recorded value, in order (inputs and results)."""
        return tuple(self._vars)

    @property
    def steps(self) -> tuple[Step, ...]:
        """Every recorded node application, in order."""
        return tuple(self._steps)

    @property
    def inputs(self) -> Mapping[str, Var]:
        """The named inputs."""
        return dict(self._inputs)

    @property
    def output(self) -> Var | None:
        """The output of the last ``backward``, or ``None`` before it."""
        return self._output

    def edge_grad(self, step: int, slot: int) -> jax.Array | None:
        """The gradient that step ``step`` passed back through its input ``slot`` (``None`` if none)."""
        return self._edge_grads.get((step, slot))

    # ------------------------------------------------------------------ pictures

    def to_dot(self, *, title: str | None = None, precision: int = 4) -> str:
        """The graph as Graphviz DOT text: ``fnet.graph.draw.to_dot(self, ...)``."""
        return draw.to_dot(self, title=title, precision=precision)

    def render(self, path: str | Path, *, title: str | None = None, precision: int = 4) -> Path:
        """Write the drawing to ``path``: ``fnet.graph.draw.render(self, path, ...)``."""
        return draw.render(self, path, title=title, precision=precision)
