"""Training: ``fit`` runs the compiled epochs, evaluates, checkpoints, and can resume.

``fit`` reads like the book's ``Trainer``, one phase per helper:

1. ``checks.check_inputs``: the arguments and the data, before anything is compiled;
2. ``plan``: steps per epoch and how many epochs (``check_batch_size`` once);
3. ``_place_data``: the data onto the device, or split over a mesh;
4. ``_lower_init`` and ``_lower``: the programs of the run, traced from shapes alone
   (the initialisation, one epoch program, one evaluation of both sets), each
   compiled in a thread as soon as it is traced (``epoch.compile_all``);
5. ``_start``: parameters and optimizer state, from the compiled initialisation,
   ``params=`` or, with ``resume=True``, a checkpoint (``check_resume`` once, before compiling);
6. ``_run_epoch``: one compiled epoch, its evaluation, its history record.

Same seed, same result: the key for epoch ``e`` is ``fold_in(run_key, e)``,
so a run resumed from a checkpoint after epoch ``k`` continues exactly as an
uninterrupted one. Every epoch has the same shapes, so the epoch program
compiles once; ``iters`` that do not fill the last epoch make the step count an
input of that one program (``make_train_epoch(steps=)``), not a second program.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
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
    compile_all,
    epoch_program,
    lower_in_pieces,
    make_evaluate,
    make_train_epoch,
    plan,
    run_in_pieces,
    shapes_like,
)
from fnet.fit_checks import RESUME_MAY_DIFFER, check_batch_size, check_resume
from fnet.losses import Loss
from fnet.metrics import history_keys
from fnet.metrics import resolve as resolve_metrics
from fnet.stopping import (
    HISTORY_KEYS,
    DivergenceError,
    NonFiniteLossError,
    check_divergence,
    early_stopping,
    metric_mode,
)

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
    is the ahead-of-time compilation of the epoch and evaluation functions.
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
    """Where training starts: the carry ``(params, opt_state, state)``, the epoch and the history."""

    params: Any
    opt_state: Any
    state: Any
    epoch: int
    history: dict[str, list]


def _lower_init(net: Layer, optimizer, key, input_shape, params):
    """The initialisation ``(key, params) -> (params, opt_state)``, traced: one program, compiled
    beside the epoch and evaluation (rather than one per eager random op in every layer's init)."""

    @jax.jit
    def initial(key, params):
        if params is None:
            params, _ = net.init(key, input_shape)
        return params, optimizer.init(params)

    return initial.lower(key, params)


def _start(initial, net: Layer, optimizer, key, input_shape, params, checkpoint, resume: bool,
           keys: tuple[str, ...]) -> _Start:
    """The carry from the compiled ``initial`` (``_lower_init``) or, with ``resume``, the checkpoint."""
    params, opt_state = initial(key, params)
    state = net.init_state(input_shape) if "state" in net.uses else None
    if not resume:
        return _Start(params, opt_state, state, 0, {k: [] for k in keys})
    params_like, _ = param_shapes(net, input_shape)
    ck = ckpt_lib.load(checkpoint, params_like=params_like,
                       opt_state_like=jax.eval_shape(optimizer.init, params_like), state_like=state)
    return _Start(ck.params, ck.opt_state, ck.state, ck.epoch,
                  {k: list(ck.history.get(k, [])) for k in keys})


def _place(mesh: Mesh | None, carry: tuple):
    """The carry on the device; with a mesh, replicated on every device."""
    return carry if mesh is None else distributed.replicate(mesh, carry)


def _place_data(mesh: Mesh | None, *arrays) -> list:
    """The data arrays on the device; with a mesh, each host's examples on its own devices."""
    if mesh is None:
        return [None if a is None else jnp.asarray(a) for a in arrays]
    return [None if a is None else distributed.put_data(mesh, a) for a in arrays]


def _lower(net, loss, optimizer, run: Plan, first_epoch: int, carry, data, run_key, *, batch_size: int,
           sampling: str, eval_batch_size: int, eval_train: bool, mesh, metrics, progress, augment):
    """The programs this run needs, traced one by one (a generator, so that each compiles while the
    next is traced): the epoch (one program for every epoch, a short final one included, or, with
    ``progress``, its ``order`` and ``run`` pieces per chunk length), and one evaluation of both sets."""
    x_train, t_train = data[:2]
    params, opt_state, state = carry
    counts = run.step_counts(first_epoch)
    if progress is None and counts:
        epoch = make_train_epoch(net, loss, optimizer, batch_size=batch_size, n_steps=counts[0],
                                 sampling=sampling, mesh=mesh, augment=augment)

        def numbered_epoch(params, opt_state, state, x, t, run_key, e, *steps):  # epoch e's key: fold_in
            return epoch(params, opt_state, state, x, t, jax.random.fold_in(run_key, e), *steps)

        short = () if len(counts) == 1 else (jnp.int32(counts[0]),)  # epochs of several lengths: an input
        yield "epoch", jax.jit(numbered_epoch).lower(params, opt_state, state, x_train, t_train, run_key,
                                                     jnp.int32(0), *short)
    for n_steps in counts if progress is not None else ():
        yield from lower_in_pieces(net, loss, optimizer, carry, x_train, t_train, run_key,
                                   batch_size=batch_size, n_steps=n_steps, sampling=sampling,
                                   augment=augment).items()
    evaluate = make_evaluate(net, loss, batch_size=eval_batch_size, mesh=mesh, metrics=metrics)

    def after_epoch(params, state, sets):
        """Each set's loss and metrics, and whether each parameter is finite (the divergence check)."""
        return ([evaluate(params, state, *xt) for xt in sets],
                [jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(params)])

    yield "evaluate", jax.jit(after_epoch).lower(params, state, _sets(data, eval_train))


def _sets(data, eval_train: bool) -> list[tuple]:
    """The ``(x, t)`` evaluated after every epoch: the training set with ``eval_train``, the test set."""
    x_train, t_train, x_test, t_test = data
    return ([(x_train, t_train)] if eval_train else []) + ([(x_test, t_test)] if x_test is not None else [])


def _run_epoch(programs: dict, e: int, n_steps: int, carry: tuple, data, run_key, *, batch_size: int,
               checkpoint, history: dict, divergence: float | None, keys: tuple[str, ...], progress,
               eval_train: bool) -> tuple:
    """Epoch ``e`` (0-based): train, stop on divergence, evaluate; returns the new carry and record."""
    x_train, t_train, x_test = data[:3]
    t1 = time.perf_counter()
    if progress is None:
        new_carry, losses = programs["epoch"](*carry, x_train, t_train, run_key, np.int32(e), n_steps)
        losses = np.asarray(losses)[:n_steps]  # waits for the epoch: the only sync besides the metrics
    else:  # the same steps in pieces, reporting between them
        key = jax.random.fold_in(run_key, e)
        new_carry, losses = run_in_pieces(programs, carry, x_train, t_train, key, n_steps=n_steps,
                                          report=lambda done: progress({"epoch": e + 1, "step": done,
                                                                        "steps": n_steps,
                                                                        "seconds": time.perf_counter() - t1}))
    seconds = time.perf_counter() - t1
    bad = ~np.isfinite(losses)
    if bad.any():
        step = int(np.argmax(bad))
        where = f"; the checkpoint {checkpoint} holds epoch {e}" if checkpoint and e > 0 else ""
        raise NonFiniteLossError(
            f"epoch {e + 1}: the training loss became {losses[step]} at step {step + 1} of {n_steps}; "
            f"training stopped and the parameters from the end of epoch {e} were kept{where}. "
            "Try a smaller learning rate, check the inputs for NaN, or check that labels are in range.",
            epoch=e + 1, params=carry[0], opt_state=carry[1], state=carry[2],
            history={k: np.asarray(v) for k, v in history.items()})
    params, _, state = new_carry
    results, finite = programs["evaluate"](params, state, _sets(data, eval_train))
    check_divergence(e, losses, params, carry, history, divergence, checkpoint, finite=np.asarray(finite))
    nan = (np.nan,) * sum(k.startswith("test_") for k in keys)  # the loss and every metric
    tr = results[0] if eval_train else nan
    te = results[-1] if x_test is not None else nan
    measured = {f"train_{k.removeprefix('test_')}": float(v) for k, v in
                zip((k for k in keys if k.startswith("test_")), tr, strict=True)}
    measured |= {k: float(v) for k, v in zip((k for k in keys if k.startswith("test_")), te, strict=True)}
    return new_carry, {"epoch": e + 1, "steps": n_steps, "loss": float(losses.mean()), **measured,
                       "seconds": seconds, "samples_per_s": n_steps * batch_size / seconds}


def best_path(checkpoint: str | Path) -> Path:
    """Where ``keep_best`` saves: ``runs/book.npz`` -> ``runs/book.best.npz``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.best{checkpoint.suffix or '.npz'}")


def _epochs(programs, run: Plan, start: _Start, carry, data, run_key, *, batch_size: int, checkpoint, config,
            divergence, log, callbacks, keep_best, progress, eval_train: bool) -> tuple:
    """The epoch loop: train, record, log, checkpoint (and the best one), ask the callbacks."""
    history, train_seconds, stopped = start.history, 0.0, None
    elapsed0 = history["elapsed"][-1] if history["elapsed"] else 0.0
    sign = 1.0 if keep_best is None or metric_mode(keep_best) == "min" else -1.0
    best = min((sign * v for v in history[keep_best]), default=np.inf) if keep_best else np.inf
    t_loop = time.perf_counter()
    for e in range(start.epoch, run.total_epochs):
        carry, rec = _run_epoch(programs, e, run.steps(e), carry, data, run_key, batch_size=batch_size,
                                checkpoint=checkpoint, history=history, divergence=divergence,
                                keys=tuple(history), progress=progress, eval_train=eval_train)
        train_seconds += rec["seconds"]
        rec["elapsed"] = elapsed0 + time.perf_counter() - t_loop
        for k in history:
            history[k].append(rec[k])
        if log:
            log(_format(rec, run.total_epochs))
        if checkpoint is not None and jax.process_index() == 0:
            arrays = {k: np.asarray(v) for k, v in history.items()}
            saved = ckpt_lib.Checkpoint(*carry, run_key, e + 1, arrays, config)
            ckpt_lib.save(checkpoint, saved)
            if keep_best and sign * rec[keep_best] < best:
                best = sign * rec[keep_best]
                ckpt_lib.save(best_path(checkpoint), saved)
        reasons = [r for r in (cb(dict(rec)) for cb in callbacks) if r]
        if reasons:
            stopped = reasons[0] if isinstance(reasons[0], str) else f"a callback stopped after epoch {e + 1}"
            if log:
                log(f"stopped after epoch {e + 1}: {stopped}")
            break
    return carry, history, train_seconds, stopped


def _format(rec: dict, total_epochs: int) -> str:
    width = len(str(total_epochs))
    shown = [(k, v) for k, v in rec.items() if k.startswith(("train_", "test_")) and not k.endswith("_loss")]
    metrics = "".join(f"  {k.replace('_', ' ')} {v:.4f}" for k, v in shown if not math.isnan(v))
    return (f"epoch {rec['epoch']:{width}d}/{total_epochs}  loss {rec['loss']:.4f}{metrics}"
            f"  {rec['elapsed']:6.1f}s  {rec['samples_per_s']:,.0f} samples/s")


def _resumed_epoch(checkpoint: Path, config: dict) -> int:
    """The epochs ``checkpoint`` holds, once ``check_resume`` accepts it for this run."""
    try:
        check_resume(checkpoint, config)
    except ValueError as e:
        raise ValueError(f"fit: {e}") from None
    return ckpt_lib.read_config(checkpoint)["epoch"]


def _programs(net, loss, optimizer, run: Plan, first_epoch: int, data, k_init, run_key, input_shape,
              params, *, xla_options, mesh, **options) -> tuple[dict, float]:
    """Every program of the run, compiled ahead of time (tracing included, measured apart from
    training): ``({"init", "epoch" (or the pieces), "evaluate"}, seconds)``."""
    t0 = time.perf_counter()
    init = _lower_init(net, optimizer, k_init, input_shape, params)
    state = net.init_state(input_shape) if "state" in net.uses else None
    carry_like = shapes_like(mesh, (*init.out_info, state))
    programs = compile_all(itertools.chain(
        [("init", init)],
        _lower(net, loss, optimizer, run, first_epoch, carry_like, data, run_key, mesh=mesh, **options)),
        xla_options)
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
        augment: str | Sequence[str] | None = None) -> TrainResult:
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
    - ``augment``: ``"crop,flip"``: random crops and flips of each training batch (``fnet.augment``).

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
    mesh = checks.resolve_mesh(mesh, progress)
    run = plan(len(x_train), batch_size, epochs=epochs, iters=iters, mesh=mesh)
    config = {**(config or {}), "seed": seed, "batch_size": batch_size, "sampling": sampling,
              "n_train": len(x_train), **({"xla_options": dict(xla_options)} if xla_options else {}),
              **({"augment": str(augment)} if augment is not None else {})}
    k_init, run_key = jax.random.split(jax.random.key(seed))
    first_epoch = _resumed_epoch(checkpoint, config) if resume else 0
    data = _place_data(mesh, x_train, t_train, *(test if test is not None else (None, None)))
    programs, compile_seconds = _programs(
        net, loss, optimizer, run, first_epoch, data, k_init, run_key, input_shape, params,
        batch_size=batch_size, sampling=sampling, eval_batch_size=eval_batch_size, eval_train=eval_train,
        mesh=mesh, metrics=metrics, progress=progress, augment=augment, xla_options=xla_options)
    start = _start(programs["init"], net, optimizer, k_init, input_shape, params, checkpoint, resume, keys)
    if resume and start.epoch >= run.total_epochs and log:
        log(f"checkpoint {checkpoint} already holds {start.epoch} epochs; nothing to do")
    carry = _place(mesh, (start.params, start.opt_state, start.state))
    carry, history, train_seconds, stopped = _epochs(
        programs, run, start, carry, data, run_key, batch_size=batch_size, checkpoint=checkpoint,
        config=config, divergence=divergence, log=log, callbacks=callbacks, keep_best=keep_best,
        progress=progress, eval_train=eval_train)
    return TrainResult(*carry, {k: np.asarray(v) for k, v in history.items()}, len(history["epoch"]),
                       compile_seconds, train_seconds, time.perf_counter() - t_start, stopped)
