"""Computational-graph nodes: the book's ``MulLayer`` and ``AddLayer``, and friends.

Each node is a pure pair ``forward(*inputs) -> (out, cache)`` and
``backward(cache, dout) -> grads``: a tuple with one gradient per input for
the two-input nodes (``mul``, ``add``), a single gradient for the others.
Inputs may be Python numbers or arrays; ``mul`` and ``add`` broadcast, and
their backward sums each gradient back to its input's shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp

from fnet import _args
from fnet._trees import Static


@dataclasses.dataclass(frozen=True)
class Node:
    """A graph node: ``name``, the ``symbol`` drawn in its circle, and its pair.

    ``arity`` is its number of array inputs; ``repeat`` also takes a static count.
    """

    name: str
    symbol: str
    arity: int
    forward: Callable
    backward: Callable
    doc: str = dataclasses.field(default="", repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "__doc__", self.doc)

    def __repr__(self) -> str:
        return f"graph.{self.name}"


def _unbroadcast(g, shape):
    """Sum ``g`` over the axes that broadcasting added or stretched, giving ``shape``."""
    g = jnp.asarray(g)  # dout may be a Python number, as in the book's add_layer.backward(1)
    extra = g.ndim - len(shape)
    g = jnp.sum(g, axis=tuple(range(extra))) if extra else g
    axes = tuple(i for i, (n, m) in enumerate(zip(shape, g.shape, strict=True)) if n == 1 and m != 1)
    return jnp.sum(g, axis=axes, keepdims=True) if axes else g


def _mul_forward(x, y):
    x, y = jnp.asarray(x), jnp.asarray(y)
    return x * y, (x, y)


def _mul_backward(cache, dout):
    x, y = cache
    return _unbroadcast(dout * y, x.shape), _unbroadcast(dout * x, y.shape)


mul = Node("mul", "×", 2, _mul_forward, _mul_backward, doc="""``out = x * y``.

Derivatives: ``dout/dx = y``, ``dout/dy = x``: the backward pass swaps the inputs.
Cache: ``(x, y)``.
""")


def _add_forward(x, y):
    x, y = jnp.asarray(x), jnp.asarray(y)
    return x + y, Static((x.shape, y.shape))


def _add_backward(cache, dout):
    xs, ys = cache.value
    return _unbroadcast(dout, xs), _unbroadcast(dout, ys)


add = Node("add", "+", 2, _add_forward, _add_backward, doc="""``out = x + y``.

Derivatives: ``dout/dx = dout/dy = 1``: the backward pass passes ``dout`` on unchanged.
Cache: the input shapes only.
""")


def _inverse_forward(x):
    y = 1.0 / jnp.asarray(x)
    return y, y


def _inverse_backward(y, dout):
    return -dout * y * y


inverse = Node("inverse", "/", 1, _inverse_forward, _inverse_backward, doc="""``out = 1 / x``.

Derivative: ``-1 / x^2 = -out^2``. Cache: ``out``. (The "/" node of the book's sigmoid graph.)
""")


def _exp_forward(x):
    y = jnp.exp(jnp.asarray(x))
    return y, y


def _exp_backward(y, dout):
    return dout * y


exp = Node("exp", "exp", 1, _exp_forward, _exp_backward, doc="""``out = exp(x)``.

Derivative: ``exp(x) = out``. Cache: ``out``.
""")


def _log_forward(x):
    x = jnp.asarray(x)
    return jnp.log(x), x


def _log_backward(x, dout):
    return dout / x


log = Node("log", "log", 1, _log_forward, _log_backward, doc="""``out = log(x)`` (natural log).

Derivative: ``1 / x``. Cache: ``x``.
""")


def _repeat_forward(x, n: int):
    n = _args.count("graph.repeat", "n", n, 1)
    x = jnp.asarray(x)
    return jnp.broadcast_to(x, (n, *x.shape)), ()


def _repeat_backward(cache, dout):
    return jnp.sum(dout, axis=0)


repeat = Node("repeat", "repeat", 1, _repeat_forward, _repeat_backward, doc="""Fan one input out
to ``n`` copies: ``x: (...) -> out: (n, ...)``, called as ``repeat.forward(x, n)``.

Derivative: each copy passes its gradient back, and they add up:
``dx = sum over the new axis of dout``. Cache: nothing.
""")


def _sum_forward(x):
    x = jnp.asarray(x)
    if x.ndim == 0:
        raise ValueError("graph.sum: sums over the first axis; got a scalar")
    return jnp.sum(x, axis=0), Static(x.shape[0])


def _sum_backward(cache, dout):
    return jnp.broadcast_to(dout, (cache.value, *jnp.shape(dout)))


sum = Node("sum", "sum", 1, _sum_forward, _sum_backward, doc="""Add up the first axis:
``x: (n, ...) -> out: (...)``.

Derivative: 1 for every summand, so the backward pass repeats ``dout`` ``n`` times
(the mirror image of ``repeat``). Cache: ``n``.
""")

NODES = (mul, add, inverse, exp, log, repeat, sum)

__all__ = ["NODES", "Node", "add", "exp", "inverse", "log", "mul", "repeat", "sum"]
