"""``fit``: train a network, in phases, as the book's ``Trainer`` does.

1. ``checks.settle``: the arguments and the data, checked before anything is compiled, and
   resolved into the run's ``Settings`` (``fnet.train.settings``);
2. ``_place``: the data onto the device, or split over a mesh, and the sets to evaluate onto
   the evaluation device;
3. ``programs.compile_run``: the programs of the run, traced from shapes alone (the
   initialisation, one epoch program, one evaluation of every set), each compiled in a
   thread as soon as it is traced (the evaluation goes on compiling while the first epoch
   trains);
4. ``_start``: parameters and optimizer state, from the compiled initialisation, ``params=``
   or, with ``resume=True``, the checkpoint;
5. ``loop.run_epochs``: each compiled epoch, checked (stop on divergence), evaluated, recorded
   and checkpointed; with ``eval_device``, the evaluation of epoch ``e`` runs on that device
   while epoch ``e + 1`` trains.

Same seed, same result: the key for epoch ``e`` is ``fold_in(run_key, e)``,
so a run resumed from a checkpoint after epoch ``k`` continues exactly as an
uninterrupted one. Every epoch has the same shapes, so the epoch program
compiles once; ``iters`` that do not fill the last epoch make the step count an
input of that one program (``make_train_epoch(steps=)``), not a second program.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from fnet import checkpoint as ckpt_lib
from fnet import distributed
from fnet.core import Layer, param_shapes
from fnet.losses import Loss
from fnet.optim import Optimizer
from fnet.train import checks
from fnet.train.loop import Start, run_epochs
from fnet.train.programs import compile_run
from fnet.train.settings import DEFAULT_DIVERGENCE, Data, Placed, Settings

__all__ = ["TrainResult", "fit"]


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
    evaluated_beside: bool = False
    """Whether each epoch's evaluation ran on ``eval_device`` while the next epoch trained."""

    def __repr__(self) -> str:
        n_params = sum(int(np.size(p)) for p in jax.tree.leaves(self.params))
        shown = ("loss", "val_acc", "test_acc")
        last = {k: float(v[-1]) for k, v in self.history.items() if len(v) and k in shown}
        metrics = "".join(f", {k} {v:.4f}" for k, v in last.items() if not math.isnan(v))
        return (f"TrainResult(epochs={self.epochs}, {n_params:,} parameters{metrics}, "
                f"train {self.train_seconds:.1f}s, compile {self.compile_seconds:.1f}s)")


