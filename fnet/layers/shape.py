"""Layers that only change the shape of their input."""

from __future__ import annotations

import math

from fnet.core import Layer, Static, check_shape
from fnet.layers._checks import float_input, min_rank


def flatten() -> Layer:
    """``(N, d1, ..., dk) -> (N, d1 * ... * dk)``.

    **Derivative:** the identity, reshaped: ``dx = dout.reshape(x.shape)``.
    **Cache:** the input shape (a static value, no array).
    """

    def init(key, input_shape):
        shape = check_shape(input_shape, "flatten")
        min_rank("flatten", shape, 1, "(N, ...)")
        return {}, (shape[0], math.prod(shape[1:]))

    def forward(params, x):
        x = float_input("flatten", x)
        min_rank("flatten", x.shape, 1, "(N, ...)")
        return x.reshape(x.shape[0], -1), Static(x.shape)

    def backward(shape, dout):
        return {}, dout.reshape(shape.value)

    return Layer("flatten", init, forward, backward)
