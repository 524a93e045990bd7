"""Elementwise activations and softmax. None has parameters: ``params == {}``.

Each works on any input shape and returns ``y`` of the same shape.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from fnet.core import Layer, check_shape
from fnet.layers._checks import float_input, min_rank


def _same_shape(name):
    def init(key, input_shape):
        return {}, check_shape(input_shape, name)

    return init


def relu() -> Layer:
    """``y = x if x > 0 else 0``.

    **Derivative:** ``dy/dx = 1 if x > 0 else 0``; at ``x == 0`` it is **0**, as in
    the book's ``Relu`` (``mask = x <= 0``). (Some texts use ``x >= 0``; the
    function has no derivative at 0, and 0 is a valid subgradient.)

    **Cache:** the boolean mask ``x > 0`` (one byte per element, not the input).
    """

    def forward(params, x):
        x = float_input("relu", x)
        mask = x > 0
        return jnp.where(mask, x, 0), mask

    def backward(mask, dout):
        return {}, jnp.where(mask, dout, 0)

    return Layer("relu", _same_shape("relu"), forward, backward)


def sigmoid() -> Layer:
    """``y = 1 / (1 + exp(-x))``, computed by ``lax.logistic``, so ``x = ±1000`` neither
    overflows nor gives NaN (``y`` is exactly 0 or 1 there).

    **Derivative:** ``dy/dx = y (1 - y)``. (A common slip writes ``(1 + y) * y``; the
    gradient tests reject it.)

    **Cache:** the output ``y``.
    """

    def forward(params, x):
        y = jax.nn.sigmoid(float_input("sigmoid", x))
        return y, y

    def backward(y, dout):
        return {}, dout * y * (1.0 - y)

    return Layer("sigmoid", _same_shape("sigmoid"), forward, backward)


def tanh() -> Layer:
    """``y = tanh(x)``. **Derivative:** ``dy/dx = 1 - y^2``. **Cache:** ``y``."""

    def forward(params, x):
        y = jnp.tanh(float_input("tanh", x))
        return y, y

    def backward(y, dout):
        return {}, dout * (1.0 - y * y)

    return Layer("tanh", _same_shape("tanh"), forward, backward)


def identity() -> Layer:
    """``y = x``. **Derivative:** 1. **Cache:** nothing (``()``)."""

    def forward(params, x):
        return float_input("identity", x), ()

    def backward(cache, dout):
        return {}, dout

    return Layer("identity", _same_shape("identity"), forward, backward)


def softmax() -> Layer:
    """``y_i = exp(x_i) / sum_j exp(x_j)`` over the last axis, computed as
    ``exp(x - max(x))`` so that ``x = ±1000`` stays finite.

    **Shapes:** ``x: (..., C) -> y: (..., C)``.

    **Derivative:** ``dy_i/dx_j = y_i (delta_ij - y_j)``, so
    ``dx = y * (dout - sum(dout * y))`` (sum over the last axis).
    For training, prefer ``losses.softmax_cross_entropy`` on logits: it fuses the
    two and its backward is simply ``(y - t) / N``.

    **Cache:** the output ``y``.
    """

    def init(key, input_shape):
        shape = check_shape(input_shape, "softmax")
        min_rank("softmax", shape, 1, "(..., C)")
        return {}, shape

    def forward(params, x):
        x = float_input("softmax", x)
        min_rank("softmax", x.shape, 1, "(..., C)")
        e = jnp.exp(x - jnp.max(x, axis=-1, keepdims=True))
        y = e / jnp.sum(e, axis=-1, keepdims=True)
        return y, y

    def backward(y, dout):
        return {}, y * (dout - jnp.sum(dout * y, axis=-1, keepdims=True))

    return Layer("softmax", init, forward, backward)


def gelu(approximate: bool = False) -> Layer:
    """The Gaussian error linear unit (Hendrycks and Gimpel 2016): ``y = x * Phi(x)``, ``Phi`` the
    standard normal's distribution function; the activation of the transformer's MLP.

    ``approximate=False`` (default; ``torch.nn.GELU()`` and nanoGPT): the exact
    ``Phi(x) = (1 + erf(x / sqrt(2))) / 2``. ``approximate=True``: GPT-2's tanh form,
    ``y = x (1 + tanh(u)) / 2`` with ``u = sqrt(2/pi) (x + 0.044715 x^3)``.

    **Shapes:** any; ``y`` has ``x``'s shape. **Cache:** ``x``.

    **Derivative:** exact: ``dy/dx = Phi(x) + x phi(x)``, ``phi(x) = exp(-x^2/2) / sqrt(2 pi)``
    the normal's density; tanh form: ``dy/dx = (1 + tanh(u)) / 2 + x (1 - tanh(u)^2) / 2 *
    sqrt(2/pi) (1 + 3 * 0.044715 x^2)``.
    """
    if not isinstance(approximate, bool):
        raise TypeError(f"gelu: approximate must be True or False, got {approximate!r}")
    c = math.sqrt(2 / math.pi)

    def forward(params, x):
        x = float_input("gelu", x)
        if approximate:
            return 0.5 * x * (1 + jnp.tanh(c * (x + 0.044715 * x ** 3))), x
        return 0.5 * x * (1 + lax.erf(x / math.sqrt(2))), x

    def backward(x, dout):
        if approximate:
            t = jnp.tanh(c * (x + 0.044715 * x ** 3))
            return {}, dout * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x))
        cdf = 0.5 * (1 + lax.erf(x / math.sqrt(2)))
        pdf = jnp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return {}, dout * (cdf + x * pdf)

    return Layer("gelu", _same_shape("gelu"), forward, backward)
