"""Gradient checking: handwritten backprop against numerical differentiation.

The book's ``ch05/gradient_check.py`` trusts backprop only after comparing it
with a gradient computed by brute force, one parameter at a time::

    df/dp  ~  (f(p + h) - f(p - h)) / 2h          (central difference)

``numerical_gradient`` does exactly that for every entry of a params pytree,
inside one compiled ``lax.map`` per leaf (``vmap``-ed in chunks when asked), so
the 79,520 loss evaluations of the book's 784-50-10 net take seconds; ``compare``
lays the two gradients side by side, leaf by leaf, and says where they differ
most.

No automatic differentiation is involved: the numerical gradient needs only
evaluations of ``f``, so it is an independent witness of the handwritten rules.

Example (the two-layer net, float64)::

    loss = lambda p: losses.softmax_cross_entropy.forward(net.forward(p, x)[0], t)[0]
    numerical = gradcheck.numerical_gradient(loss, params)
    _, backprop = fnet.loss_and_grads(net, losses.softmax_cross_entropy)(params, x, t)
    report = gradcheck.compare(backprop, numerical)
    print(report)
    assert report.ok(1e-7)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnet import _args
from fnet._text import table
from fnet._trees import book_names, path_str

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


# --------------------------------------------------------------------------- comparing


REL_FLOOR = 1e-8
"""The floor under the denominator of the relative error (CS231n's convention)."""


@dataclasses.dataclass(frozen=True)
class LeafDiff:
    """How one gradient leaf differs between backprop ``a`` and numerical ``b``.

    **Fields:** ``path`` (``"Affine1/W"``); ``book`` (the book's name, ``"W1"``,
    or ``None``); ``shape``; ``mean_abs`` (``mean |a - b|``, what the book
    prints); ``max_abs`` and ``max_abs_at`` (its index into the leaf);
    ``max_rel`` and ``max_rel_at``: the largest ``|a - b| / max(|a| + |b|, 1e-8)``
    over the entries (0 where both are equal; at most 1, reached where one
    is 0 or the signs differ, so a true gradient of 0 met by rounding noise
    shows as a large relative error); ``scale``: ``max |b|``, the size of
    the gradient the differences are measured against.
    """

    path: str
    book: str | None
    shape: tuple[int, ...]
    mean_abs: float
    max_abs: float
    max_abs_at: tuple[int, ...]
    max_rel: float
    max_rel_at: tuple[int, ...]
    scale: float

    @property
    def name(self) -> str:
        """The book's name where there is one, else the path."""
        return self.book or self.path


METRICS = ("mean_abs", "max_abs", "max_rel")


@dataclasses.dataclass(frozen=True)
class GradReport:
    """The per-leaf differences between two gradients (from ``compare``).

    ``str(report)`` (or ``report.format()``) is a table; ``report.ok(threshold)``
    says whether every leaf is within it; ``report["W1"]`` or
    ``report["Affine1/W"]`` is one ``LeafDiff``.
    """

    leaves: tuple[LeafDiff, ...]

    def __getitem__(self, name: str) -> LeafDiff:
        for d in self.leaves:
            if name in (d.path, d.book):
                return d
        raise KeyError(f"{name!r}: the report has {[d.name for d in self.leaves]}")

    def __iter__(self) -> Iterator[LeafDiff]:
        return iter(self.leaves)

    def worst(self, metric: str = "max_abs") -> LeafDiff:
        """The leaf with the largest ``metric`` (``"mean_abs"``, ``"max_abs"``, ``"max_rel"``)."""
        _check_metric(metric)
        return max(self.leaves, key=lambda d: getattr(d, metric))

    def ok(self, threshold: float, metric: str = "max_abs") -> bool:
        """True when ``metric`` is at most ``threshold`` for every leaf (and nothing is NaN).

        The default, the largest absolute difference, is stricter than the
        book's mean (one wrong entry among 39,200 moves the mean by 1/39,200
        of its error) and, unlike the relative error, is not inflated by
        entries whose gradient is almost zero.
        """
        _check_metric(metric)
        return all(getattr(d, metric) <= threshold for d in self.leaves)

    def format(self) -> str:
        """The table: one row per leaf."""
        header = ("param", "book", "shape", "mean|a-b|", "max|a-b|", "at", "max rel", "at", "max|num|")
        rows = [(d.path, d.book or "", _shape(d.shape), f"{d.mean_abs:.2e}", f"{d.max_abs:.2e}",
                 _index(d.max_abs_at), f"{d.max_rel:.2e}", _index(d.max_rel_at), f"{d.scale:.2e}")
                for d in self.leaves]
        return (table(header, rows) + f"\na = backprop, b = numerical; rel = |a-b| / max(|a|+|b|, "
                f"{REL_FLOOR:g}), the largest over the entries")

    def __str__(self) -> str:
        return self.format()


def compare(backprop_grads: Params, numerical_grads: Params) -> GradReport:
    """Compare two gradient pytrees of the same structure, leaf by leaf.

    **Arguments:** ``backprop_grads`` (``a``) and ``numerical_grads`` (``b``),
    pytrees of arrays with equal structure and shapes (e.g. from
    ``fnet.loss_and_grads`` and ``numerical_gradient``).

    **Returns:** a ``GradReport``; leaves are named by their path of keys
    (``"Affine1/W"``) and, where ``fnet.book_names`` applies, by the book's
    names (``"W1"``). Differences are computed in float64 NumPy.
    """
    a_leaves, a_def = jax.tree_util.tree_flatten_with_path(backprop_grads)
    b_leaves, b_def = jax.tree_util.tree_flatten_with_path(numerical_grads)
    if a_def != b_def:
        raise ValueError(f"compare: the gradients have different structures:\n  {a_def}\n  {b_def}")
    paths = [path_str(p) for p, _ in a_leaves]
    books = _book_names(a_def, paths)
    out = []
    for path, (_, a), (_, b) in zip(paths, a_leaves, b_leaves, strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            raise ValueError(f"compare: {path} has shape {a.shape} in backprop but {b.shape} numerically")
        out.append(_diff(path, books.get(path), a, b))
    return GradReport(tuple(out))


def _diff(path: str, book: str | None, a: np.ndarray, b: np.ndarray) -> LeafDiff:
    if a.size == 0:
        return LeafDiff(path, book, a.shape, 0.0, 0.0, (), 0.0, (), 0.0)
    diff = np.abs(a - b)
    rel = diff / np.maximum(np.abs(a) + np.abs(b), REL_FLOOR)
    # NaN compares false with everything: make it the worst entry, never a silent pass
    diff = np.where(np.isnan(diff), np.inf, diff)
    rel = np.where(np.isnan(rel), np.inf, rel)
    i_abs = np.unravel_index(int(np.argmax(diff)), a.shape)
    i_rel = np.unravel_index(int(np.argmax(rel)), a.shape)
    mean = float(np.mean(np.abs(a - b)))
    return LeafDiff(path, book, a.shape, mean if not math.isnan(mean) else math.inf,
                    float(diff[i_abs]), tuple(int(i) for i in i_abs), float(rel[i_rel]),
                    tuple(int(i) for i in i_rel), float(np.max(np.abs(b))))


def _book_names(treedef, paths: list[str]) -> dict[str, str]:
    """``{path: book name}`` where ``fnet.book_names`` understands the structure, else ``{}``."""
    try:
        named = book_names(jax.tree.unflatten(treedef, paths))
    except (KeyError, TypeError, IndexError, ValueError):
        return {}
    return {path: name for name, path in named.items() if isinstance(path, str)}


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")


def _shape(shape: tuple) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _index(index: tuple) -> str:
    return "[" + ", ".join(map(str, index)) + "]"
