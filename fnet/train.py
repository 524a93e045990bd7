"""Training: ``fit`` runs the compiled epochs, evaluates, checkpoints, and can resume.

``fit`` reads like the book's ``Trainer``, one phase per helper:

1. ``checks.check_inputs``: the arguments and the data, before anything is compiled;
2. ``plan``: steps per epoch and how many epochs (``check_batch_size`` once);
3. ``_place_data``: the data onto the device, or split over a mesh;
4. ``_lower_init`` and ``_lower``: the programs of the run, traced from shapes alone
   (the initialisation, one epoch program, one evaluation of both sets), each
   compiled in a thread as soon as it is traced (``programs.compile_all``; the evaluation
   goes on compiling while the first epoch trains);
5. ``_start``: parameters and optimizer state, from the compiled initialisation,
   ``params=`` or, with ``resume=True``, a checkpoint (``check_resume`` once, before compiling);
6. ``loop.run_epochs``: each compiled epoch, checked (stop on divergence), evaluated and
   recorded; with ``eval_device``, the evaluation of epoch ``e`` runs on that device while
   epoch ``e + 1`` trains.

Same seed, same result: the key for epoch ``e`` is ``fold_in(run_key, e)``,
so a run resumed from a checkpoint after epoch ``k`` continues exactly as an
uninterrupted one. Every epoch has the same shapes, so the epoch program
compiles once; ``iters`` that do not fill the last epoch make the step count an
input of that one program (``make_train_epoch(steps=)``), not a second program.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from fnet import augment as augmentation
from fnet import checkpoint as ckpt_lib
from fnet import distributed, optim
from fnet import fit_checks as checks
from fnet.core import Layer, param_shapes
from fnet.epoch import (
    PROGRESS_CHUNKS,
    SAMPLING,
    Plan,
    chunk_lengths,
    finite_leaves,
    lower_in_pieces,
    make_evaluate,
    make_train_epoch,
    plan,
    shapes_like,
)
from fnet.fit_checks import RESUME_MAY_DIFFER, check_batch_size, check_resume
from fnet.loop import best_path, run_epochs
from fnet.losses import Loss
from fnet.metrics import history_keys
from fnet.metrics import resolve as resolve_metrics
from fnet.programs import compile_all, epoch_program
from fnet.stopping import HISTORY_KEYS, DivergenceError, NonFiniteLossError, early_stopping

__all__ = [
    "DEFAULT_DIVERGENCE",
    "HISTORY_KEYS",
    "PROGRESS_CHUNKS",
    "RESUME_MAY_DIFFER",
    "SAMPLING",
    "DivergenceError",
    "NonFiniteLossError",
    "Plan",
    "TrainResult",
    "best_path",
    "check_batch_size",
    "check_resume",
    "chunk_lengths",
    "early_stopping",
    "fit",
    "make_evaluate",
    "make_train_epoch",
    "plan",
]

DEFAULT_DIVERGENCE = 10.0
"""``fit(divergence=)``: stop when an epoch's mean loss exceeds this many times the starting loss."""


@dataclasses.dataclass
class TrainResult:
    """What ``fit`` returns.

    ``history`` maps each of ``HISTORY_KEYS`` to an array with one entry per
    epoch run in this call and earlier (when resumed). ``compile_seconds``
    is the ahead-of-time compilation of the programs the first epoch needs (the
    initialisation and the epoch; the evaluation compiles while the first epoch trains).
    """

    params: Any
    opt_state: Any
    state: Any
    history: dict[str, np.ndarray]
    epochs: int
    compile_seconds: float
    train_seconds: float
    total_seconds: float
    stopped: str | None = None
    """Why training stopped before its last epoch (a callback's reason), or ``None``."""

    def __repr__(self) -> str:
        n_params = sum(int(np.size(p)) for p in jax.tree.leaves(self.params))
        last = {k: float(v[-1]) for k, v in self.history.items() if len(v) and k in ("loss", "test_acc")}
        metrics = "".join(f", {k} {v:.4f}" for k, v in last.items() if not math.isnan(v))
        return (f"TrainResult(epochs={self.epochs}, {n_params:,} parameters{metrics}, "
                f"train {self.train_seconds:.1f}s, compile {self.compile_seconds:.1f}s)")


@dataclasses.dataclass
class _Start:
    """Where training starts: the carry ``(params, opt_state, state)``, the epoch, the history and
    the run's key."""

    params: Any
    opt_state: Any
    state: Any
    epoch: int
    history: dict[str, list]
    key: Any


