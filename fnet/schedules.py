"""Learning-rate schedules: ``schedule(step) -> lr``.

``step`` is the number of updates already applied (0 for the first update), an
integer: a Python int, or an int32 array (traced inside ``jit`` and
``lax.scan``). Every schedule returns a float32 scalar array, whatever
``jax_enable_x64`` says, and is pure, so an optimizer can call it on the step
count it keeps in its state::

    opt = optim.sgd(lr=schedules.step_decay(0.1, step_size=1000, gamma=0.1))

A schedule is a ``Schedule`` record: callable, with a readable repr that shows
its hyperparameters (``schedules.cosine(lr=0.1, total_steps=1000, ...)``).
Any other function ``step -> lr`` works as well.

The step is converted to float32 for the arithmetic, which is exact up to
2**24 (about 16 million) steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fnet import _args


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule: ``schedule(step) -> lr`` (a float32 scalar array).

    **Fields:** ``name`` (the constructor, e.g. ``"cosine"``), ``fn`` (the pure
    function of the step), ``hyperparams`` (``(name, value)`` pairs, for the repr).
    """

    name: str
    fn: Callable[[jax.Array], jax.Array]
    hyperparams: tuple[tuple[str, Any], ...] = ()

    def __call__(self, step: int | jax.Array) -> jax.Array:
        return self.fn(_as_step(self.name, step))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparams)
        return f"schedules.{self.name}({args})"


def constant(lr: float) -> Schedule:
    """``lr_t = lr`` at every step."""
    lr = _args.positive("schedules.constant", "lr", lr)

    def fn(step):
        return jnp.full((), lr, jnp.float32)

    return Schedule("constant", fn, (("lr", lr),))


def step_decay(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """Multiply the rate by ``gamma`` every ``step_size`` steps.

    ``lr_t = lr * gamma ** floor(t / step_size)``: steps ``0 .. step_size-1`` use
    ``lr``, the next ``step_size`` use ``lr * gamma``, and so on.

    **Arguments:** ``lr > 0``; ``step_size``: a positive int; ``0 < gamma <= 1``.
    """
    lr = _args.positive("schedules.step_decay", "lr", lr)
    step_size = _args.count("schedules.step_decay", "step_size", step_size, minimum=1)
    gamma = _args.number("schedules.step_decay", "gamma", gamma)
    if not 0 < gamma <= 1:
        raise ValueError(f"schedules.step_decay: gamma must be in (0, 1], got {gamma}")

    def fn(step):
        k = (jnp.maximum(step, 0) // step_size).astype(jnp.float32)
        return jnp.float32(lr) * jnp.power(jnp.float32(gamma), k)

    return Schedule("step_decay", fn, (("lr", lr), ("step_size", step_size), ("gamma", gamma)))


def cosine(lr: float, total_steps: int, final_lr: float = 0.0, warmup_steps: int = 0) -> Schedule:
    """Linear warmup, then cosine decay from ``lr`` to ``final_lr`` (Loshchilov & Hutter).

    With ``W = warmup_steps`` and ``T = total_steps``::

        t <  W:      lr_t = lr * (t + 1) / W
        W <= t < T:  lr_t = final_lr + (lr - final_lr) * (1 + cos(pi * (t - W) / (T - W))) / 2
        t >= T:      lr_t = final_lr

    so the first update after warmup uses exactly ``lr``, and ``final_lr`` is
    reached at ``t = T`` and kept after. The warmup counts from ``t + 1`` so that
    no update is wasted with a zero rate; its last step already uses ``lr``.

    **Arguments:** ``lr > 0``; ``total_steps``: a positive int;
    ``0 <= final_lr <= lr``; ``warmup_steps``: an int in ``[0, total_steps)``.
    """
    lr = _args.positive("schedules.cosine", "lr", lr)
    total_steps = _args.count("schedules.cosine", "total_steps", total_steps, minimum=1)
    final_lr = _args.number("schedules.cosine", "final_lr", final_lr)
    if not 0 <= final_lr <= lr:
        raise ValueError(f"schedules.cosine: final_lr must be in [0, lr={lr}], got {final_lr}")
    warmup_steps = _args.count("schedules.cosine", "warmup_steps", warmup_steps, minimum=0)
    if warmup_steps >= total_steps:
        raise ValueError(f"schedules.cosine: warmup_steps ({warmup_steps}) must be less than "
                         f"total_steps ({total_steps})")
    decay_steps = total_steps - warmup_steps

    def fn(step):
        t = step.astype(jnp.float32)
        warm = jnp.float32(lr) * (t + 1) / max(warmup_steps, 1)
        frac = jnp.clip((t - warmup_steps) / decay_steps, 0.0, 1.0)
        decay = jnp.float32(final_lr) + jnp.float32(lr - final_lr) * 0.5 * (1 + jnp.cos(jnp.pi * frac))
        return jnp.where(step < warmup_steps, warm, decay).astype(jnp.float32)

    return Schedule("cosine", fn, (("lr", lr), ("total_steps", total_steps), ("final_lr", final_lr),
                                   ("warmup_steps", warmup_steps)))


def warmup(schedule: Schedule | float, warmup_steps: int) -> Schedule:
    """Linear warmup in front of any schedule: ``lr_t = schedule(t) * (t + 1) / W`` for ``t < W``.

    ``W = warmup_steps`` (an int >= 1); from step ``W`` on, ``schedule(t)`` itself. A float
    is ``constant(lr)``. As in ``cosine``, the warmup counts from ``t + 1``, so no update
    is wasted with a zero rate.
    """
    if not isinstance(schedule, Schedule):
        schedule = constant(schedule)
    warmup_steps = _args.count("schedules.warmup", "warmup_steps", warmup_steps, minimum=1)

    def fn(step):
        ramp = jnp.minimum(1.0, (step.astype(jnp.float32) + 1) / warmup_steps)
        return (schedule(step) * ramp).astype(jnp.float32)

    return Schedule("warmup", fn, (("schedule", schedule), ("warmup_steps", warmup_steps)))


# --------------------------------------------------------------------------- checks


def _as_step(name: str, step) -> jax.Array:
    step = jnp.asarray(step)
    if step.shape != () or not jnp.issubdtype(step.dtype, jnp.integer):
        raise TypeError(f"schedules.{name}: step must be an integer scalar (the number of updates "
                        f"already applied), got {step.dtype} array of shape {step.shape}")
    return step