def fit(net: Layer, loss: Loss, optimizer: Optimizer, train_data: tuple, test_data: tuple | None = None, *,
        epochs: int | None = None, iters: int | None = None, batch_size: int = 100, seed: int = 0,
        sampling: str = "shuffle", eval_batch_size: int = 1000, eval_train: bool = True,
        params=None, checkpoint: str | Path | None = None, resume: bool = False, overwrite: bool = False,
        config: dict | None = None, log: Callable[[str], None] | None = print,
        mesh: Mesh | str | None = "auto", xla_options: Mapping[str, Any] | None = None,
        divergence: float | None = DEFAULT_DIVERGENCE, clip_norm: float | None = None,
        callbacks: Sequence[Callable[[dict], Any]] = (), keep_best: str | None = None,
        metrics: Sequence[str] | None = None, progress: Callable[[dict], Any] | None = None,
        augment: str | Sequence[str] | None = None, eval_device: jax.Device | None = None,
        val_data: tuple | None = None, val_fraction: float | None = None) -> TrainResult:
    """Train ``net`` with ``loss`` and ``optimizer`` on ``train_data = (x, t)``.

    **Arguments:**

    - ``val_data = (x_val, t_val)`` or ``val_fraction``: a validation set, given, or held out of
      ``train_data`` (that share of it, the same examples for the same seed). It is evaluated after
      every epoch (``val_loss``, ``val_acc`` in the history and every log line), and it is what
      ``keep_best=True`` and ``early_stopping()`` choose on; choosing on the test set warns
      (``stopping.SelectionWarning``).
    - ``epochs`` or ``iters`` (exactly one): passes over the data, or minibatch
      updates (the book's ``iters_num``; an epoch is ``n_train // batch_size`` steps).
    - ``sampling``: ``"shuffle"`` (default) or ``"replacement"`` (the book's ``np.random.choice``);
      ``eval_train``: also evaluate on the whole training set each epoch (the book does);
      ``params``: start from these instead of ``net.init`` (checked against its shapes).
    - ``checkpoint``: written atomically after every epoch. An existing file is refused unless
      ``resume=True`` (continue it: the seed, batch size, sampling, training-set size and ``config``
      must equal the checkpoint's, but ``RESUME_MAY_DIFFER``) or ``overwrite=True`` (replace it).
    - ``config``: JSON-able, saved in checkpoints; ``log``: the devices, then one line per epoch
      (``None``: silent).
    - ``mesh``: data-parallel over ``distributed.make_mesh()`` (``"auto"``: every GPU or TPU when
      there are several, one device on a CPU); ``batch_size`` is global. With several processes
      the data are this process's shards (``distributed.host_shard``); process 0 writes the
      checkpoint. The first line logged names the devices.
    - ``xla_options``: XLA compiler options, e.g. ``{"xla_cpu_experimental_ynn_fusion_type": ""}``
      (``docs/speed.md``), over fnet's defaults (on a CPU, ``programs.CPU_XLA_OPTIONS``: Eigen's
      convolutions rather than YNNPACK's, and ``CPU_SMALL_MATMUL_OPTIONS``, Eigen's matmuls too, for
      a program whose matmuls are all small); an option XLA does not know raises ``ValueError``
      before training.
    - ``divergence``: stop when an epoch's mean loss exceeds this factor times the starting loss
      (``stopping.check_divergence``); ``None`` turns the check off.
    - ``callbacks``: called with each epoch's record (``HISTORY_KEYS``) after its checkpoint; a
      truthy return (a reason, e.g. from ``early_stopping``) stops.
    - ``keep_best``: a history key (``"val_acc"``) or ``True`` (the validation accuracy, else the
      test set's): its best epoch also goes to ``<stem>.best.npz`` (``checkpoint.best_path``);
      ``metrics``: beside the loss (``"accuracy"``, ``"top5"``; default: accuracy for cross-entropy,
      label-smoothed or not, but none where ``mask``/``ignore_index`` padding is fixed).
    - ``progress``: called ``PROGRESS_CHUNKS`` times an epoch with ``{epoch, step, steps, seconds}``;
      ``clip_norm``: clip the gradients' global norm (``optim.clip_by_global_norm``).
    - ``augment``: ``"crop,flip"``: random crops and flips of each training batch (``fnet.train.augment``);
      ``eval_device``: evaluate there (``jax.devices()[1]``) beside training on one device, each epoch's
      evaluation while the next epoch trains unless there are callbacks (``fnet.train.loop``); same results.
      On a CPU a network that convolves several channels is evaluated there after each epoch
      instead (``checks.may_evaluate_beside``; ``TrainResult.evaluated_beside`` says which).

    **Returns:** a ``TrainResult``. **Raises:** before training, ``ValueError``/``TypeError``
    naming the bad argument (NaN data, labels out of range, an unwritable path, ...);
    ``DivergenceError`` (``NonFiniteLossError`` for a NaN loss) with the last good parameters.
    """
    t_start = time.perf_counter()
    run, data = checks.settle(
        net, loss, optimizer, train_data, test_data, epochs=epochs, iters=iters, batch_size=batch_size,
        seed=seed, sampling=sampling, eval_batch_size=eval_batch_size, eval_train=eval_train, params=params,
        checkpoint=checkpoint, resume=resume, overwrite=overwrite, config=config, log=log, mesh=mesh,
        xla_options=xla_options, divergence=divergence, clip_norm=clip_norm, callbacks=callbacks,
        keep_best=keep_best, metrics=metrics, progress=progress, augment=augment, eval_device=eval_device,
        val_data=val_data, val_fraction=val_fraction)
    placed = _place(run, data)
    programs, compile_seconds = compile_run(run, placed, params)
    if run.log:  # once the programs compiled: a run rejected before training logs nothing
        run.log(f"devices: {describe_devices(run)}")
    start = _start(run, programs["init"], params)
    if run.resume and run.first_epoch >= run.plan.total_epochs and run.log:
        run.log(f"checkpoint {run.checkpoint} already holds {run.first_epoch} epochs; nothing to do")
    end = run_epochs(run, programs, start, placed)
    history = {k: np.asarray(v) for k, v in end.history.items()}
    return TrainResult(*end.carry, history, len(history["epoch"]), compile_seconds, end.train_seconds,
                       time.perf_counter() - t_start, end.stopped, run.evaluates_beside)


