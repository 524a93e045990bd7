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
           in_features: int | None = None, flatten: bool = True, bias: bool = True) -> Layer:
    """``y = x W + b``.

    **Shapes:** with ``flatten=True`` (the default, the book's ``Affine``), ``x: (N, d1, ...,
    dk)`` is flattened to ``(N, D)`` with ``D = d1 * ... * dk`` (so an image batch ``(N, 28,
    28)`` or ``(N, 28, 28, 1)`` feeds it directly), and ``y: (N, out_features)``. With
    ``flatten=False`` it acts on the **last** axis only, as ``torch.nn.Linear`` does:
    ``x: (N, ..., D) -> y: (N, ..., out_features)``, every position of a sequence ``(N, T,
    D)`` through the same ``W`` (what ``time_distributed(affine(...))`` computes, without the
    fold). ``W: (D, out_features)``, ``b: (out_features,)`` (none with ``bias=False``).

    **Cache:** ``(x, W)``: the input (for ``dW``) and the weight (for ``dx``).

    **Backward** (``x`` and ``dout`` as matrices of ``D`` and ``out_features`` columns):
    ``dW = x^T dout``, ``db = sum over the rows of dout``, ``dx = dout W^T`` reshaped back to
    ``x``'s shape.

    **Arguments:** ``W_init``: an initialiser, a float standard deviation (the
    book's ``weight_init_std``), ``"he"`` or ``"xavier"`` (default, std
    ``sqrt(1/D)``); ``b_init`` (same choices; default ``0.0``, zeros); ``dtype`` of the parameters;
    ``in_features``: if given, ``init`` checks that the input provides ``D == in_features``.
    """
    out_features = _args.count("affine", "out_features", out_features, 1)
    if in_features is not None:
        in_features = _args.count("affine", "in_features", in_features, 1)
    dtype = _args.float_dtype("affine", dtype)
    W_init = initializers.resolve(W_init, "affine", "W_init")
    b_init = initializers.resolve(b_init, "affine", "b_init")
    for name, value in (("flatten", flatten), ("bias", bias)):
        if not isinstance(value, bool):
            raise TypeError(f"affine: {name} must be True or False, got {value!r}")

    def features(shape) -> int:
        return math.prod(shape[1:]) if flatten else shape[-1]

    def init(key, input_shape):
        shape = check_shape(input_shape, "affine")
        min_rank("affine", shape, 2, "(N, features...)")
        d = features(shape)
        if in_features is not None and d != in_features:
            raise ShapeError("affine", f"was built for {in_features} input features, but init got "
                                       f"input shape {shape_str(shape)} with {d}")
        kW, kb = jax.random.split(key)
        params = {"W": W_init(kW, (d, out_features), dtype)}
        if bias:
            params["b"] = b_init(kb, (out_features,), dtype)
        return params, ((shape[0], out_features) if flatten else (*shape[:-1], out_features))

    def forward(params, x):
        W = params["W"]
        x = float_input("affine", x)
        min_rank("affine", x.shape, 2, "(N, features...)")
        d = features(x.shape)
        if d != W.shape[0]:
            per = "example" if flatten else "position (on the last axis)"
            raise ShapeError("affine", f"input of shape {shape_str(x.shape)} has {d} features per "
                                       f"{per}, but W has shape {W.shape} and expects {W.shape[0]}. "
                                       "Initialise the layer with this input shape, or reshape x")
        y = x.reshape(-1, d) @ W
        if bias:
            y = y + params["b"]
        y_shape = (x.shape[0], W.shape[1]) if flatten else (*x.shape[:-1], W.shape[1])
        return y.reshape(y_shape), (x, W)

    def backward(cache, dout):
        x, W = cache
        y_shape = (x.shape[0], W.shape[1]) if flatten else (*x.shape[:-1], W.shape[1])
        check_dout("affine", dout, y_shape)
        x2, dout2 = x.reshape(-1, W.shape[0]), dout.reshape(-1, W.shape[1])
        grads = {"W": x2.T @ dout2}
        if bias:
            grads["b"] = dout2.sum(axis=0)
        return grads, (dout2 @ W.T).reshape(x.shape)

    return Layer("affine", init, forward, backward)
