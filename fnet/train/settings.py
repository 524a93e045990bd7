"""The records of a run: its settings, how it is cut into epochs, and its data.

``fit`` checks its arguments once (``fnet.train.checks.settle``) and resolves them into
one frozen ``Settings``; from there on the run's programs (``fnet.train.programs``) and
its epoch loop (``fnet.train.loop``) read that record instead of a dozen keywords.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
from jax.sharding import Mesh

from fnet.core import Layer
from fnet.losses import Loss
from fnet.optim import Optimizer
from fnet.train.augment import Augment

__all__ = ["DEFAULT_DIVERGENCE", "SAMPLING", "Data", "Placed", "Plan", "Settings"]

SAMPLING = ("shuffle", "replacement")
"""``fit(sampling=)``: every example once per epoch, or the book's random minibatches."""

DEFAULT_DIVERGENCE = 10.0
"""``fit(divergence=)``: stop when an epoch's mean loss exceeds this many times the starting loss."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a run is cut into epochs: ``steps_per_epoch``, ``total_epochs``, and the
    ``last_steps`` of the final epoch (fewer when ``iters`` does not fill it)."""

    steps_per_epoch: int
    total_epochs: int
    last_steps: int

    def steps(self, epoch: int) -> int:
        """The number of minibatch steps of epoch ``epoch`` (0-based)."""
        return self.steps_per_epoch if epoch < self.total_epochs - 1 else self.last_steps

    def step_counts(self, first_epoch: int = 0) -> list[int]:
        """The distinct step counts of the epochs from ``first_epoch`` on, the longest first."""
        return sorted({self.steps(e) for e in range(first_epoch, self.total_epochs)}, reverse=True)

    @property
    def total_steps(self) -> int:
        """Every minibatch update of the run."""
        return self.steps_per_epoch * (self.total_epochs - 1) + self.last_steps


@dataclasses.dataclass(frozen=True)
class Settings:
    """A run's settings, checked and resolved before anything is compiled.

    **What is trained:** ``net``, ``loss``, ``optimizer`` (with ``fit(clip_norm=)``'s
    clipping), ``input_shape`` ``(None, *example)``.

    **How:** ``plan`` (epochs and steps), ``batch_size`` (global), ``sampling``,
    ``seed``, ``first_epoch`` (0, or the epochs the checkpoint holds on resume),
    ``augment``; on ``mesh`` (data parallel) or one device, evaluating on
    ``eval_device``, beside the next epoch where ``beside`` (``checks.may_evaluate_beside``);
    ``xla_options`` for every program.

    **What is measured:** ``eval_sets``, the names of the sets evaluated after every
    epoch, in order (``"train"``, ``"val"``, ``"test"``); ``metrics`` (names; ``None``: what the
    loss calls for) and the ``history_keys`` they make; ``eval_batch_size``.

    **When it stops and what is kept:** ``divergence``, ``callbacks``; ``checkpoint``,
    ``resume``, ``keep_best``; ``config``, saved in every checkpoint.

    **What it reports:** ``log`` (a line per epoch), ``progress`` (within an epoch).
    """

    net: Layer
    loss: Loss
    optimizer: Optimizer
    input_shape: tuple
    plan: Plan
    batch_size: int
    sampling: str
    seed: int
    first_epoch: int
    augment: Augment | None
    mesh: Mesh | None
    eval_device: jax.Device | None
    beside: bool
    xla_options: Mapping[str, Any] | None
    eval_sets: tuple[str, ...]
    metrics: Sequence[str] | None
    history_keys: tuple[str, ...]
    eval_batch_size: int
    divergence: float | None
    callbacks: tuple[Callable[[dict], Any], ...]
    checkpoint: Path | None
    resume: bool
    keep_best: str | None
    config: Mapping[str, Any]
    log: Callable[[str], Any] | None
    progress: Callable[[dict], Any] | None

    @property
    def stateful(self) -> bool:
        """Whether the network keeps state (batch norm's running statistics, a stateful RNN)."""
        return "state" in self.net.uses

    @property
    def evaluates_beside(self) -> bool:
        """Whether epoch ``e``'s evaluation runs on ``eval_device`` while epoch ``e + 1`` trains:
        where it may (``beside``), in whole epochs (no ``progress``), and with no callbacks (which
        may stop on an evaluation, so each must see it before the next epoch starts)."""
        return self.beside and self.progress is None and not self.callbacks


@dataclasses.dataclass(frozen=True)
class Data:
    """A run's data, checked: the training set, the validation set (held out to choose a model:
    when to stop, which epoch to keep) and the test set (to report on), each ``None`` but the
    first when the run has none."""

    x_train: Any
    t_train: Any
    x_val: Any = None
    t_val: Any = None
    x_test: Any = None
    t_test: Any = None

    def sets(self) -> dict[str, tuple]:
        """``{"train": (x, t), "val": (x, t), "test": (x, t)}``, those the run has, in that order."""
        pairs = {"train": (self.x_train, self.t_train), "val": (self.x_val, self.t_val),
                 "test": (self.x_test, self.t_test)}
        return {k: xt for k, xt in pairs.items() if xt[0] is not None}


@dataclasses.dataclass(frozen=True)
class Placed:
    """The data on the devices: the training set where training runs (split over a mesh by
    host), and ``eval_sets``, the ``(x, t)`` of ``Settings.eval_sets``, where evaluation runs."""

    x: Any
    t: Any
    eval_sets: tuple[tuple[Any, Any], ...]
