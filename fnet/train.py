"""Training loop: one jitted function runs a whole epoch.

Per epoch, on the device and with no Python work per step:

1. shuffle: one ``fnet.shuffle.permutation`` of the training set (JAX's
   algorithm with a cheaper sort), reshaped into a
   ``(steps, batch)`` array of example indices (or, with
   ``sampling="replacement"``, the book's ``np.random.choice`` per step:
   ``steps x batch`` random indices);
2. ``lax.scan`` over those index rows: gather the minibatch, forward, loss,
   handwritten backward, optimizer update. (Gathering each minibatch inside
   the scan measured 20% faster than gathering the whole epoch up front, and
   needs 1 MiB of scratch memory instead of a second copy of the data set;
   see the README's speed section.)
3. evaluation of loss and accuracy on the training and test sets, in fixed-size
   chunks under ``jit``.

``steps = n_train // batch_size``: the final partial batch is **dropped**; since
every epoch draws a new permutation, a different remainder is left out each
time and no example is lost for good. Every epoch has the same shapes, so
the epoch function compiles once (``iters`` that do not fill the last epoch
compile one shorter variant, once).

Same seed, same result: the key for epoch ``e`` is ``fold_in(run_key, e)``,
so a run resumed from a checkpoint after epoch ``k`` continues exactly as an
uninterrupted one.
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
from jax.sharding import PartitionSpec as P

from fnet import checkpoint as ckpt_lib
from fnet import distributed, shuffle
from fnet.core import Layer, apply, param_shapes
from fnet.losses import Loss
from fnet.net import accuracy_of, loss_and_grads

SAMPLING = ("shuffle", "replacement")
HISTORY_KEYS = ("epoch", "steps", "loss", "train_loss", "train_acc", "test_loss", "test_acc",
                "seconds", "samples_per_s", "elapsed")


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


def make_train_epoch(net: Layer, loss: Loss, optimizer, *, batch_size: int, n_steps: int,
                     sampling: str = "shuffle", grad_fn: Callable | None = None,
                     mesh: Mesh | None = None) -> Callable:
    """The (unjitted) epoch function ``(params, opt_state, state, x, t, key) -> (carry, losses)``.

    ``carry = (params, opt_state, state)``; ``losses: (n_steps,)`` minibatch losses.
    ``grad_fn`` defaults to ``loss_and_grads(net, loss)`` (the handwritten
    backward); ``scripts/bench.py`` passes an autodiff one to compare the two
    inside the identical loop. With a ``mesh`` (see ``fnet.distributed``), ``x`` and
    ``t`` are the global ``(hosts, n_per_host, ...)`` arrays of ``distributed.put_data``
    and every minibatch is split over the devices.
    """
    if sampling not in SAMPLING:
        raise ValueError(f"fit: sampling must be one of {SAMPLING}, got {sampling!r}")
    grad_fn = grad_fn or loss_and_grads(net, loss, train=True)
    stateful = "state" in net.uses
    uses_key = "key" in net.uses

    def step(carry, batch, axes=None):
        params, opt_state, state = carry
        xb, tb, step_key = batch
        kwargs = {"key": step_key if uses_key else None, "state": state}
        if stateful:
            value, grads, state = grad_fn(params, xb, tb, **kwargs)
        else:
            value, grads = grad_fn(params, xb, tb, **kwargs)
        if axes:  # data parallel: average the handwritten gradients over every device
            value, grads, state = jax.lax.pmean((value, grads, state), axes)
        params, opt_state = optimizer.update(grads, opt_state, params)
        return (params, opt_state, state), value

    def indices(key, n, rows):
        """``(n_steps, rows)`` example indices for one epoch."""
        if sampling == "shuffle":
            return shuffle.permutation(key, n)[: n_steps * rows].reshape(n_steps, rows)
        return jax.random.randint(key, (n_steps, rows), 0, n)  # the book's np.random.choice

    def gather_step(x, t, axes=None):
        def body(carry, inputs):
            rows, step_key = inputs
            # rows come from a permutation of range(n) or randint(0, n): no bounds clamping needed
            xb = x.at[rows].get(mode="promise_in_bounds")
            tb = t.at[rows].get(mode="promise_in_bounds")
            return step(carry, (xb, tb, step_key), axes)

        return body

    def epoch(params, opt_state, state, x, t, key):
        k_order, k_steps = jax.random.split(key)
        idx = indices(k_order, x.shape[0], batch_size)
        return jax.lax.scan(gather_step(x, t), (params, opt_state, state),
                            (idx, jax.random.split(k_steps, n_steps)))

    if mesh is None:
        return epoch

    hosts, devices = mesh.shape["hosts"], mesh.shape["devices"]
    per_device = distributed.check_batch(mesh, batch_size)
    per_host = batch_size // hosts

    def local_epoch(params, opt_state, state, x, t, key):
        x, t = x[0], t[0]  # this host's examples
        h, d = jax.lax.axis_index("hosts"), jax.lax.axis_index("devices")
        k_order, k_steps = jax.random.split(key)
        if hosts > 1:  # each host shuffles its own shard
            k_order = jax.random.fold_in(k_order, h)
        # the host's minibatches, as on one device; this device takes its columns
        idx = jax.lax.dynamic_slice_in_dim(indices(k_order, x.shape[0], per_host), d * per_device,
                                           per_device, axis=1)
        step_keys = jax.random.split(k_steps, n_steps)
        if uses_key:  # different dropout masks on different devices
            step_keys = jax.vmap(jax.random.fold_in, (0, None))(step_keys, h * devices + d)
        return jax.lax.scan(gather_step(x, t, distributed.AXES), (params, opt_state, state), (idx, step_keys))

    return jax.shard_map(local_epoch, mesh=mesh, out_specs=(P(), P()),
                         in_specs=(P(), P(), P(), P("hosts"), P("hosts"), P()))


def make_evaluate(net: Layer, loss: Loss, *, batch_size: int = 1000, mesh: Mesh | None = None) -> Callable:
    """The (unjitted) ``(params, state, x, t) -> (mean loss, accuracy)``, in chunks of ``batch_size``.

    With a ``mesh``, ``x`` and ``t`` are global ``(hosts, n_per_host, ...)`` arrays
    and every device evaluates its share of its host's examples.
    """
    stateful = "state" in net.uses

    def chunk(params, state, xb, tb):
        y, _, _ = apply(net, params, xb, train=False, state=state if stateful else None)
        value, _ = loss.forward(y, tb)
        return value * xb.shape[0], accuracy_of(y, tb) * xb.shape[0]

    def sums(params, state, x, t):
        """Summed loss and number correct over ``x``."""
        n = x.shape[0]
        b = min(batch_size, n)
        m = n // b * b
        xs = x[:m].reshape(n // b, b, *x.shape[1:])
        ts = t[:m].reshape(n // b, b, *t.shape[1:])
        parts = jax.lax.map(lambda xt: chunk(params, state, *xt), (xs, ts))
        total_loss, correct = jnp.sum(parts[0]), jnp.sum(parts[1])
        if m < n:  # the tail has a static shape too: no padding, no recompilation
            tail_loss, tail_correct = chunk(params, state, x[m:], t[m:])
            total_loss, correct = total_loss + tail_loss, correct + tail_correct
        return total_loss, correct

    def evaluate(params, state, x, t):
        total_loss, correct = sums(params, state, x, t)
        return total_loss / x.shape[0], correct / x.shape[0]

    if mesh is None:
        return evaluate

    hosts, devices = mesh.shape["hosts"], mesh.shape["devices"]

    def local_evaluate(params, state, x, t):
        x, t = x[0], t[0]
        m = x.shape[0] // devices
        d = jax.lax.axis_index("devices")
        total = jnp.zeros(2, jnp.float32)
        if m:
            mine = sums(params, state, jax.lax.dynamic_slice_in_dim(x, d * m, m),
                        jax.lax.dynamic_slice_in_dim(t, d * m, m))
            total = total + jnp.stack(mine)
        if devices * m < x.shape[0]:  # the few left over: every device computes them, each counts 1/devices
            rest = sums(params, state, x[devices * m:], t[devices * m:])
            total = total + jnp.stack(rest) / devices
        total = jax.lax.psum(total, distributed.AXES)
        return total[0] / (hosts * x.shape[0]), total[1] / (hosts * x.shape[0])

    return jax.shard_map(local_evaluate, mesh=mesh, out_specs=(P(), P()),
                         in_specs=(P(), P(), P("hosts"), P("hosts")))


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
      ``resume=True`` training continues from it (same seed and config required).
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
      ``{"xla_cpu_experimental_ynn_fusion_type": ""}``, which makes the book's
      784-50-10 network ~15% faster on a CPU and larger ones slower (README, speed
      section). An option XLA does not know raises ``ValueError`` before training.

    **Returns:** a ``TrainResult``. **Raises:** ``NonFiniteLossError`` (with the last good
    parameters; the checkpoint on disk keeps the last good epoch) when a loss is
    NaN or infinite.
    """
    t_start = time.perf_counter()
    if (epochs is None) == (iters is None):
        raise ValueError("fit: give exactly one of epochs= or iters=")
    if xla_options is not None and (not isinstance(xla_options, Mapping)
                                    or not all(isinstance(k, str) for k in xla_options)):
        raise TypeError(f"fit: xla_options must be a dict of XLA option name -> value, got {xla_options!r}")
    x_train, t_train = _check_data(*train_data, "train")
    if test_data is not None:
        x_test, t_test = _check_data(*test_data, "test")
    n = len(x_train)
    if isinstance(mesh, str):
        if mesh != "auto":
            raise ValueError(f"fit: mesh must be a jax.sharding.Mesh, None or 'auto'; got {mesh!r}")
        mesh = distributed.default_mesh()
    hosts = 1 if mesh is None else mesh.shape["hosts"]
    if mesh is not None:
        try:
            distributed.check_batch(mesh, batch_size)
        except ValueError as e:
            raise ValueError(f"fit: {e}") from None
    if not 1 <= batch_size // hosts <= n:
        raise ValueError(f"fit: batch_size must be between 1 and the number of training examples ({n}); "
                         f"got {batch_size}")
    steps_per_epoch = n // (batch_size // hosts)
    if iters is not None:
        if iters < 1:
            raise ValueError(f"fit: iters must be >= 1, got {iters}")
        total_epochs = math.ceil(iters / steps_per_epoch)
        last_steps = iters - (total_epochs - 1) * steps_per_epoch
    else:
        if epochs < 1:
            raise ValueError(f"fit: epochs must be >= 1, got {epochs}")
        total_epochs, last_steps = epochs, steps_per_epoch

    run = {"seed": seed, "batch_size": batch_size, "sampling": sampling, "n_train": n}
    config = {**(config or {}), **run, **({"xla_options": dict(xla_options)} if xla_options else {})}
    input_shape = (None, *x_train.shape[1:])
    root = jax.random.key(seed)
    k_init, run_key = jax.random.split(root)

    @jax.jit  # one compilation, rather than one per eager random op in every layer's init
    def initial(key, params):
        if params is None:
            params, _ = net.init(key, input_shape)
        return params, optimizer.init(params)

    params, opt_state = initial(k_init, params)
    state = net.init_state(input_shape) if "state" in net.uses else None
    history: dict[str, list] = {k: [] for k in HISTORY_KEYS}
    start_epoch = 0

    if resume:
        if checkpoint is None:
            raise ValueError("fit: resume=True needs checkpoint=PATH")
        saved = ckpt_lib.read_config(checkpoint)["config"]
        diff = {k: (saved.get(k), v) for k, v in run.items() if saved.get(k) != v}
        if diff:
            raise ValueError(f"fit: cannot resume from {checkpoint}: the run differs in "
                             + ", ".join(f"{k} (saved {a!r}, now {b!r})" for k, (a, b) in diff.items()))
        params_like, _ = param_shapes(net, input_shape)
        ck = ckpt_lib.load(checkpoint, params_like=params_like,
                           opt_state_like=jax.eval_shape(optimizer.init, params_like),
                           state_like=state)
        params, opt_state, state, start_epoch = ck.params, ck.opt_state, ck.state, ck.epoch
        history = {k: list(ck.history.get(k, [])) for k in HISTORY_KEYS}
        if start_epoch >= total_epochs and log:
            log(f"checkpoint {checkpoint} already holds {start_epoch} epochs; nothing to do")

    if mesh is None:
        place = jnp.asarray
    else:  # replicated state; each host's examples on its own devices
        params, opt_state, state = distributed.replicate(mesh, (params, opt_state, state))
        place = functools.partial(distributed.put_data, mesh)
    x_train, t_train = place(x_train), place(t_train)
    if test_data is not None:
        x_test, t_test = place(x_test), place(t_test)
    writer = jax.process_index() == 0

    # Ahead-of-time compilation, measured apart from training: trace each function
    # (Python, one at a time), then let XLA compile them side by side in threads.
    t0 = time.perf_counter()
    lowered: dict[Any, Any] = {}
    for n_steps in {steps_per_epoch if e < total_epochs - 1 else last_steps
                    for e in range(start_epoch, total_epochs)}:
        f = jax.jit(make_train_epoch(net, loss, optimizer, batch_size=batch_size, n_steps=n_steps,
                                     sampling=sampling, mesh=mesh))
        lowered[n_steps] = f.lower(params, opt_state, state, x_train, t_train, run_key)
    evaluate = jax.jit(make_evaluate(net, loss, batch_size=eval_batch_size, mesh=mesh))
    if eval_train:
        lowered["train"] = evaluate.lower(params, state, x_train, t_train)
    if test_data is not None:
        lowered["test"] = evaluate.lower(params, state, x_test, t_test)
    options = dict(xla_options or {})

    def compile_one(low):
        try:
            return low.compile(options) if options else low.compile()
        except jax.errors.JaxRuntimeError as e:
            if not options or "option" not in str(e):
                raise
            raise ValueError(f"fit: XLA rejected xla_options={options}: {e}") from None

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(lowered))) as pool:
        compiled = dict(zip(lowered, pool.map(compile_one, lowered.values()), strict=True))
    eval_on_train, eval_on_test = compiled.get("train"), compiled.get("test")
    compile_seconds = time.perf_counter() - t0

    train_seconds = 0.0
    elapsed0 = history["elapsed"][-1] if history["elapsed"] else 0.0
    t_loop = time.perf_counter()
    for e in range(start_epoch, total_epochs):
        n_steps = steps_per_epoch if e < total_epochs - 1 else last_steps
        key = jax.random.fold_in(run_key, e)
        t1 = time.perf_counter()
        (new_params, new_opt_state, new_state), losses = compiled[n_steps](
            params, opt_state, state, x_train, t_train, key)
        losses = np.asarray(losses)  # waits for the epoch: the only sync besides the metrics
        seconds = time.perf_counter() - t1
        train_seconds += seconds
        bad = ~np.isfinite(losses)
        if bad.any():
            step = int(np.argmax(bad))
            where = f"; the checkpoint {checkpoint} holds epoch {e}" if checkpoint and e > 0 else ""
            raise NonFiniteLossError(
                f"epoch {e + 1}: the training loss became {losses[step]} at step {step + 1} of {n_steps}; "
                f"training stopped and the parameters from the end of epoch {e} were kept{where}. "
                "Try a smaller learning rate, check the inputs for NaN, or check that labels are in range.",
                epoch=e + 1, params=params, opt_state=opt_state, state=state,
                history={k: np.asarray(v) for k, v in history.items()})
        params, opt_state, state = new_params, new_opt_state, new_state
        nan = (np.nan, np.nan)
        tr = eval_on_train(params, state, x_train, t_train) if eval_on_train is not None else nan
        te = eval_on_test(params, state, x_test, t_test) if eval_on_test is not None else nan
        rec = {"epoch": e + 1, "steps": n_steps, "loss": float(losses.mean()),
               "train_loss": float(tr[0]), "train_acc": float(tr[1]),
               "test_loss": float(te[0]), "test_acc": float(te[1]), "seconds": seconds,
               "samples_per_s": n_steps * batch_size / seconds,
               "elapsed": elapsed0 + time.perf_counter() - t_loop}
        for k in HISTORY_KEYS:
            history[k].append(rec[k])
        if log:
            log(_format(rec, total_epochs))
        if checkpoint is not None and writer:
            ckpt_lib.save(checkpoint, ckpt_lib.Checkpoint(
                params, opt_state, state, run_key, e + 1, {k: np.asarray(v) for k, v in history.items()},
                config))
    return TrainResult(params, opt_state, state, {k: np.asarray(v) for k, v in history.items()},
                       len(history["epoch"]), compile_seconds, train_seconds, time.perf_counter() - t_start)
