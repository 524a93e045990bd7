"""Pytree key paths as readable strings: ``("Affine1", "W")`` -> ``"Affine1/W"``.

One spelling for checkpoints, optimizer errors and gradient-check reports, so a
parameter has the same name everywhere it is shown.
"""

from __future__ import annotations


def key_str(entry) -> str:
    """One path entry: a dict key, a sequence index or an attribute name."""
    for attr in ("key", "idx", "name"):  # DictKey / FlattenedIndexKey, SequenceKey, GetAttrKey
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def path_str(path) -> str:
    """A whole key path as ``a/b/0`` (``""`` for the root)."""
    return "/".join(key_str(entry) for entry in path)
