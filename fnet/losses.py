"""Losses: ``forward(y, t) -> (loss, cache)`` and ``backward(cache, dout=1.0) -> dy``.

``y`` is the network output ``(N, C)`` (softmax cross-entropy also takes
sequences ``(N, T, C)``); the loss is a scalar, the mean over the batch (and
time steps). ``backward`` returns ``dloss/dy`` scaled by ``dout``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from fnet._trees import Static
from fnet.errors import DTypeError, ShapeError, shape_str


@dataclasses.dataclass(frozen=True)
class Loss:
    """A loss: ``forward(y, t) -> (loss, cache)``, ``backward(cache, dout=1.0) -> dy``.

    ``loss.with_options(**options)`` is the same loss with keyword options of its
    forward fixed (``softmax_cross_entropy.with_options(ignore_index=0)``), e.g.
    to hand to ``fit``, which calls ``forward(y, t)``.
    """

    name: str
    forward: Callable
    backward: Callable
    doc: str = dataclasses.field(default="", repr=False, compare=False)
    base: Loss | None = dataclasses.field(default=None, repr=False, compare=False)
    """For a loss made by ``with_options``: the loss it fixes options of."""
    options: tuple[str, ...] = dataclasses.field(default=(), repr=False, compare=False)
    """For a loss made by ``with_options``: the names of the options it fixes."""

    def __post_init__(self):
        object.__setattr__(self, "__doc__", self.doc)

    def __repr__(self) -> str:
        return f"losses.{self.name}"

    @property
    def fixed(self) -> dict:
        """The options ``with_options`` fixed (``{}`` for a loss made otherwise)."""
        return dict(getattr(self.forward, "keywords", {}))

    def with_options(self, **options) -> Loss:
        """This loss with ``options`` passed to every ``forward`` (an unknown option raises now, and so
        do a ``mask`` holding NaN or infinity and a ``label_smoothing`` or ``ignore_index`` that
        cannot work)."""
        allowed = set(inspect.signature(self.forward).parameters) - {"y", "t"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise TypeError(f"losses.{self.name}: unknown options {unknown}; it takes "
                            f"{sorted(allowed) or 'none'}")
        if options.get("mask") is not None:
            _finite_mask(self.name, options["mask"])
        if "label_smoothing" in options:
            _smoothing(options["label_smoothing"])
        ignore = options.get("ignore_index")
        if ignore is not None and (isinstance(ignore, bool) or not isinstance(ignore, int)):
            raise TypeError(f"{self.name}: ignore_index must be an int (the padding label), got {ignore!r}")
        forward = functools.partial(self.forward, **options)
        text = ", ".join(f"{k}={v!r}" for k, v in options.items())
        return Loss(f"{self.name}.with_options({text})", forward, self.backward, self.doc,
                    base=self.base or self, options=tuple(sorted({*self.options, *options})))


def targets(name: str, y: jax.Array, t) -> tuple[jax.Array, bool]:
    """Validate targets ``t`` for outputs ``y: (N, ..., C)`` (``(N, C)``, or ``(N, T, C)`` for sequences).

    Returns ``(t, is_labels)``: integer class indices of shape ``y.shape[:-1]``, or
    targets of ``y``'s shape (one-hot rows or probabilities, cast to ``y.dtype``).
    """
    t = jnp.asarray(t)
    if y.ndim < 2:
        raise ShapeError(name, f"expected network outputs y of shape (N, C) or (N, T, C), got "
                               f"{shape_str(y.shape)}")
    if not jnp.issubdtype(y.dtype, jnp.floating):
        raise DTypeError(name, f"network outputs y must be floating point, got {y.dtype}")
    if t.shape == y.shape:
        return t.astype(y.dtype), False
    if t.shape == y.shape[:-1]:
        if not jnp.issubdtype(t.dtype, jnp.integer):
            raise DTypeError(name, f"class-index labels of shape {shape_str(t.shape)} must be integers, "
                                   f"got {t.dtype}; use t.astype(jnp.int32), or pass one-hot targets "
                                   f"of shape {shape_str(y.shape)}")
        return t, True
    raise ShapeError(name, f"targets of shape {shape_str(t.shape)} do not fit outputs of shape "
                           f"{shape_str(y.shape)}: pass class indices of shape {shape_str(y.shape[:-1])} or "
                           f"one-hot/probability targets of shape {shape_str(y.shape)}")


def log_softmax(x: jax.Array) -> jax.Array:
    """``log(softmax(x))`` over the last axis, stable for any finite ``x`` (±1000 included)."""
    shifted = x - jnp.max(x, axis=-1, keepdims=True)
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))


def _weights(y, t, is_labels, mask, ignore_index):
    """Per-position weights ``(N, ...)`` (``None``: every position counts once) and their sum."""
    name = "softmax_cross_entropy"
    positions = y.shape[:-1]
    w = None
    if mask is not None:
        mask = jnp.asarray(mask)
        if not isinstance(mask, jax.core.Tracer):
            _finite_mask(name, mask)
        if mask.shape != positions:
            raise ShapeError(name, f"mask must have one entry per position, shape {shape_str(positions)} "
                                   f"(outputs {shape_str(y.shape)}); got {shape_str(mask.shape)}")
        w = mask.astype(y.dtype)
    if ignore_index is not None:
        if not is_labels:
            raise ShapeError(name, "ignore_index skips positions by their class-index label: pass labels of "
                                   f"shape {shape_str(positions)}, or a mask= with one-hot targets")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise TypeError(f"{name}: ignore_index must be an int (the padding label), got {ignore_index!r}")
        keep = (t != ignore_index).astype(y.dtype)
        w = keep if w is None else w * keep
    if w is None:
        return None, math.prod(positions)
    return w, jnp.sum(w)


def _finite_mask(name: str, mask) -> None:
    """A mask is weights of positions: a NaN one would make the loss 0 and every gradient NaN."""
    host = np.asarray(mask)
    if np.issubdtype(host.dtype, np.floating) and not np.isfinite(host).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(host))[0])
        count = int((~np.isfinite(host)).sum())
        raise ValueError(f"{name}: mask holds {count} NaN or infinite weights, the first {host[where]} at "
                         f"position {list(where)}; a mask weighs positions: pass 1 (or True) for a position "
                         "that counts and 0 (or False) for padding")


def _smoothing(label_smoothing) -> float:
    """``label_smoothing`` checked: a number in ``[0, 1)``."""
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, int | float) or not (
            0 <= label_smoothing < 1):
        raise ValueError(f"softmax_cross_entropy: label_smoothing must be a number in [0, 1) (the weight "
                         f"moved from the target to the uniform distribution, e.g. 0.1), got "
                         f"{label_smoothing!r}")
    return float(label_smoothing)


def _sce_forward(y, t, *, mask=None, ignore_index=None, label_smoothing=0.0):
    eps = _smoothing(label_smoothing)
    t, is_labels = targets("softmax_cross_entropy", y, t)
    w, count = _weights(y, t, is_labels, mask, ignore_index)
    logp = log_softmax(y)
    if is_labels:
        if ignore_index is not None:  # an ignored label may be any value (-100, say): never look it up
            t = jnp.where(t == ignore_index, 0, t)
        # Out-of-range labels give NaN (mode="fill"), never a silent zero loss; a negative one would
        # count from the end (-1 the last class), so it is sent past the end too.
        index = jnp.where(t < 0, y.shape[-1], t)[..., None].astype(jnp.int32)
        per_position = -jnp.take_along_axis(logp, index, axis=-1, mode="fill", fill_value=jnp.nan)[..., 0]
    else:
        per_position = -jnp.sum(t * logp, axis=-1)
    if eps:  # the target (1 - eps) t + eps / C: the term above, plus eps / C of every class
        per_position = (1 - eps) * per_position - eps * jnp.mean(logp, axis=-1)
    if w is None:
        loss = jnp.sum(per_position) / count
    else:  # no counted position: loss 0 and gradient 0, not 0/0
        loss = jnp.where(count > 0, jnp.sum(w * per_position) / jnp.maximum(count, 1e-30), 0.0)
    return loss, (jnp.exp(logp), t, w, count, Static(eps))


def _sce_backward(cache, dout=1.0):
    p, t, w, count, eps = cache
    eps = eps.value
    if t.ndim == p.ndim - 1:
        t = jax.nn.one_hot(t, p.shape[-1], dtype=p.dtype)
    if eps:
        t = (1 - eps) * t + eps / p.shape[-1]
    if w is None:
        return (p - t) * (dout / count)
    return (p - t) * (w * (dout / jnp.maximum(count, 1e-30)))[..., None]


softmax_cross_entropy = Loss("softmax_cross_entropy", _sce_forward, _sce_backward, doc="""\
Softmax followed by cross-entropy: the book's ``SoftmaxWithLoss`` (and, for
sequences, the sequel's ``TimeSoftmaxWithLoss``).

``loss = -(1/M) sum_positions sum_c t_c log softmax(y)_c``, the mean over the
``M`` positions: the ``N`` rows of ``y: (N, C)``, or the ``N * T`` steps of
``y: (N, T, C)``. Computed through a stable log-softmax, so logits of ±1000 give
a finite loss and gradient.

**Targets:** integer class indices of shape ``y.shape[:-1]`` (``(N,)``, ``(N, T)``),
or one-hot/probability targets of ``y``'s shape. A class index outside ``[0, C)``
makes the loss NaN (training stops on it).

**Padding** (keyword options of ``forward``; ``with_options`` fixes them for
``fit``): ``mask``, one weight per position (shape ``y.shape[:-1]``; ``True``/1
counts, ``False``/0 does not), and ``ignore_index``, a label whose positions
do not count (whatever its value, in range or not). The loss is then the mean
over the counted positions, ``sum(w * l) / sum(w)``; with none counted, it is 0
and so is its gradient.

**Cache:** ``(p, t, w, M)``: the softmax probabilities, the targets, the
weights (``None`` without padding) and the count.

**Backward:** ``dy = (p - t) * w / M * dout`` (``t`` one-hot, ``w = 1`` without padding).
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
