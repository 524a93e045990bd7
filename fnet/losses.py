"""Losses: ``forward(y, t) -> (loss, cache)`` and ``backward(cache, dout=1.0) -> dy``.

``y`` is the network output ``(N, C)``; the loss is a scalar, the mean over the
batch. ``backward`` returns ``dloss/dy`` scaled by ``dout``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from fnet.errors import DTypeError, ShapeError, shape_str


@dataclasses.dataclass(frozen=True)
class Loss:
    """A loss: ``forward(y, t) -> (loss, cache)``, ``backward(cache, dout=1.0) -> dy``."""

    name: str
    forward: Callable
    backward: Callable
    doc: str = dataclasses.field(default="", repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "__doc__", self.doc)

    def __repr__(self) -> str:
        return f"losses.{self.name}"


def targets(name: str, y: jax.Array, t) -> tuple[jax.Array, bool]:
    """Validate targets ``t`` for outputs ``y: (N, C)``.

    Returns ``(t, is_labels)``: integer class indices ``(N,)``, or targets of
    ``y``'s shape (one-hot rows or probabilities, cast to ``y.dtype``).
    """
    t = jnp.asarray(t)
    if y.ndim != 2:
        raise ShapeError(name, f"expected network outputs y of shape (N, C), got {shape_str(y.shape)}")
    if not jnp.issubdtype(y.dtype, jnp.floating):
        raise DTypeError(name, f"network outputs y must be floating point, got {y.dtype}")
    if t.shape == y.shape:
        return t.astype(y.dtype), False
    if t.shape == y.shape[:1]:
        if not jnp.issubdtype(t.dtype, jnp.integer):
            raise DTypeError(name, f"class-index labels of shape {shape_str(t.shape)} must be integers, "
                                   f"got {t.dtype}; use t.astype(jnp.int32), or pass one-hot targets "
                                   f"of shape {shape_str(y.shape)}")
        return t, True
    raise ShapeError(name, f"targets of shape {shape_str(t.shape)} do not fit outputs of shape "
                           f"{shape_str(y.shape)}: pass class indices of shape ({y.shape[0]},) or "
                           f"one-hot/probability targets of shape {shape_str(y.shape)}")


def log_softmax(x: jax.Array) -> jax.Array:
    """``log(softmax(x))`` over the last axis, stable for any finite ``x`` (±1000 included)."""
    shifted = x - jnp.max(x, axis=-1, keepdims=True)
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))


def _sce_forward(y, t):
    t, is_labels = targets("softmax_cross_entropy", y, t)
    logp = log_softmax(y)
    n = y.shape[0]
    if is_labels:
        # Out-of-range labels give NaN (mode="fill"), never a silent zero loss.
        picked = jnp.take_along_axis(logp, t[:, None].astype(jnp.int32), axis=1, mode="fill",
                                     fill_value=jnp.nan)
        loss = -jnp.sum(picked) / n
    else:
        loss = -jnp.sum(t * logp) / n
    return loss, (jnp.exp(logp), t)


def _sce_backward(cache, dout=1.0):
    p, t = cache
    if t.ndim == 1:
        t = jax.nn.one_hot(t, p.shape[-1], dtype=p.dtype)
    return (p - t) * (dout / p.shape[0])


softmax_cross_entropy = Loss("softmax_cross_entropy", _sce_forward, _sce_backward, doc="""\
Softmax followed by cross-entropy: the book's ``SoftmaxWithLoss``.

``loss = -(1/N) sum_n sum_c t_nc log softmax(y_n)_c``, computed through a
stable log-softmax, so logits of ±1000 give a finite loss and gradient.

**Targets:** integer class indices ``(N,)``, or one-hot/probability rows ``(N, C)``.
A class index outside ``[0, C)`` makes the loss NaN (training stops on it).

**Cache:** ``(p, t)``: the softmax probabilities and the targets.

**Backward:** ``dy = (p - t) / N * dout`` (``t`` one-hot).
""")


def _mse_forward(y, t):
    t, is_labels = targets("mean_squared_error", y, t)
    if is_labels:
        raise ShapeError("mean_squared_error", f"needs targets of the outputs' shape "
                                               f"{shape_str(y.shape)}; got class indices "
                                               f"{shape_str(t.shape)}. Use jax.nn.one_hot(t, {y.shape[1]})")
    diff = y - t
    return 0.5 * jnp.sum(diff * diff) / y.shape[0], diff


def _mse_backward(diff, dout=1.0):
    return diff * (dout / diff.shape[0])


mean_squared_error = Loss("mean_squared_error", _mse_forward, _mse_backward, doc="""\
The book's ``0.5 * sum((y - t)^2)``, averaged over the batch.

**Targets:** the outputs' shape ``(N, C)``. **Cache:** ``y - t``.
**Backward:** ``dy = (y - t) / N * dout``.
""")
