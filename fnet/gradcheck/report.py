"""Two gradients side by side, leaf by leaf: where and by how much backprop and numbers differ."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from fnet import _args
from fnet._text import table
from fnet._trees import book_names, path_str

Params = Any  # a pytree of floating-point arrays

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
        threshold = _args.non_negative("GradReport.ok", "threshold", threshold)  # below 0 nothing passes
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
