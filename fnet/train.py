"""Training: ``fit`` runs the compiled epochs, evaluates, checkpoints, and can resume.

``fit`` reads like the book's ``Trainer``, one phase per helper:

1. ``_check_inputs``: the arguments and the data, before anything is compiled;
2. ``plan``: steps per epoch and how many epochs (``check_batch_size`` once);
3. ``_start``: parameters and optimizer state, from ``net.init``, ``params=``
   or, with ``resume=True``, a checkpoint (``check_resume`` once);
4. ``_place``: arrays onto the device, or replicated/split over a mesh;
5. ``_compile``: the epoch and evaluation programs of ``fnet.epoch``, ahead of
   time, side by side in threads;
6. ``_run_epoch``: one compiled epoch, its evaluation, its history record.

Same seed, same result: the key for epoch ``e`` is ``fold_in(run_key, e)``,
so a run resumed from a checkpoint after epoch ``k`` continues exactly as an
uninterrupted one. Every epoch has the same shapes, so the epoch program
compiles once (``iters`` that do not fill the last epoch compile one shorter
variant, once).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from fnet import _args, distributed
from fnet import checkpoint as ckpt_lib
from fnet.core import Layer, param_shapes
from fnet.epoch import SAMPLING, make_evaluate, make_train_epoch
from fnet.losses import Loss

__all__ = ["HISTORY_KEYS", "RESUME_MAY_DIFFER", "SAMPLING", "NonFiniteLossError", "Plan", "TrainResult",
           "check_batch_size", "check_resume", "fit", "make_evaluate", "make_train_epoch", "plan"]

HISTORY_KEYS = ("epoch", "steps", "loss", "train_loss", "train_acc", "test_loss", "test_acc",
                "seconds", "samples_per_s", "elapsed")
RESUME_MAY_DIFFER = frozenset({"epochs", "iters", "data_dir", "no_download", "no_eval_train", "xla_option",
                               "xla_options"})
"""Config keys a resumed run may change: how long it trains, where the data is read from,
what is evaluated, how XLA compiles. Every other key must equal the checkpoint's."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite. Carries the last good state.

    **Attributes:** ``epoch`` (the epoch that failed), ``params``, ``opt_state``,
    ``state`` (from the end of the previous epoch), ``history``.
    """

    def __init__(self, message: str, *, epoch: int, params, opt_state, state, history):
        super().__init__(message)
        self.epoch, self.params, self.opt_state, self.state, self.history = (
            epoch, params, opt_state, state, history)


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


def check_batch_size(batch_size: int, n_train: int, mesh: Mesh | None = None, *,
                     what: str = "batch_size") -> int:
    """The per-host batch; ``ValueError`` naming ``what`` when ``batch_size`` cannot be used.

    It must split evenly over the mesh's devices and leave each host between 1
    and ``n_train`` (its number of training examples) per step.
    """
    hosts = 1 if mesh is None else mesh.shape["hosts"]
    if mesh is not None:
        distributed.check_batch(mesh, batch_size, what)
    per_host = batch_size // hosts
    if not 1 <= per_host <= n_train:
        larger = f": {what} {batch_size} is larger than the training set ({n_train} examples)"
        raise ValueError(f"{what} must be between 1 and the number of training examples ({n_train}); "
                         f"got {batch_size}{larger if per_host > n_train else ''}")
    return per_host


def plan(n_train: int, batch_size: int, *, epochs: int | None, iters: int | None,
         mesh: Mesh | None = None) -> Plan:
    """Cut ``epochs`` passes, or ``iters`` minibatch updates, into epochs of ``n_train // batch`` steps."""
    if (epochs is None) == (iters is None):
        raise ValueError("fit: give exactly one of epochs= or iters=")
    try:
        steps_per_epoch = n_train // check_batch_size(batch_size, n_train, mesh)
    except ValueError as e:
        raise ValueError(f"fit: {e}") from None
    if iters is not None:
        iters = _args.count("fit", "iters", iters, 1)
        total = math.ceil(iters / steps_per_epoch)
        return Plan(steps_per_epoch, total, iters - (total - 1) * steps_per_epoch)
    epochs = _args.count("fit", "epochs", epochs, 1)
    return Plan(steps_per_epoch, epochs, steps_per_epoch)