def _lower_init(net: Layer, optimizer, seed_key, input_shape, params):
    """The initialisation ``(seed_key, params) -> (params, opt_state, run_key)``, traced: one program,
    compiled beside the epoch and evaluation (rather than one per eager random op in every layer's
    init). ``seed_key`` splits into the key of ``net.init`` and the run's key (each epoch folds its
    number into the run's key)."""

    @jax.jit
    def initial(seed_key, params):
        k_init, run_key = jax.random.split(seed_key)
        if params is None:
            params, _ = net.init(k_init, input_shape)
        return params, optimizer.init(params), run_key

    return initial.lower(seed_key, params)


def _start(initial, net: Layer, optimizer, input_shape, params, checkpoint, resume: bool,
           keys: tuple[str, ...]) -> _Start:
    """The carry and the run's key from the compiled ``initial(params)`` (``_lower_init``, given the
    seed's key) or, with ``resume``, the carry from the checkpoint."""
    params, opt_state, run_key = initial(params)
    state = net.init_state(input_shape) if "state" in net.uses else None
    if not resume:
        return _Start(params, opt_state, state, 0, {k: [] for k in keys}, run_key)
    params_like, _ = param_shapes(net, input_shape)
    ck = ckpt_lib.load(checkpoint, params_like=params_like,
                       opt_state_like=jax.eval_shape(optimizer.init, params_like), state_like=state)
    return _Start(ck.params, ck.opt_state, ck.state, ck.epoch,
                  {k: list(ck.history.get(k, [])) for k in keys}, run_key)


def _place(mesh: Mesh | None, carry: tuple):
    """The carry on the device; with a mesh, replicated on every device."""
    return carry if mesh is None else distributed.replicate(mesh, carry)


def _place_data(mesh: Mesh | None, train: tuple, test: tuple | None, eval_train: bool,
                eval_device) -> tuple[list, list]:
    """``(x_train, t_train, x_test, t_test)`` on the device (with a mesh, each host's examples on its
    own devices), and the ``(x, t)`` pairs to evaluate (``_sets``)."""
    host = (*train, *(test if test is not None else (None, None)))
    if mesh is None:  # device_put: no compiled copy program per array, as jnp.asarray would run
        data = [None if a is None else jax.device_put(a) for a in host]
    else:
        data = [None if a is None else distributed.put_data(mesh, a) for a in host]
    return data, _sets(data, eval_train) if eval_device is None else _sets(host, eval_train, eval_device)


def _lower(net, loss, optimizer, run: Plan, first_epoch: int, carry, data, eval_sets, run_key, *,
           batch_size: int, sampling: str, eval_batch_size: int, mesh, metrics, progress, augment,
           eval_device):
    """The programs this run needs, traced one by one (a generator, so that each compiles while the
    next is traced): the epoch (one program for every epoch, a short final one included, or, with
    ``progress``, its ``order`` and ``run`` pieces per chunk length), each also returning whether every
    parameter is finite; and one evaluation of ``eval_sets`` (none when there is nothing to evaluate),
    for ``eval_device`` when one is given. ``run_key``: a key of the run key's type (only its type
    is traced; the run's own key comes out of the initialisation program)."""
    x_train, t_train = data[:2]
    params, opt_state, state = carry
    counts = run.step_counts(first_epoch)
    if progress is None and counts:
        epoch = make_train_epoch(net, loss, optimizer, batch_size=batch_size, n_steps=counts[0],
                                 sampling=sampling, mesh=mesh, augment=augment)

        def numbered_epoch(params, opt_state, state, x, t, run_key, e, *steps):  # epoch e's key: fold_in
            carry, losses = epoch(params, opt_state, state, x, t, jax.random.fold_in(run_key, e), *steps)
            return carry, losses, finite_leaves(carry[0])

        short = () if len(counts) == 1 else (np.int32(counts[0]),)  # epochs of several lengths: an input
        yield "epoch", jax.jit(numbered_epoch).lower(params, opt_state, state, x_train, t_train, run_key,
                                                     np.int32(0), *short)
    for n_steps in counts if progress is not None else ():
        yield from lower_in_pieces(net, loss, optimizer, carry, x_train, t_train, run_key,
                                   batch_size=batch_size, n_steps=n_steps, sampling=sampling,
                                   augment=augment).items()
    if not eval_sets:
        return
    evaluate = make_evaluate(net, loss, batch_size=eval_batch_size, mesh=mesh, metrics=metrics)

    def after_epoch(params, state, sets):
        """Each set's loss and metrics."""
        return [evaluate(params, state, *xt) for xt in sets]

    if eval_device is not None:
        params, state = shapes_like(eval_device, (params, state))
    yield "evaluate", jax.jit(after_epoch).lower(params, state, eval_sets)


