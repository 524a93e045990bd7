"""The ``Optimizer`` record and the machinery every optimizer of ``fnet.optim`` shares.

``lift`` turns a per-leaf update rule into an ``Optimizer`` over parameter
pytrees: the learning-rate schedule, coupled weight decay, the dtype of each
parameter kept, and the checks of grads and state against params (errors name
the first key path that differs). ``fnet.optim`` holds the book's rules.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnet import _args
from fnet._trees import check_like, leaves_with_paths
from fnet.schedules import Schedule

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
               rule: Rule) -> Optimizer:
    """Lift a per-leaf ``rule`` onto parameter pytrees, with lr schedule and weight decay."""
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
            if decayed(path, w):
                g = g + weight_decay * w
            lr_w = lr_now if isinstance(lr_now, float) else lr_now.astype(dtype)
            w2, s2 = rule(w, g, tuple(sl[i] for sl in slot_leaves), lr_w, t)
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