def check_resume(checkpoint: str | Path, config: Mapping[str, Any], *,
                 spell: Callable[[str], str] = str) -> None:
    """``ValueError`` when ``config`` differs from the checkpoint's in a key outside ``RESUME_MAY_DIFFER``.

    Only keys present in ``config`` are compared; ``spell`` names a key in the
    message (the command line passes ``--option`` spellings).
    """
    saved = ckpt_lib.read_config(checkpoint)["config"]
    diff = {k: (saved.get(k), v) for k, v in config.items()
            if k not in RESUME_MAY_DIFFER and saved.get(k) != v}
    if diff:
        raise ValueError(f"cannot resume from {checkpoint}: the run differs in "
                         + ", ".join(f"{spell(k)} (saved {a!r}, now {b!r})" for k, (a, b) in diff.items()))


def _check_data(x, t, what: str):
    """Validate one ``(x, t)`` pair before anything is compiled; arrays stay where they are."""
    if not isinstance(x, (np.ndarray, jax.Array)):
        x = np.asarray(x)
    if not isinstance(t, (np.ndarray, jax.Array)):
        t = np.asarray(t)
    if x.ndim < 2:
        raise ValueError(f"fit: x_{what} must have a batch axis, shape (N, ...); got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"fit: x_{what} has dtype {x.dtype}; pass floating-point inputs "
                        "(load images with normalize=True, or divide by 255)")
    if len(t) != len(x):
        raise ValueError(f"fit: x_{what} has {len(x)} examples but t_{what} has {len(t)}")
    return x, t


def _check_inputs(train_data: tuple, test_data: tuple | None, xla_options) -> tuple[tuple, tuple | None]:
    if xla_options is not None and (not isinstance(xla_options, Mapping)
                                    or not all(isinstance(k, str) for k in xla_options)):
        raise TypeError(f"fit: xla_options must be a dict of XLA option name -> value, got {xla_options!r}")
    train = _check_data(*train_data, "train")
    return train, None if test_data is None else _check_data(*test_data, "test")


def _resolve_mesh(mesh: Mesh | str | None) -> Mesh | None:
    if isinstance(mesh, str):
        if mesh != "auto":
            raise ValueError(f"fit: mesh must be a jax.sharding.Mesh, None or 'auto'; got {mesh!r}")
        return distributed.default_mesh()
    return mesh


@dataclasses.dataclass
class _Start:
    """Where training starts: the carry ``(params, opt_state, state)``, the epoch and the history."""

    params: Any
    opt_state: Any
    state: Any
    epoch: int
    history: dict[str, list]


def _start(net: Layer, optimizer, key, input_shape, params, checkpoint, resume: bool,
           config: dict) -> _Start:
    @jax.jit  # one compilation, rather than one per eager random op in every layer's init
    def initial(key, params):
        if params is None:
            params, _ = net.init(key, input_shape)
        return params, optimizer.init(params)

    params, opt_state = initial(key, params)
    state = net.init_state(input_shape) if "state" in net.uses else None
    if not resume:
        return _Start(params, opt_state, state, 0, {k: [] for k in HISTORY_KEYS})
    if checkpoint is None:
        raise ValueError("fit: resume=True needs checkpoint=PATH")
    try:
        check_resume(checkpoint, config)
    except ValueError as e:
        raise ValueError(f"fit: {e}") from None
    params_like, _ = param_shapes(net, input_shape)
    ck = ckpt_lib.load(checkpoint, params_like=params_like,
                       opt_state_like=jax.eval_shape(optimizer.init, params_like), state_like=state)
    return _Start(ck.params, ck.opt_state, ck.state, ck.epoch,
                  {k: list(ck.history.get(k, [])) for k in HISTORY_KEYS})


def _place(mesh: Mesh | None, carry: tuple, *arrays):
    """The carry and the data arrays on the device; with a mesh, the carry replicated and
    each host's examples on its own devices."""
    if mesh is None:
        return carry, [None if a is None else jnp.asarray(a) for a in arrays]
    put = functools.partial(distributed.put_data, mesh)
    return distributed.replicate(mesh, carry), [None if a is None else put(a) for a in arrays]


