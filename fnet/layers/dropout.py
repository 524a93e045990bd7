"""Dropout: the book's ``Dropout`` (chapter 6), in its "inverted" form."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnet import _args
from fnet.core import Layer, check_shape
from fnet.errors import ContextError
from fnet.layers._checks import float_input, mode


def dropout(rate: float = 0.5) -> Layer:
    """Inverted dropout: in training, drop each entry with probability ``rate``
    and scale the survivors by ``1 / (1 - rate)``; in evaluation, the identity.

    ``rate`` is the probability of **dropping** an entry, as the book's
    ``dropout_ratio`` (and ``torch.nn.Dropout(p)``); ``jax.example_libraries.stax``
    takes the probability of *keeping* one instead.

    The book scales at test time instead (``x * (1 - dropout_ratio)``); scaling in
    training gives the same expected activation and leaves evaluation untouched.

    **Shapes:** any; ``y`` has ``x``'s shape. No parameters (``params == {}``).

    **Uses:** ``{"key", "train"}``: ``forward(params, x, *, key, train)``. Training
    needs a random key (a new one every step; ``sequential`` derives one per
    layer); evaluation needs none. The same key gives the same mask.

    **Cache:** the scaled mask ``m`` (``0`` or ``1 / (1 - rate)``, in ``x``'s
    dtype) in training, ``None`` in evaluation.

    **Derivative:** ``y = x * m``, so ``dx = dout * m`` (the identity in evaluation).
    """
    rate = _args.in_unit("dropout", "rate", rate, about="the probability of dropping an entry")
    keep = 1.0 - rate

    def init(key, input_shape):
        return {}, check_shape(input_shape, "dropout")

    def forward(params, x, *, key, train):
        x = float_input("dropout", x)
        if not mode("dropout", train):
            return x, None
        if key is None:
            raise ContextError("dropout", "needs a random key in training: pass key=... (a new "
                                          "jax.random.key for every step), e.g. "
                                          "fnet.apply(net, params, x, key=key, train=True)")
        mask = jnp.where(jax.random.bernoulli(key, keep, x.shape), 1.0 / keep, 0.0).astype(x.dtype)
        return x * mask, mask

    def backward(mask, dout):
        return {}, dout if mask is None else dout * mask

    return Layer("dropout", init, forward, backward, uses={"key", "train"})
