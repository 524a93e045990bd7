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

Each optimizer is a per-leaf **rule** (the book's update for one array) that
``lift`` turns into an ``Optimizer`` over parameter pytrees, adding what every
optimizer shares: the learning-rate schedule, weight decay, each parameter's dtype
kept, and the checks of grads and state against params (errors name the first key
path that differs).
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

import dataclasses
import inspect
import math
import numbers
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnet import _args
from fnet._trees import check_like, leaves_with_paths
from fnet.schedules import Schedule

__all__ = ["OPTIMIZERS", "DecayMask", "LearningRate", "OptState", "Optimizer", "Params", "adagrad", "adam",
           "adamw", "by_name", "clip_by_global_norm", "matrices_only", "momentum", "nesterov", "rmsprop",
           "sgd", "weights_only"]


# --------------------------------------------------------------------------- the record and lifting a rule

Params = Any  # a pytree of floating-point arrays
OptState = dict  # {"step": int32 scalar, slot name: pytree shaped like params}
LearningRate = float | Callable[[jax.Array], jax.Array]
DecayMask = Callable[[str, jax.Array], bool]


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """An optimizer: a name and two pure functions (see the module docstring).

    **Fields:**

    - ``name``: the constructor's name, e.g. ``"adam"``.
    - ``init(params) -> state``.
    - ``update(grads, state, params) -> (new_params, new_state)``.
    - ``hyperparams``: ``(name, value)`` pairs, shown by the repr
      (``optim.adam(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-08)``).
    """

    name: str
    init: Callable[[Params], OptState]
    update: Callable[[Params, OptState, Params], tuple[Params, OptState]]
    hyperparams: tuple[tuple[str, Any], ...] = ()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={fmt(v)}" for k, v in self.hyperparams)
        return f"optim.{self.name}({args})"


# rule(w, g, slots, lr, t) -> (new_w, new_slots): one parameter leaf; ``slots`` are
# this leaf's entries of the state's slot trees, ``lr`` is a scalar (a Python float or
# an array of w's dtype), ``t`` the int32 number of this update.
Rule = Callable[..., tuple[jax.Array, tuple[jax.Array, ...]]]


def lift(name: str, hyper: tuple, lr, weight_decay, decay_mask, slots: tuple[str, ...],
         rule: Rule, *, decoupled: bool = False) -> Optimizer:
    """Lift a per-leaf ``rule`` onto parameter pytrees, with lr schedule and weight decay.

    The decay is coupled (``g <- g + lambda * W`` before the rule: the book's L2 term), or with
    ``decoupled`` the rule's step and the decay side by side (``W <- rule(W) - eta * lambda * W``:
    AdamW's, Loshchilov and Hutter).
    """
    lr = check_lr(name, lr)
    weight_decay = _args.number(name, "weight_decay", weight_decay)
    if weight_decay < 0:
        raise ValueError(f"{name}: weight_decay must be >= 0, got {weight_decay}")
    if not callable(decay_mask):
        raise TypeError(f"{name}: decay_mask must be a function (path, param) -> bool, "
                        f"got {decay_mask!r}")

    def decayed(path: str, w) -> bool:
        if weight_decay == 0:
            return False
        selected = decay_mask(path, w)
        if not isinstance(selected, (bool, np.bool_)):
            raise TypeError(f"{name}: decay_mask({path!r}, param) must return a Python bool (it is "
                            f"evaluated once per parameter when tracing), got {selected!r}")
        return bool(selected)

    def init(params: Params) -> OptState:
        leaves = leaves_with_paths(params)
        for path, w in leaves:
            if not jnp.issubdtype(jnp.result_type(w), jnp.floating):
                raise TypeError(f"{name}: parameter {path!r} has dtype {jnp.result_type(w)}; "
                                "optimizers update floating-point parameters only")
        if weight_decay > 0 and leaves and not any(decayed(p, w) for p, w in leaves):
            raise ValueError(f"{name}: weight_decay={weight_decay} but decay_mask "
                             f"{getattr(decay_mask, '__name__', decay_mask)!r} selects none of the "
                             f"parameters {[p for p, _ in leaves]}; pass decay_mask=... to choose them")
        state = {"step": jnp.zeros((), jnp.int32)}
        for s in slots:
            state[s] = jax.tree.map(lambda w: jnp.zeros(jnp.shape(w), jnp.result_type(w)), params)
        return state

    def update(grads: Params, state: OptState, params: Params) -> tuple[Params, OptState]:
        check_like(f"{name}.update", "grads", grads, params)
        check_state(name, state, slots, params)
        step = state["step"]
        lr_now = lr if isinstance(lr, float) else lr_at(name, lr, step)
        t = step + 1
        leaves = leaves_with_paths(params)
        treedef = jax.tree.structure(params)
        g_leaves = jax.tree.leaves(grads)
        slot_leaves = [jax.tree.leaves(state[s]) for s in slots]
        new_w, new_slots = [], [[] for _ in slots]
        for i, ((path, w), g) in enumerate(zip(leaves, g_leaves, strict=True)):
            dtype = jnp.result_type(w)
            g = jnp.asarray(g).astype(dtype)
            if decayed(path, w) and not decoupled:
                g = g + weight_decay * w
            lr_w = lr_now if isinstance(lr_now, float) else lr_now.astype(dtype)
            w2, s2 = rule(w, g, tuple(sl[i] for sl in slot_leaves), lr_w, t)
            if decayed(path, w) and decoupled:
                w2 = w2 - lr_w * weight_decay * w
            new_w.append(jnp.asarray(w2).astype(dtype))
            for out, s in zip(new_slots, s2, strict=True):
                out.append(jnp.asarray(s).astype(dtype))
        new_state = {"step": step + 1}
        for s, out in zip(slots, new_slots, strict=True):
            new_state[s] = jax.tree.unflatten(treedef, out)
        return jax.tree.unflatten(treedef, new_w), new_state

    shown = (("lr", lr), *hyper)
    if weight_decay > 0:
        shown = (*shown, ("weight_decay", weight_decay), ("decay_mask", decay_mask))
    return Optimizer(name, init, update, shown)


def one_minus_pow(beta: float, t: jax.Array, dtype) -> jax.Array:
    """``1 - beta**t`` without cancellation: ``-expm1(t * log(beta))``, log taken in float64."""
    if beta == 0:
        return jnp.ones((), dtype)
    return -jnp.expm1(t.astype(dtype) * math.log(beta))


def lr_at(name: str, schedule: Callable, step: jax.Array) -> jax.Array:
    value = jnp.asarray(schedule(step))
    if value.shape != ():
        raise ValueError(f"{name}: the learning-rate schedule must return a scalar, got shape "
                         f"{value.shape} from {schedule!r}")
    return value


def check_state(name: str, state, slots: tuple[str, ...], params) -> None:
    keys = ["step", *slots]
    if not isinstance(state, Mapping) or sorted(state) != sorted(keys):
        got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
        raise ValueError(f"{name}.update: state must be the dict that {name}.init(params) returned, "
                         f"with keys {keys}; got {got}")
    step = state["step"]
    if jnp.shape(step) != () or not jnp.issubdtype(jnp.result_type(step), jnp.integer):
        raise ValueError(f"{name}.update: state['step'] must be an integer scalar array, got "
                         f"{jnp.result_type(step)} of shape {jnp.shape(step)}")
    for s in slots:
        check_like(f"{name}.update", f"state[{s!r}]", state[s], params)



def check_lr(name: str, lr) -> LearningRate:
    if callable(lr):
        return lr
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"{name}: lr must be a positive number or a schedule step -> lr, got {lr!r}")
    return _args.positive(name, "lr", lr)