def _compile(lowered: dict, xla_options: Mapping[str, Any] | None) -> dict:
    """Let XLA compile the traced programs side by side in threads (tracing is Python, one at a time)."""
    options = dict(xla_options or {})

    def compile_one(low):
        try:
            return low.compile(options) if options else low.compile()
        except jax.errors.JaxRuntimeError as e:
            if not options or "option" not in str(e):
                raise
            raise ValueError(f"fit: XLA rejected xla_options={options}: {e}") from None

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(lowered))) as pool:
        return dict(zip(lowered, pool.map(compile_one, lowered.values()), strict=True))


def _lower(net, loss, optimizer, run: Plan, first_epoch: int, carry, data, run_key, *, batch_size: int,
           sampling: str, eval_batch_size: int, eval_train: bool, mesh) -> dict:
    """The programs this run needs, traced: one epoch per distinct step count, and evaluation."""
    x_train, t_train, x_test, t_test = data
    params, opt_state, state = carry
    lowered: dict[Any, Any] = {}
    for n_steps in {run.steps(e) for e in range(first_epoch, run.total_epochs)}:
        f = jax.jit(make_train_epoch(net, loss, optimizer, batch_size=batch_size, n_steps=n_steps,
                                     sampling=sampling, mesh=mesh))
        lowered[n_steps] = f.lower(params, opt_state, state, x_train, t_train, run_key)
    evaluate = jax.jit(make_evaluate(net, loss, batch_size=eval_batch_size, mesh=mesh))
    if eval_train:
        lowered["train"] = evaluate.lower(params, state, x_train, t_train)
    if x_test is not None:
        lowered["test"] = evaluate.lower(params, state, x_test, t_test)
    return lowered


def _run_epoch(programs: dict, e: int, n_steps: int, carry: tuple, data, run_key, *, batch_size: int,
               checkpoint, history: dict) -> tuple[tuple, dict]:
    """Epoch ``e`` (0-based): train, stop on a non-finite loss, evaluate; returns the new carry and record."""
    x_train, t_train, x_test, t_test = data
    t1 = time.perf_counter()
    new_carry, losses = programs[n_steps](*carry, x_train, t_train, jax.random.fold_in(run_key, e))
    losses = np.asarray(losses)  # waits for the epoch: the only sync besides the metrics
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
    nan = (np.nan, np.nan)
    tr = programs["train"](params, state, x_train, t_train) if "train" in programs else nan
    te = programs["test"](params, state, x_test, t_test) if "test" in programs else nan
    return new_carry, {"epoch": e + 1, "steps": n_steps, "loss": float(losses.mean()),
                       "train_loss": float(tr[0]), "train_acc": float(tr[1]),
                       "test_loss": float(te[0]), "test_acc": float(te[1]), "seconds": seconds,
                       "samples_per_s": n_steps * batch_size / seconds}


def _format(rec: dict, total_epochs: int) -> str:
    width = len(str(total_epochs))
    test = (f"  test acc {rec['test_acc']:.4f}" if not math.isnan(rec["test_acc"]) else "")
    train = (f"  train acc {rec['train_acc']:.4f}" if not math.isnan(rec["train_acc"]) else "")
    return (f"epoch {rec['epoch']:{width}d}/{total_epochs}  loss {rec['loss']:.4f}{train}{test}"
            f"  {rec['elapsed']:6.1f}s  {rec['samples_per_s']:,.0f} samples/s")


