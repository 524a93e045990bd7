"""The numerical gradient: central differences, ``(f(p + h) - f(p - h)) / 2h``, for every entry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fnet import _args

Params = Any  # a pytree of floating-point arrays

DEFAULT_EPS = {"float64": 1e-5, "float32": 3e-3, "bfloat16": 1e-1, "float16": 1e-1}
"""The default step ``h`` for each dtype.

A central difference is wrong by about ``h^2 |f'''| / 6`` (truncation) plus
``u |f| / h`` (rounding: ``u`` is the unit roundoff, and ``f(p+h) - f(p-h)``
cancels all but a few digits of ``f``). The sum is smallest near
``h = u^(1/3)``: 6e-6 for float64, 5e-3 for float32. The defaults were chosen by
measuring the two-layer net (``docs/speed.md``, "Numerical gradients"): in float64,
``1e-5`` gave the smallest largest-difference; the book's ``1e-4`` lets
truncation in, ``1e-6`` rounding. In float32, ``3e-3``; a larger step can push a
hidden unit across the ReLU kink (a kink makes any ``h`` too large for the
entries near it).
"""

DEFAULT_CHUNK = 1
"""One perturbation per step of a compiled loop: fastest on a CPU (see ``numerical_gradient``)."""


def default_eps(dtype) -> float:
    """The default step ``h`` for ``dtype`` (see ``DEFAULT_EPS``)."""
    name = jnp.dtype(dtype).name
    if name not in DEFAULT_EPS:
        raise TypeError(f"numerical_gradient: parameters must be floating point, got {name}")
    return DEFAULT_EPS[name]


def numerical_gradient(f: Callable[[Params], jax.Array], params: Params, eps: float | None = None, *,
                       chunk_size: int = DEFAULT_CHUNK) -> Params:
    """Central-difference gradient of a scalar function of a params pytree.

    **Arguments:**

    - ``f``: ``f(params) -> scalar``; it must be traceable by ``jax.jit`` and
      ``jax.vmap`` (the layers, losses and ``net.forward`` are).
    - ``params``: a pytree of floating-point arrays, any shapes.
    - ``eps``: the step ``h``; by default it depends on each leaf's dtype:
      ``1e-5`` for float64, ``3e-3`` for float32 (``DEFAULT_EPS`` says why).
    - ``chunk_size``: how many perturbations are evaluated at once, with
      ``jax.vmap``; ``lax.map`` walks over the chunks inside one compiled
      function per leaf. Memory is about ``2 * chunk_size`` copies of the leaf
      being perturbed (the other leaves are shared, never copied), whatever
      the size of the leaf.

    **Returns:** a pytree like ``params``, in each leaf's dtype: entry ``i`` is
    ``(f(p + h e_i) - f(p - h e_i)) / step``, where ``step`` is
    ``(p_i + h) - (p_i - h)`` as floating point computed it (``2h`` up to
    rounding). If ``h`` is too small to change ``p_i`` the entry is NaN.

    **Cost:** ``2 * size(params)`` evaluations of ``f`` (79,520 for the book's
    784-50-10 net). On a CPU ``chunk_size=1`` (a compiled loop) is fastest:
    vmapping over perturbed copies of ``W1`` makes XLA transpose each batch of
    copies for the batched matmul; larger chunks should pay off on an
    accelerator. Timings: ``docs/speed.md``.

    Results for different ``chunk_size`` agree exactly when ``f`` is computed
    exactly, and otherwise to rounding: a vmapped ``f`` may add up its terms
    in another order.
    """
    chunk_size = _args.count("numerical_gradient", "chunk_size", chunk_size, 1)
    if eps is not None:  # 0 would divide by zero (NaN everywhere); the step is a positive h
        eps = _args.positive("numerical_gradient", "eps", eps)
    leaves, treedef = jax.tree.flatten(params)
    leaves = [jnp.asarray(leaf) for leaf in leaves]
    for leaf in leaves:
        default_eps(leaf.dtype)  # raises for integer leaves
    out_shape = jax.eval_shape(lambda ls: f(jax.tree.unflatten(treedef, ls)), leaves)
    if out_shape.shape != ():
        raise ValueError(f"numerical_gradient: f must return a scalar, got shape {out_shape.shape}")
    grads = []
    for k, leaf in enumerate(leaves):
        h = eps if eps is not None else default_eps(leaf.dtype)
        if leaf.size == 0:
            grads.append(jnp.zeros_like(leaf))
            continue
        g = _leaf_gradient(f, treedef, k, h, min(chunk_size, leaf.size))(leaves)
        grads.append(g.reshape(leaf.shape).astype(leaf.dtype))
    return jax.tree.unflatten(treedef, grads)


def _leaf_gradient(f, treedef, k: int, h: float, chunk_size: int):
    """A jitted ``leaves -> (size of leaf k,)``: the central difference along every entry of leaf k.

    ``lax.map`` walks over the entries ``chunk_size`` at a time; each chunk is
    ``vmap``-ed, so it holds ``2 * chunk_size`` perturbed copies of this one
    leaf and nothing more (the other leaves are shared by every evaluation).
    """

    def call(leaves, flat):
        ls = list(leaves)
        ls[k] = flat.reshape(leaves[k].shape)
        return f(jax.tree.unflatten(treedef, ls))

    @jax.jit
    def gradient(leaves):
        flat = leaves[k].ravel()

        def derivative(i):
            v = flat[i]
            plus = flat.at[i].set(v + h)
            minus = flat.at[i].set(v - h)
            # divide by the step floating point took, not by 2h rounded away from it
            step = (v + h) - (v - h)
            diff = call(leaves, plus) - call(leaves, minus)
            return jnp.where(step == 0, jnp.nan, diff / jnp.where(step == 0, 1, step))

        return jax.lax.map(derivative, jnp.arange(flat.size), batch_size=chunk_size)

    return gradient