def fmt(value) -> str:
    if isinstance(value, Schedule) or not callable(value):
        return repr(value)
    return getattr(value, "__qualname__", repr(value))


def matrices_only(path: str, param: jax.Array) -> bool:
    """``adamw``'s default ``decay_mask``: decay a parameter iff it has two or more dimensions (weight
    matrices, convolution kernels, embedding tables), not biases or normalisation scales."""
    return jnp.ndim(param) >= 2


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


def adamw(lr: LearningRate = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, *,
          weight_decay: float = 0.01, decay_mask: DecayMask = matrices_only) -> Optimizer:
    """Adam with decoupled weight decay (Loshchilov and Hutter, arXiv:1711.05101): ``torch.optim.AdamW``.

    ``adam``'s update, and beside it, not through the moments, ``W <- W - eta * lambda * W`` for
    the parameters ``decay_mask`` selects::

        W <- W - eta * (m_hat / (sqrt(v_hat) + eps) + lambda * W)

    With ``adam(weight_decay=...)`` the decay is the book's L2 term, added to the gradient, and
    so divided by ``sqrt(v_hat)`` like it: a weight with large gradients is hardly decayed.
    Decoupled, every selected weight shrinks by the same factor ``1 - eta * lambda`` a step.

    **Arguments:** as ``adam``; ``weight_decay`` ``lambda`` (default 0.01, PyTorch's); ``decay_mask``
    (default ``matrices_only``: weights of two or more dimensions, as nanoGPT decays them: not
    biases, not layer norm's ``gamma`` and ``beta``). **State:** ``{"step", "m", "v"}``.
    """
    b1 = _args.in_unit("adamw", "beta1", beta1)
    b2 = _args.in_unit("adamw", "beta2", beta2)
    eps = _args.positive("adamw", "eps", eps)

    def rule(w, g, slots, lr, t):
        m, v = slots
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        cdt = jnp.promote_types(w.dtype, jnp.float32)
        m_hat, v_hat = m / one_minus_pow(b1, t, cdt), v / one_minus_pow(b2, t, cdt)
        return w - lr * m_hat / (jnp.sqrt(v_hat) + eps), (m, v)

    return lift("adamw", (("beta1", b1), ("beta2", b2), ("eps", eps)), lr, weight_decay, decay_mask,
                ("m", "v"), rule, decoupled=True)


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
    "adamw": adamw,
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
        raise ValueError(f"optim.by_name: unknown optimizer {name!r}; valid names are "
                         f"{', '.join(OPTIMIZERS)}")
    make = OPTIMIZERS[key]
    given = {k: v for k, v in hyperparams.items() if v is not None}
    accepted = list(inspect.signature(make).parameters)
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ValueError(f"{key} takes no hyperparameter {', '.join(unknown)}; "
                         f"it takes {', '.join(accepted)}")
    return make(**given)
