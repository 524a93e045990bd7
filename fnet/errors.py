"""Errors raised at init or trace time, naming the layer where they happened.

A layer raises ``ShapeError`` (a ``ValueError``), ``DTypeError`` (a ``TypeError``)
or ``ContextError`` (a ``ValueError``: a missing key, mode or state) with its own
name. When the layer sits inside ``sequential``, the combinator rewrites the name
into the path of parameter keys, so a message reads ``block_0/affine_1 (affine): ...``
and points at ``params["block_0"]["affine_1"]``.
"""

from __future__ import annotations


class LayerError(Exception):
    """Mixin for errors that name a layer. ``path`` is the list of keys to it."""

    def __init__(self, layer: str, message: str):
        super().__init__(message)
        self.kind = layer
        self.path: list[str] = [layer]
        self.message = message
        self._keyed = False

    def add_key(self, key: str) -> None:
        """Called by a combinator: the first call names the layer by its key."""
        if self._keyed:
            self.path.insert(0, key)
        else:
            self.path = [key]
            self._keyed = True

    def __str__(self) -> str:
        where = "/".join(self.path)
        if self._keyed and self.path[-1] != self.kind:
            where = f"{where} ({self.kind})"
        return f"{where}: {self.message}"


class ShapeError(LayerError, ValueError):
    """An array, a shape or a pytree does not have the structure a layer needs."""


class DTypeError(LayerError, TypeError):
    """An array has a dtype a layer cannot use (integer images, float labels)."""


class RangeError(LayerError, ValueError):
    """A value outside the range a layer can use: an embedding id not in ``[0, vocab_size)``."""


class ContextError(LayerError, ValueError):
    """A layer did not get what its ``uses`` declares: no random key, no mode, no state.

    Raised, for example, by dropout called with ``train=True`` and ``key=None``.
    """


class ProtocolError(LayerError, TypeError):
    """A layer's function returned something other than the protocol says.

    ``forward -> (y, cache)`` (``(y, cache, new_state)`` for a layer that uses
    ``"state"``), ``backward -> (dparams, dx)``.
    """


def shape_str(shape) -> str:
    """``(None, 784)`` -> ``(N, 784)``: the batch dimension, when unknown, reads as N."""
    inner = ", ".join("N" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"
