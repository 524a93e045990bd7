"""Optimizers: the book's ``common/optimizer.py`` as pure functions over parameter pytrees.

An optimizer is an ``Optimizer`` record holding two pure functions::

    state = opt.init(params)
    params, state = opt.update(grads, state, params)

``params`` and ``grads`` are the same pytree (nested dicts such as
``{"affine_0": {"W": ..., "b": ...}, "relu_0": {}}``). ``state`` is a dict of
arrays only, with a structure that never changes from one update to the next,
so it can be saved in a checkpoint and carried through ``lax.scan``:

    ``{"step": int32 scalar, <slot>: a pytree shaped like params, ...}``

``step`` counts the updates already applied; the slots are the book's names
(``v`` for momentum, ``h`` for AdaGrad and RMSprop, ``m`` and ``v`` for Adam).
Everything is ``jit``-able and keeps the dtype of each parameter: float32
parameters stay float32 (and their slots are float32) with ``jax_enable_x64`` on
and whatever the dtype of the gradients.

Notation (the book's): ``W`` a parameter, ``g = dL/dW`` its gradient, ``eta``
the learning rate, ``t`` the number of this update (1 for the first).

**Learning rate.** ``lr`` is a float or a schedule ``step -> lr`` (see
``fnet.schedules``); a schedule is called with ``state["step"]``, the number of
updates already applied, so the first update uses ``schedule(0)``.

**Weight decay** (every optimizer, ``weight_decay=lambda``). Coupled L2, as the
book's ``MultiLayerNet`` does by adding ``0.5 * lambda * sum(W**2)`` to the
loss: before the update, ``g <- g + lambda * W`` for every parameter that
``decay_mask(path, W)`` selects. For Adam this decay passes through the moments
(it is *not* AdamW's decoupled decay ``W <- W - eta * lambda * W``). The default
mask, ``weights_only``, selects parameters whose own key is ``W`` (or the book's
flat ``W1``, ``W2``, ...), so biases, and batch norm's ``gamma`` and ``beta``,
are not decayed, as in the book.

A training step under ``jit``, and many of them under ``lax.scan``::

    opt = optim.adam(lr=schedules.cosine(1e-3, total_steps=1000))
    state = opt.init(params)

    def step(carry, batch):
        params, state = carry
        loss, grads = loss_and_grads(net, losses.softmax_cross_entropy)(params, *batch)
        return opt.update(grads, state, params), loss

    (params, state), history = jax.lax.scan(step, (params, state), batches)
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp

from fnet import _args
from fnet._optimizer import DecayMask, LearningRate, Optimizer, OptState, Params, lift, one_minus_pow

__all__ = ["OPTIMIZERS", "DecayMask", "LearningRate", "OptState", "Optimizer", "Params", "adagrad", "adam",
           "by_name", "clip_by_global_norm", "momentum", "nesterov", "rmsprop", "sgd", "weights_only"]


def weights_only(path: str, param: jax.Array) -> bool:
    """The default ``decay_mask``: decay a parameter iff its own key is ``W`` or ``W<digits>``.

    ``path`` is the key path joined by ``/``: ``"affine_0/W"`` is decayed,
    ``"affine_0/b"`` is not; in the book's flat dict, ``"W1"`` is, ``"b1"`` is not.
    """
    return re.fullmatch(r"W\d*", path.rsplit("/", 1)[-1]) is not None


# --------------------------------------------------------------------------- the optimizers


def sgd(lr: LearningRate = 0.01, *, weight_decay: float = 0.0,
        decay_mask: DecayMask = weights_only) -> Optimizer:
    """Stochastic gradient descent: the book's ``SGD``.

    ``W <- W - eta * g``

    **State:** ``{"step"}``.
    """
    def rule(w, g, slots, lr, t):
        return w - lr * g, ()

    return lift("sgd", (), lr, weight_decay, decay_mask, (), rule)


def momentum(lr: LearningRate = 0.01, momentum: float = 0.9, *, weight_decay: float = 0.0,
             decay_mask: DecayMask = weights_only) -> Optimizer:
    """Momentum SGD: the book's ``Momentum``, with ``alpha = momentum``.

    ``v <- alpha * v - eta * g``;  ``W <- W + v``  (``v`` starts at 0).

    **Arguments:** ``0 <= momentum < 1``. **State:** ``{"step", "v"}``.
    """
    alpha = _args.in_unit("momentum", "momentum", momentum)

    def rule(w, g, slots, lr, t):
        (v,) = slots
        v = alpha * v - lr * g
        return w + v, (v,)

    return lift("momentum", (("momentum", alpha),), lr, weight_decay, decay_mask, ("v",), rule)


def nesterov(lr: LearningRate = 0.01, momentum: float = 0.9, *, weight_decay: float = 0.0,
             decay_mask: DecayMask = weights_only) -> Optimizer:
    """Nesterov's accelerated gradient, in Bengio et al.'s form (arXiv:1212.0901, eq. 7).

    The form evaluates the gradient at ``W`` itself (not at a look-ahead point),
    which is what a network's backward gives::

        W <- W + alpha**2 * v - (1 + alpha) * eta * g      (v: the previous velocity)
        v <- alpha * v - eta * g

    equivalently ``v <- alpha * v - eta * g;  W <- W + alpha * v - eta * g`` (the
    PyTorch/Keras ``nesterov=True`` update, in the book's sign convention).

    The book's ``Nesterov`` cites the same paper but updates ``v`` *before* the
    ``alpha**2 * v`` term, so its step is ``alpha**3 * v - (1 + alpha + alpha**2) * eta * g``,
    not the paper's; we follow the paper (the same discrepancy was reported
    against Chainer, chainer/chainer#4274). With ``v = 0`` the two differ only in
    the size of the gradient step.

    **Arguments:** ``0 <= momentum < 1``. **State:** ``{"step", "v"}``.
    """
    alpha = _args.in_unit("nesterov", "momentum", momentum)

    def rule(w, g, slots, lr, t):
        (v,) = slots
        new_w = w + alpha * alpha * v - (1 + alpha) * lr * g
        return new_w, (alpha * v - lr * g,)

    return lift("nesterov", (("momentum", alpha),), lr, weight_decay, decay_mask, ("v",), rule)


def adagrad(lr: LearningRate = 0.01, eps: float = 1e-7, *, weight_decay: float = 0.0,
            decay_mask: DecayMask = weights_only) -> Optimizer:
    """AdaGrad: the book's ``AdaGrad``.

    ``h <- h + g * g``;  ``W <- W - eta * g / (sqrt(h) + eps)``  (elementwise; ``h`` starts at 0).

    **Arguments:** ``eps > 0`` (the book's ``1e-7``). **State:** ``{"step", "h"}``.
    """
    eps = _args.positive("adagrad", "eps", eps)

    def rule(w, g, slots, lr, t):
        (h,) = slots
        h = h + g * g
        return w - lr * g / (jnp.sqrt(h) + eps), (h,)

    return lift("adagrad", (("eps", eps),), lr, weight_decay, decay_mask, ("h",), rule)


def rmsprop(lr: LearningRate = 0.01, decay: float = 0.99, eps: float = 1e-7, *,
            weight_decay: float = 0.0, decay_mask: DecayMask = weights_only) -> Optimizer:
    """RMSprop: the book's ``RMSprop`` (its ``decay_rate`` is ``decay`` here, written ``rho``).

    ``h <- rho * h + (1 - rho) * g * g``;  ``W <- W - eta * g / (sqrt(h) + eps)``  (``h`` starts at 0).

    **Arguments:** ``0 <= decay < 1``; ``eps > 0``. **State:** ``{"step", "h"}``.
    """
    rho = _args.in_unit("rmsprop", "decay", decay)
    eps = _args.positive("rmsprop", "eps", eps)

    def rule(w, g, slots, lr, t):
        (h,) = slots
        h = rho * h + (1 - rho) * g * g
        return w - lr * g / (jnp.sqrt(h) + eps), (h,)

    return lift("rmsprop", (("decay", rho), ("eps", eps)), lr, weight_decay, decay_mask, ("h",),
                      rule)


def adam(lr: LearningRate = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, *,
         weight_decay: float = 0.0, decay_mask: DecayMask = weights_only) -> Optimizer:
    """Adam, as in Algorithm 1 of Kingma & Ba (arXiv:1412.6980)::

        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**t),   v_hat = v / (1 - beta2**t)
        W <- W - eta * m_hat / (sqrt(v_hat) + eps)

    with ``t`` the number of this update (1 for the first) and ``m, v`` starting at 0.

    The book's ``Adam`` computes the same thing rearranged (the paper's
    "efficient version"): ``eta_t = eta * sqrt(1 - beta2**t) / (1 - beta1**t)``,
    ``W <- W - eta_t * m / (sqrt(v) + 1e-7)``. The two differ only in where
    ``eps`` sits: the book's equals ours with ``eps = 1e-7 / sqrt(1 - beta2**t)``
    (about 3e-6 at ``t = 1``, tending to 1e-7). We keep the paper's form and its
    ``eps = 1e-8``, as PyTorch and Keras do, so results compare with theirs.

    ``1 - beta**t`` is computed as ``-expm1(t * log(beta))``, accurate in float32
    even for ``beta2 = 0.999`` at ``t = 1``.

    **Arguments:** ``0 <= beta1, beta2 < 1``; ``eps > 0``. **State:** ``{"step", "m", "v"}``.
    """
    b1 = _args.in_unit("adam", "beta1", beta1)
    b2 = _args.in_unit("adam", "beta2", beta2)
    eps = _args.positive("adam", "eps", eps)

    def rule(w, g, slots, lr, t):
        m, v = slots
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        cdt = jnp.promote_types(w.dtype, jnp.float32)  # bias corrections in >= float32
        m_hat = m / one_minus_pow(b1, t, cdt)
        v_hat = v / one_minus_pow(b2, t, cdt)
        return w - lr * m_hat / (jnp.sqrt(v_hat) + eps), (m, v)

    return lift("adam", (("beta1", b1), ("beta2", b2), ("eps", eps)), lr, weight_decay,
                      decay_mask, ("m", "v"), rule)


def clip_by_global_norm(optimizer: Optimizer, max_norm: float) -> Optimizer:
    """``optimizer`` applied to gradients rescaled so that their global norm is at most ``max_norm``.

    The book's ``clip_grads`` (``common/util.py``): with ``norm = sqrt(sum of g**2 over every
    leaf)``, the gradients are multiplied by ``max_norm / (norm + 1e-6)`` when that is below 1,
    and left alone otherwise, before the wrapped optimizer's update (and its weight decay).
    The state is the wrapped optimizer's. Recurrent networks need it: their gradients can
    explode over long sequences.
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"clip_by_global_norm: optimizer must be an fnet.optim optimizer, e.g. "
                        f"optim.sgd(0.1); got {optimizer!r}")
    max_norm = _args.positive("clip_by_global_norm", "max_norm", max_norm)

    def update(grads, state, params):
        leaves = jax.tree.leaves(grads)
        norm = jnp.sqrt(sum(jnp.sum(jnp.square(g.astype(jnp.float32))) for g in leaves))
        rate = max_norm / (norm + 1e-6)
        clipped = jax.tree.map(lambda g: jnp.where(rate < 1, g * rate.astype(g.dtype), g), grads)
        return optimizer.update(clipped, state, params)

    return Optimizer("clip_by_global_norm", optimizer.init, update,
                     (("optimizer", optimizer), ("max_norm", max_norm)))


OPTIMIZERS: Mapping[str, Callable[..., Optimizer]] = MappingProxyType({
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "adam": adam,
})
"""The constructors by name, for command lines (``--optimizer adam``). Read-only."""


def by_name(name: str, **hyperparams: Any) -> Optimizer:
    """Build an optimizer from its name (case-insensitive: the book's ``"AdaGrad"`` works).

    Hyperparameters given as ``None`` are dropped, so the constructor's default
    applies: a command line can pass ``momentum=args.momentum`` whatever the
    optimizer, and an optimizer without momentum only objects when a value is
    actually given.

    **Raises:** ``ValueError`` for an unknown name (listing the valid ones) or a
    hyperparameter the optimizer does not take (listing those it takes).
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid names are {', '.join(OPTIMIZERS)}")
    make = OPTIMIZERS[key]
    given = {k: v for k, v in hyperparams.items() if v is not None}
    accepted = list(inspect.signature(make).parameters)
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ValueError(f"{key} takes no hyperparameter {', '.join(unknown)}; "
                         f"it takes {', '.join(accepted)}")
    return make(**given)
