"""Weight initialisers (``fnet.initializers``): ``init(key, shape, dtype) -> array``.

``fan_in`` is the number of inputs feeding one output unit: ``shape[0]`` for an
affine weight ``(in, out)``, ``kh * kw * c_in`` for a convolution kernel
``(kh, kw, c_in, c_out)``; in general the product of all but the last axis.

Layers accept an initialiser, a float (the standard deviation of a normal, the
book's ``weight_init_std``), or the names ``"he"`` and ``"xavier"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from fnet import _args

Initializer = Callable[[jax.Array, tuple, jnp.dtype], jax.Array]


def fan_in(shape: tuple) -> int:
    """Inputs per output unit: the product of all axes but the last."""
    return math.prod(shape[:-1]) if len(shape) > 1 else 1


def standard_normal(key: jax.Array, shape: tuple, dtype=jnp.float32) -> jax.Array:
    """``jax.random.normal(key, shape, dtype)``, drawn as one flat vector and reshaped.

    The numbers are the same (element ``i``'s random counter is its flat index either
    way); XLA compiles the flat draw several times faster on the CPU than a small
    matrix's (``docs/speed.md``, "The cold start"), which is most of a small network's
    initialisation.
    """
    return jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)


def normal(std: float = 0.01) -> Initializer:
    """``std * N(0, 1)``: the book's ``weight_init_std * np.random.randn(...)``."""
    std = _args.non_negative("initializers.normal", "std", std)
    if std == 0:
        return zeros()

    def init(key, shape, dtype=jnp.float32):
        return std * standard_normal(key, shape, dtype)

    return init


def xavier() -> Initializer:
    """Normal with ``std = sqrt(1 / fan_in)``: the book's "Xavier" for sigmoid/tanh.

    (The book uses fan-in only; Glorot and Bengio's paper averages fan-in and fan-out.)
    """

    def init(key, shape, dtype=jnp.float32):
        return math.sqrt(1.0 / fan_in(shape)) * standard_normal(key, shape, dtype)

    return init


def he() -> Initializer:
    """Normal with ``std = sqrt(2 / fan_in)``: He et al., for ReLU networks."""

    def init(key, shape, dtype=jnp.float32):
        return math.sqrt(2.0 / fan_in(shape)) * standard_normal(key, shape, dtype)

    return init


def zeros() -> Initializer:
    """All zeros (biases)."""

    def init(key, shape, dtype=jnp.float32):
        return jnp.zeros(shape, dtype)

    return init


def resolve(spec: Initializer | float | str, where: str = "initializers.resolve", arg: str = "init"
            ) -> Initializer:
    """Turn a float (std of a normal), ``"he"``, ``"xavier"``, or an initialiser into one. ``where``
    and ``arg`` name the layer and the argument in the error of a spec that is none of these."""
    if isinstance(spec, str):
        named = {"he": he, "relu": he, "xavier": xavier, "sigmoid": xavier}
        if spec.lower() not in named:
            raise ValueError(f"{where}: {arg} is an unknown initializer {spec!r}; use 'he', 'xavier', a "
                             "float standard deviation, or a function (key, shape, dtype) -> array")
        return named[spec.lower()]()
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return normal(_args.non_negative(where, arg, spec, about="the standard deviation of a normal"))
    if callable(spec):
        return spec
    raise _args.ArgumentTypeError(f"{where}: {arg} must be an initializer function, a float std, 'he' or "
                                  f"'xavier'; got {spec!r}")
