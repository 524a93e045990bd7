"""The lowest floor: small helpers on pytrees that every other module may import.

- ``path_str``: pytree key paths as readable strings, ``("Affine1", "W")`` ->
  ``"Affine1/W"``: one spelling for checkpoints, optimizer errors, gradient-check
  reports and summaries, so a parameter has the same name everywhere it is shown.
- ``Static``: a Python value carried inside a cache as pytree metadata.
- ``book_names``: params by the book's flat names (``W1``, ``b1``, ...).

This module imports nothing from fnet.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax


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