def _sets(data, eval_train: bool, device=None) -> list[tuple]:
    """The ``(x, t)`` evaluated after every epoch: the training set with ``eval_train``, the test set
    (placed on ``device``, the evaluation device, when one is given)."""
    x_train, t_train, x_test, t_test = data
    sets = ([(x_train, t_train)] if eval_train else []) + ([(x_test, t_test)] if x_test is not None else [])
    return sets if device is None else [tuple(jax.device_put(a, device) for a in xt) for xt in sets]


def _resumed_epoch(checkpoint: Path, config: dict) -> int:
    """The epochs ``checkpoint`` holds, once ``check_resume`` accepts it for this run."""
    try:
        check_resume(checkpoint, config)
    except ValueError as e:
        raise ValueError(f"fit: {e}") from None
    return ckpt_lib.read_config(checkpoint)["epoch"]


def _programs(net, loss, optimizer, run: Plan, first_epoch: int, data, eval_sets, seed: int,
              input_shape, params, *, xla_options, mesh, **options) -> tuple[dict, float]:
    """Every program of the run, compiled ahead of time (tracing included, measured apart from
    training): ``({"init" (given the seed's key), "epoch" (or the pieces), "evaluate" (when there is a
    set to evaluate)}, seconds)``. The evaluation is still compiling when this returns
    (``programs.Compiling``): its compilation overlaps the first epoch; ``seconds`` counts the others."""
    t0 = time.perf_counter()
    seed_key = jax.random.key(seed)
    init = _lower_init(net, optimizer, seed_key, input_shape, params)
    state = net.init_state(input_shape) if "state" in net.uses else None
    carry_like = shapes_like(mesh, (*init.out_info[:2], state))
    programs = compile_all(itertools.chain(
        [("init", init)],
        _lower(net, loss, optimizer, run, first_epoch, carry_like, data, eval_sets, seed_key, mesh=mesh,
               **options)),
        xla_options, later=("evaluate",))
    programs["init"] = functools.partial(programs["init"], seed_key)
    if "epoch" in programs:
        programs["epoch"] = epoch_program(programs["epoch"], dynamic=len(run.step_counts(first_epoch)) > 1)
    return programs, time.perf_counter() - t0


