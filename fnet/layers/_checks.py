"""Input checks shared by the layers; they run at trace time and cost nothing in jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fnet.errors import ContextError, DTypeError, ShapeError, shape_str


def float_input(layer: str, x) -> jax.Array:
    """``x`` as a JAX array, or a ``DTypeError`` if it is not floating point."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise DTypeError(layer, f"input has dtype {x.dtype}, but layers compute in floating point. "
                                "Convert first, e.g. x.astype(jnp.float32) / 255.0 for images "
                                "(the loaders do this with normalize=True)")
    return x


def min_rank(layer: str, x_shape: tuple, rank: int, layout: str) -> None:
    """Raise a ``ShapeError`` unless ``x_shape`` has at least ``rank`` axes."""
    if len(x_shape) < rank:
        hint = " Add a batch axis, e.g. x[None]." if len(x_shape) == rank - 1 else ""
        raise ShapeError(layer, f"expected an input of shape {layout} (at least {rank} axes), "
                                f"got shape {shape_str(x_shape)}.{hint}")


def exact_rank(layer: str, x_shape: tuple, rank: int, layout: str) -> None:
    """Raise a ``ShapeError`` unless ``x_shape`` has exactly ``rank`` axes."""
    if len(x_shape) != rank:
        hint = " Add a batch axis, e.g. x[None]." if len(x_shape) == rank - 1 else ""
        raise ShapeError(layer, f"expected an input of shape {layout} ({rank} axes), "
                                f"got shape {shape_str(x_shape)}.{hint}")


def mode(layer: str, train) -> bool:
    """``train`` as a Python bool, or a ``ContextError`` if it is missing or not static.

    The mode decides which computation is traced (dropout draws a mask or not), so it
    must be known at trace time: a Python bool, not a traced array.
    """
    if train is None:
        raise ContextError(layer, "behaves differently in training and in evaluation; pass "
                                  "train=True or train=False (e.g. fnet.apply(net, params, x, train=True))")
    if not isinstance(train, (bool, np.bool_)):
        raise ContextError(layer, f"train must be a Python bool, got {type(train).__name__}. Under "
                                  "jax.jit, close over it or mark it static (static_argnames=...), "
                                  "as fnet.loss_and_grads does")
    return bool(train)
