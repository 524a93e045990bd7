"""The affine (fully connected) layer: the book's ``Affine``."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from fnet import _args, initializers
from fnet.core import Layer, check_dout, check_shape
from fnet.errors import ShapeError, shape_str
from fnet.layers._checks import float_input, min_rank


def affine(out_features: int, *, W_init: initializers.Initializer | float | str = "xavier",
           b_init: initializers.Initializer | float | str = 0.0, dtype=jnp.float32,
           in_features: int | None = None) -> Layer:
    """``y = x W + b``.

    **Shapes:** ``x: (N, d1, ..., dk)`` is flattened to ``(N, D)`` with
    ``D = d1 * ... * dk`` as in the book (so an image batch ``(N, 28, 28)`` or
    ``(N, 28, 28, 1)`` feeds it directly); ``W: (D, out_features)``,
    ``b: (out_features,)``, ``y: (N, out_features)``.

    **Cache:** ``(x, W)``: the input (for ``dW``) and the weight (for ``dx``).

    **Backward:** ``dW = x^T dout``, ``db = sum over the batch of dout``,
    ``dx = dout W^T`` reshaped back to ``x``'s shape.

    **Arguments:** ``W_init``: an initialiser, a float standard deviation (the
    book's ``weight_init_std``), ``"he"`` or ``"xavier"`` (default, std
    ``sqrt(1/D)``); ``b_init`` (same choices; default ``0.0``, zeros); ``dtype`` of the parameters;
    ``in_features``: if given, ``init`` checks that the input provides ``D == in_features``.
    """
    out_features = _args.count("affine", "out_features", out_features, 1)
    W_init = initializers.resolve(W_init, "affine W_init")
    b_init = initializers.resolve(b_init, "affine b_init")

    def init(key, input_shape):
        shape = check_shape(input_shape, "affine")
        min_rank("affine", shape, 2, "(N, features...)")
        d = math.prod(shape[1:])
        if in_features is not None and d != in_features:
            raise ShapeError("affine", f"was built for {in_features} input features, but init got "
                                       f"input shape {shape_str(shape)} with {d}")
        kW, kb = jax.random.split(key)
        params = {"W": W_init(kW, (d, out_features), dtype), "b": b_init(kb, (out_features,), dtype)}
        return params, (shape[0], out_features)

    def forward(params, x):
        W, b = params["W"], params["b"]
        x = float_input("affine", x)
        min_rank("affine", x.shape, 2, "(N, features...)")
        d = math.prod(x.shape[1:])
        if d != W.shape[0]:
            raise ShapeError("affine", f"input of shape {shape_str(x.shape)} has {d} features per "
                                       f"example, but W has shape {W.shape} and expects {W.shape[0]}. "
                                       "Initialise the layer with this input shape, or reshape x")
        y = x.reshape(x.shape[0], d) @ W + b
        return y, (x, W)

    def backward(cache, dout):
        x, W = cache
        check_dout("affine", dout, (x.shape[0], W.shape[1]))
        x2 = x.reshape(x.shape[0], -1)
        dW = x2.T @ dout
        db = dout.sum(axis=0)
        dx = (dout @ W.T).reshape(x.shape)
        return {"W": dW, "b": db}, dx

    return Layer("affine", init, forward, backward)

