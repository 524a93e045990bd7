"""Using a network: gradients (the book's ``TwoLayerNet.gradient``), prediction, accuracy.

All three are pure and ``jax.jit``-able; ``net`` and ``loss`` are static Python values.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from fnet.core import Layer, Params, State, apply
from fnet.errors import ShapeError, shape_str
from fnet.losses import Loss


def loss_and_grads(net: Layer, loss: Loss, *, train: bool = True) -> Callable:
    """Build ``f(params, x, t, *, key=None, state=None)``: forward, loss, handwritten backward.

    **Returns:** ``f`` giving ``(loss, grads)`` with ``grads`` shaped like
    ``params``; for a network that keeps state (batch norm) it gives
    ``(loss, grads, new_state)``. ``key`` is needed when the network draws
    random numbers in training (dropout). Nothing here differentiates
    automatically: ``grads`` come from each layer's ``backward``.
    """
    stateful = "state" in net.uses

    def f(params: Params, x: jax.Array, t: jax.Array, *, key: jax.Array | None = None,
          state: State | None = None):
        y, cache, new_state = apply(net, params, x, key=key, train=train, state=state)
        value, loss_cache = loss.forward(y, t)
        dy = loss.backward(loss_cache, 1.0)
        grads, _ = net.backward(cache, dy)
        return (value, grads, new_state) if stateful else (value, grads)

    return f


def predict(net: Layer, params: Params, x: jax.Array, *, state: State | None = None) -> jax.Array:
    """The network's output for ``x`` in evaluation mode (dropout off, running statistics)."""
    y, _, _ = apply(net, params, x, train=False, state=state)
    return y


def accuracy(net: Layer, params: Params, x: jax.Array, t: jax.Array, *,
             state: State | None = None) -> jax.Array:
    """Fraction of ``x`` whose arg-max output is the label.

    ``t``: class indices ``(N,)`` or one-hot rows ``(N, C)`` (the book's ``one_hot_label``).
    """
    y = predict(net, params, x, state=state)
    return accuracy_of(y, t)


def accuracy_of(y: jax.Array, t: jax.Array) -> jax.Array:
    """Fraction of the predictions of ``y`` whose arg-max equals the label in ``t``.

    ``y: (N, C)`` with labels ``(N,)``, or a sequence's scores ``y: (N, T, C)`` with labels ``(N, T)``
    (per-position accuracy: every position counts once); or one-hot targets of ``y``'s shape.
    """
    t = jnp.asarray(t)
    if t.shape == y.shape:
        t = jnp.argmax(t, axis=-1)
    elif t.shape != y.shape[:-1]:
        raise ShapeError("accuracy", f"labels of shape {shape_str(t.shape)} do not fit outputs of shape "
                                     f"{shape_str(y.shape)}: pass class indices of shape "
                                     f"{shape_str(y.shape[:-1])} or one-hot {shape_str(y.shape)}")
    return jnp.mean(jnp.argmax(y, axis=-1) == t, dtype=jnp.float32)