def describe_devices(run: Settings) -> str:
    """Where the run trains and evaluates: ``1 x cpu (cpu:0), evaluating on cpu:1 beside it``
    (``... after each epoch`` where the evaluation waits for the epoch: ``Settings.evaluates_beside``)."""
    devices = list(run.mesh.devices.flat) if run.mesh is not None else [jax.devices()[0]]
    kind = f"{len(devices)} x {devices[0].device_kind} ({', '.join(str(d) for d in devices[:4])}"
    kind += ", ...)" if len(devices) > 4 else ")"
    hosts = f" on {jax.process_count()} hosts" if jax.process_count() > 1 else ""
    parallel = ", data parallel" if len(devices) > 1 else ""
    return f"{kind}{hosts}{parallel}{describe_evaluation(run.eval_device, run.evaluates_beside)}"


def describe_evaluation(eval_device: jax.Device | None, beside: bool) -> str:
    """``, evaluating on cpu:1 beside it`` (or ``... after each epoch``); ``""`` without ``eval_device``."""
    if eval_device is None:
        return ""
    return f", evaluating on {eval_device} {'beside it' if beside else 'after each epoch'}"


def _place(run: Settings, data: Data) -> Placed:
    """The training set on the device (with a mesh, each host's examples on its own devices), and
    the sets of ``run.eval_sets`` where they are evaluated (the evaluation device, when there is one)."""
    sets = data.sets()

    def put(xt, device=None):
        if run.mesh is not None:
            return tuple(distributed.put_data(run.mesh, a) for a in xt)
        # device_put: no compiled copy program per array, as jnp.asarray would run
        return tuple(jax.device_put(a, device) for a in xt)

    x, t = put(sets["train"])
    if run.eval_device is not None:  # the host arrays, straight onto the evaluation device
        evaluated = tuple(put(sets[k], run.eval_device) for k in run.eval_sets)
    else:
        evaluated = tuple((x, t) if k == "train" else put(sets[k]) for k in run.eval_sets)
    return Placed(x, t, evaluated)


def _start(run: Settings, initial: Callable, params) -> Start:
    """The carry, the history and the run's key from the compiled ``initial(params)`` (given the seed's
    key) or, with ``run.resume``, the carry and history from the checkpoint; replicated over a mesh."""
    params, opt_state, run_key = initial(params)
    state = run.net.init_state(run.input_shape) if run.stateful else None
    history: dict[str, list] = {k: [] for k in run.history_keys}
    if run.resume:
        params_like, _ = param_shapes(run.net, run.input_shape)
        ck = ckpt_lib.load(run.checkpoint, params_like=params_like,
                           opt_state_like=jax.eval_shape(run.optimizer.init, params_like), state_like=state)
        params, opt_state, state = ck.params, ck.opt_state, ck.state
        # a key the checkpoint lacks (a set it did not evaluate) holds NaN for each of its epochs
        history = {k: list(ck.history.get(k, [np.nan] * ck.epoch)) for k in run.history_keys}
    carry = (params, opt_state, state)
    if run.mesh is not None:
        carry = distributed.replicate(run.mesh, carry)
    return Start(carry, history, run_key)