def fit(net: Layer, loss: Loss, optimizer, train_data: tuple, test_data: tuple | None = None, *,
        epochs: int | None = None, iters: int | None = None, batch_size: int = 100, seed: int = 0,
        sampling: str = "shuffle", eval_batch_size: int = 1000, eval_train: bool = True,
        params=None, checkpoint: str | Path | None = None, resume: bool = False,
        config: dict | None = None, log: Callable[[str], None] | None = print,
        mesh: Mesh | str | None = "auto", xla_options: Mapping[str, Any] | None = None) -> TrainResult:
    """Train ``net`` with ``loss`` and ``optimizer`` on ``train_data = (x, t)``.

    **Arguments:**

    - ``epochs`` or ``iters`` (exactly one): passes over the data, or minibatch
      updates (the book's ``iters_num``; an epoch is ``n_train // batch_size`` steps).
    - ``sampling``: ``"shuffle"`` (without replacement, default) or
      ``"replacement"`` (the book's ``np.random.choice`` per step).
    - ``eval_train``: also evaluate on the whole training set each epoch (the book does).
    - ``params``: start from these instead of ``net.init``.
    - ``checkpoint``: a path written atomically after every epoch; with
      ``resume=True`` training continues from it; the seed, batch size, sampling,
      training-set size and every ``config`` entry must equal the checkpoint's, except
      those in ``RESUME_MAY_DIFFER`` (``check_resume``).
    - ``config``: JSON-able description of the run, saved in checkpoints.
    - ``log``: called with one progress line per epoch (``None`` for silence).
    - ``mesh``: train data-parallel over the devices of a ``distributed.make_mesh()``
      mesh; the default ``"auto"`` uses every device when there are several,
      ``None`` one device. ``batch_size`` is the global batch and must be
      divisible by the number of devices. With several processes, ``train_data`` and
      ``test_data`` are this process's shards (``distributed.host_shard``) and
      only process 0 writes the checkpoint.
    - ``xla_options``: XLA compiler options for the epoch and evaluation programs
      (``jax.jit(...).lower(...).compile(compiler_options=...)``), e.g.
      ``{"xla_cpu_experimental_ynn_fusion_type": ""}`` (Eigen matmuls instead of
      YNNPACK on a CPU: faster for the book's 784-50-10 network, slower for larger
      ones; ``docs/speed.md``). An option XLA does not know raises ``ValueError`` before training.

    **Returns:** a ``TrainResult``. **Raises:** ``NonFiniteLossError`` (with the last good
    parameters; the checkpoint on disk keeps the last good epoch) when a loss is
    NaN or infinite.
    """
    t_start = time.perf_counter()
    (x_train, t_train), test = _check_inputs(train_data, test_data, xla_options)
    mesh = _resolve_mesh(mesh)
    run = plan(len(x_train), batch_size, epochs=epochs, iters=iters, mesh=mesh)
    config = {**(config or {}), "seed": seed, "batch_size": batch_size, "sampling": sampling,
              "n_train": len(x_train), **({"xla_options": dict(xla_options)} if xla_options else {})}
    input_shape = (None, *x_train.shape[1:])
    k_init, run_key = jax.random.split(jax.random.key(seed))
    start = _start(net, optimizer, k_init, input_shape, params, checkpoint, resume, config)
    if resume and start.epoch >= run.total_epochs and log:
        log(f"checkpoint {checkpoint} already holds {start.epoch} epochs; nothing to do")
    carry, data = _place(mesh, (start.params, start.opt_state, start.state), x_train, t_train,
                         *(test if test is not None else (None, None)))

    t0 = time.perf_counter()  # ahead-of-time compilation, measured apart from training
    programs = _compile(_lower(net, loss, optimizer, run, start.epoch, carry, data, run_key,
                               batch_size=batch_size, sampling=sampling, eval_batch_size=eval_batch_size,
                               eval_train=eval_train, mesh=mesh), xla_options)
    compile_seconds = time.perf_counter() - t0

    history, train_seconds = start.history, 0.0
    elapsed0 = history["elapsed"][-1] if history["elapsed"] else 0.0
    t_loop = time.perf_counter()
    for e in range(start.epoch, run.total_epochs):
        carry, rec = _run_epoch(programs, e, run.steps(e), carry, data, run_key, batch_size=batch_size,
                                checkpoint=checkpoint, history=history)
        train_seconds += rec["seconds"]
        rec["elapsed"] = elapsed0 + time.perf_counter() - t_loop
        for k in HISTORY_KEYS:
            history[k].append(rec[k])
        if log:
            log(_format(rec, run.total_epochs))
        if checkpoint is not None and jax.process_index() == 0:
            ckpt_lib.save(checkpoint, ckpt_lib.Checkpoint(
                *carry, run_key, e + 1, {k: np.asarray(v) for k, v in history.items()}, config))
    return TrainResult(*carry, {k: np.asarray(v) for k, v in history.items()}, len(history["epoch"]),
                       compile_seconds, train_seconds, time.perf_counter() - t_start)
