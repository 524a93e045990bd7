"""Metrics that ``fit`` evaluates beside the loss: ``accuracy``, ``top<k>``.

A metric is a mean over predictions of ``y: (N, C)`` outputs (or ``(N, T, C)`` for a
sequence: per position) against the targets (class indices or one-hot rows). Which
ones a run reports follows from its loss: a classification loss
(``softmax_cross_entropy``) gets ``accuracy`` by default, a regression loss
(``mean_squared_error``) none, so a regression's history holds no meaningless
accuracy. ``fit(metrics=("accuracy", "top5"))`` asks for more.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from fnet import _args
from fnet.losses import Loss, softmax_cross_entropy
from fnet.net import accuracy_of

__all__ = ["SETS", "Metric", "history_keys", "resolve", "top_k_accuracy"]

Metric = tuple[str, Callable[[jax.Array, jax.Array], jax.Array]]  # (history key, fn(y, t) -> mean)


def top_k_accuracy(k: int) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Fraction of predictions (rows of ``(N, C)``, positions of ``(N, T, C)``) whose label is among the
    ``k`` largest outputs. ``k`` is at least 1 and at most ``C`` (checked when ``y`` arrives)."""
    k = _args.count("top_k_accuracy", "k", k, 1)

    def fn(y, t):
        if k > y.shape[-1]:
            raise ValueError(f"top{k}: the network gives {y.shape[-1]} scores, fewer than {k}; ask for "
                             f"top1 to top{y.shape[-1]}")
        t = jnp.asarray(t)
        labels = jnp.argmax(t, axis=-1) if t.shape == y.shape else t
        top = jax.lax.top_k(y, k)[1]
        return jnp.mean(jnp.any(top == labels[..., None], axis=-1), dtype=jnp.float32)

    return fn


def resolve(metrics: Sequence[str] | None, loss: Loss) -> tuple[Metric, ...]:
    """The ``(key, fn)`` pairs of the metric names (``None``: what the loss calls for)."""
    if metrics is None:
        # accuracy for cross-entropy, smoothed or not; not where padding positions would count
        padded = {"mask", "ignore_index"} & set(loss.options)
        metrics = ("accuracy",) if (loss.base or loss) is softmax_cross_entropy and not padded else ()
    if isinstance(metrics, str) or not all(isinstance(m, str) for m in metrics):
        raise TypeError(f"fit: metrics must be a list of names such as ['accuracy', 'top5'], got {metrics!r}")
    out = []
    for name in metrics:
        if name == "accuracy":
            out.append(("acc", accuracy_of))
        elif (match := re.fullmatch(r"top([1-9][0-9]*)", name)):
            out.append((name, top_k_accuracy(int(match.group(1)))))
        else:
            raise ValueError(f"fit: unknown metric {name!r}; fnet has 'accuracy' and 'top<k>' (e.g. 'top5')")
    if len({k for k, _ in out}) != len(out):
        raise ValueError(f"fit: metrics {list(metrics)} name one metric twice")
    return tuple(out)


SETS = ("train", "val", "test")
"""The sets an epoch is evaluated on, in the order of a record: training, validation, test."""


def history_keys(keys: Sequence[str]) -> tuple[str, ...]:
    """The keys of an epoch's record for metrics with history keys ``keys`` (``"acc"``, ``"top5"``):
    the loss and each metric on each of ``SETS`` (NaN for a set a run does not evaluate)."""
    measured = [f"{s}_{k}" for s in SETS for k in ("loss", *keys)]
    return ("epoch", "steps", "loss", *measured, "seconds", "samples_per_s", "elapsed")