def fit(net: Layer, loss: Loss, optimizer, train_data: tuple, test_data: tuple | None = None, *,
        epochs: int | None = None, iters: int | None = None, batch_size: int = 100, seed: int = 0,
        sampling: str = "shuffle", eval_batch_size: int = 1000, eval_train: bool = True,
        params=None, checkpoint: str | Path | None = None, resume: bool = False, overwrite: bool = False,
        config: dict | None = None, log: Callable[[str], None] | None = print,
        mesh: Mesh | str | None = "auto", xla_options: Mapping[str, Any] | None = None,
        divergence: float | None = DEFAULT_DIVERGENCE, clip_norm: float | None = None,
        callbacks: Sequence[Callable[[dict], Any]] = (), keep_best: str | None = None,
        metrics: Sequence[str] | None = None, progress: Callable[[dict], Any] | None = None,
        augment: str | Sequence[str] | None = None, eval_device: jax.Device | None = None) -> TrainResult:
    """Train ``net`` with ``loss`` and ``optimizer`` on ``train_data = (x, t)``.

    **Arguments:**

    - ``epochs`` or ``iters`` (exactly one): passes over the data, or minibatch
      updates (the book's ``iters_num``; an epoch is ``n_train // batch_size`` steps).
    - ``sampling``: ``"shuffle"`` (default) or ``"replacement"`` (the book's ``np.random.choice``);
      ``eval_train``: also evaluate on the whole training set each epoch (the book does);
      ``params``: start from these instead of ``net.init`` (checked against its shapes).
    - ``checkpoint``: written atomically after every epoch. An existing file is refused unless
      ``resume=True`` (continue it: the seed, batch size, sampling, training-set size and ``config``
      must equal the checkpoint's, but ``RESUME_MAY_DIFFER``) or ``overwrite=True`` (replace it).
    - ``config``: JSON-able, saved in checkpoints; ``log``: one line per epoch (``None``: silent).
    - ``mesh``: data-parallel over ``distributed.make_mesh()`` (``"auto"``: every device when
      there are several); ``batch_size`` is global. With several processes the data are this
      process's shards (``distributed.host_shard``); process 0 writes the checkpoint.
    - ``xla_options``: XLA compiler options, e.g. ``{"xla_cpu_experimental_ynn_fusion_type": ""}``
      (``docs/speed.md``); an option XLA does not know raises ``ValueError`` before training.
    - ``divergence``: stop when an epoch's mean loss exceeds this factor times the starting loss
      (``stopping.check_divergence``); ``None`` turns the check off.
    - ``callbacks``: called with each epoch's record (``HISTORY_KEYS``) after its checkpoint; a
      truthy return (a reason, e.g. from ``early_stopping``) stops.
    - ``keep_best``: a history key (``"test_acc"``): its best epoch also goes to ``<stem>.best.npz``;
      ``metrics``: beside the loss (``"accuracy"``, ``"top5"``; default: accuracy for cross-entropy,
      label-smoothed or not, but none where ``mask``/``ignore_index`` padding is fixed).
    - ``progress``: called ``epoch.PROGRESS_CHUNKS`` times an epoch with ``{epoch, step, steps, seconds}``;
      ``clip_norm``: clip the gradients' global norm (``optim.clip_by_global_norm``).
    - ``augment``: ``"crop,flip"``: random crops and flips of each training batch (``fnet.augment``);
      ``eval_device``: evaluate there (``jax.devices()[1]``) beside training on one device, each epoch's
      evaluation while the next epoch trains unless there are callbacks (``fnet.loop``); same results.

    **Returns:** a ``TrainResult``. **Raises:** before training, ``ValueError``/``TypeError``
    naming the bad argument (NaN data, labels out of range, an unwritable path, ...);
    ``DivergenceError`` (``NonFiniteLossError`` for a NaN loss) with the last good parameters.
    """
    t_start = time.perf_counter()
    checks.check_run_args(net, loss, optimizer, epochs=epochs, iters=iters, batch_size=batch_size, seed=seed,
                          sampling=sampling, samplings=SAMPLING, eval_batch_size=eval_batch_size,
                          eval_train=eval_train, resume=resume, overwrite=overwrite, log=log, config=config,
                          divergence=divergence)
    optimizer = optimizer if clip_norm is None else optim.clip_by_global_norm(optimizer, clip_norm)
    (x_train, t_train), test, input_shape = checks.check_inputs(net, train_data, test_data, params,
                                                                xla_options)
    augment = augmentation.parse(augment, x_shape=x_train.shape)
    checkpoint = checks.check_checkpoint_path(checkpoint, resume=resume, overwrite=overwrite)
    keys = history_keys([k for k, _ in resolve_metrics(metrics, loss)])
    checks.check_hooks(callbacks, keep_best, keys, checkpoint=checkpoint, has_test=test is not None,
                       eval_train=eval_train)
    mesh = checks.resolve_mesh(mesh, progress, eval_device)
    run = plan(len(x_train), batch_size, epochs=epochs, iters=iters, mesh=mesh)
    config = {**(config or {}), "seed": seed, "batch_size": batch_size, "sampling": sampling,
              "n_train": len(x_train), **({"xla_options": dict(xla_options)} if xla_options else {}),
              **({"augment": str(augment)} if augment is not None else {})}
    first_epoch = _resumed_epoch(checkpoint, config) if resume else 0
    data, eval_sets = _place_data(mesh, (x_train, t_train), test, eval_train, eval_device)
    programs, compile_seconds = _programs(
        net, loss, optimizer, run, first_epoch, data, eval_sets, seed, input_shape, params,
        batch_size=batch_size, sampling=sampling, eval_batch_size=eval_batch_size, mesh=mesh,
        metrics=metrics, progress=progress, augment=augment, eval_device=eval_device, xla_options=xla_options)
    start = _start(programs["init"], net, optimizer, input_shape, params, checkpoint, resume, keys)
    if resume and start.epoch >= run.total_epochs and log:
        log(f"checkpoint {checkpoint} already holds {start.epoch} epochs; nothing to do")
    carry = _place(mesh, (start.params, start.opt_state, start.state))
    carry, history, train_seconds, stopped = run_epochs(
        programs, run, start.epoch, carry, start.history, data, eval_sets, start.key, batch_size=batch_size,
        checkpoint=checkpoint, config=config, divergence=divergence, log=log, callbacks=callbacks,
        keep_best=keep_best, progress=progress, eval_train=eval_train, eval_device=eval_device)
    return TrainResult(*carry, {k: np.asarray(v) for k, v in history.items()}, len(history["epoch"]),
                       compile_seconds, train_seconds, time.perf_counter() - t_start, stopped)
