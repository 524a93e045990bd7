"""The lowest floor: small helpers on pytrees that every other module may import.

- ``path_str``: pytree key paths as readable strings, ``("Affine1", "W")`` ->
  ``"Affine1/W"``: one spelling for checkpoints, optimizer errors, gradient-check
  reports and summaries, so a parameter has the same name everywhere it is shown.
- ``Static``: a Python value carried inside a cache as pytree metadata.
- ``book_names``: params by the book's flat names (``W1``, ``b1``, ...).
- ``leaves_with_paths`` and ``check_like``: a pytree checked against the
  structure and shapes of ``params``, the error naming the first path that differs;
  ``first_non_finite``: the path of the first leaf holding NaN or infinity.

This module imports nothing from fnet.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp


def key_str(entry) -> str:
    """One path entry: a dict key, a sequence index or an attribute name."""
    for attr in ("key", "idx", "name"):  # DictKey / FlattenedIndexKey, SequenceKey, GetAttrKey
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def path_str(path) -> str:
    """A whole key path as ``a/b/0`` (``""`` for the root)."""
    return "/".join(key_str(entry) for entry in path)


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class Static:
    """A value carried inside a cache as pytree metadata, invisible to ``jit``.

    Shapes and structures that backward needs are Python values known at trace
    time; wrapping them keeps them Python values when a cache crosses ``jit``.
    """

    value: Any


def book_names(params) -> dict:
    """Params by the book's flat names: ``Affine{i}`` gives ``W{i}``, ``b{i}`` and
    ``BatchNorm{i}`` gives ``gamma{i}``, ``beta{i}`` (as in ``TwoLayerNet`` and
    ``MultiLayerNetExtend``). For ``two_layer_net``: ``{"W1", "b1", "W2", "b2"}``.

    Raises ``KeyError`` when ``params`` has no such entries.
    """
    if not isinstance(params, dict):
        raise TypeError(f"book_names: expected the params dict of a sequential, got {type(params).__name__}")
    named = {}
    for key, value in params.items():
        for prefix, leaves in (("Affine", ("W", "b")), ("BatchNorm", ("gamma", "beta"))):
            index = key[len(prefix):]
            if key.startswith(prefix) and index.isdigit():
                named.update({f"{leaf}{index}": value[leaf] for leaf in leaves})
    if not named:
        raise KeyError(f"book_names: no Affine<i> or BatchNorm<i> entries in params (keys {list(params)})")
    return named


def leaves_with_paths(tree) -> list[tuple[str, Any]]:
    """``[(path, leaf)]`` in ``jax.tree.leaves`` order, paths as ``"affine_0/W"``."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(path_str(p) or "<root>", x) for p, x in flat]


def _empty(x) -> bool:
    return x is None or (isinstance(x, (dict, list, tuple)) and len(x) == 0)


def _outline(tree) -> dict[tuple, str]:
    """Every leaf and every empty container, by key path, with what it is."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_empty)
    return {tuple(key_str(e) for e in p): (repr(x) if _empty(x) else "an array") for p, x in flat}


def check_like(where: str, what: str, tree, params, *, against: str = "params") -> None:
    """``tree`` must have the structure and leaf shapes of ``params``, else ValueError at the first path.

    ``against`` names ``params`` in the message (``"the network's parameters"``).
    """
    if jax.tree.structure(tree) != jax.tree.structure(params):
        want, got = _outline(params), _outline(tree)
        diffs = []
        for path, kind in want.items():
            if path not in got:
                diffs.append(f"{'/'.join(path)!r} is in {against} but missing from {what}")
            elif got[path] != kind:
                diffs.append(f"at {'/'.join(path)!r} {against} hold {kind} but {what} hold {got[path]}")
        diffs += [f"{'/'.join(p)!r} is in {what} but not in {against}" for p in got if p not in want]
        if not diffs:
            diffs = [f"the containers differ: {against} are {jax.tree.structure(params)}, "
                     f"{what} are {jax.tree.structure(tree)}"]
        more = f" (and {len(diffs) - 1} more difference(s))" if len(diffs) > 1 else ""
        raise ValueError(f"{where}: {what} do not match {against}: {diffs[0]}{more}")
    for (path, x), w in zip(leaves_with_paths(tree), jax.tree.leaves(params), strict=True):
        if jnp.shape(x) != jnp.shape(w):
            raise ValueError(f"{where}: {what} at {path!r} has shape {jnp.shape(x)}, but the parameter "
                             f"has shape {jnp.shape(w)}")


def first_non_finite(tree) -> str | None:
    """The key path of the first leaf of ``tree`` holding NaN or infinity, or ``None``."""
    for path, leaf in leaves_with_paths(tree):
        if not bool(jnp.all(jnp.isfinite(leaf))):
            return path
    return None
