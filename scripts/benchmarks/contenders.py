"""The compiled contenders: fnet's epoch with the handwritten backward, and the same epoch with autodiff."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.config import ADAMW, LR, Config
from benchmarks.hlo import MATMUL_OPS, hlo_op_counts, profile_ops


@dataclasses.dataclass
class Runner:
    """One prepared contender: ``run(rep)`` trains one epoch and returns its per-step losses."""

    name: str
    run: Callable[[int], np.ndarray]
    check_losses: np.ndarray | None = None
    compile_s: float | None = None
    first_call_s: float | None = None
    info: dict = dataclasses.field(default_factory=dict)


def check_run(seed: int, n: int, reset: Callable[[], None],
              epoch: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, float]:
    """A host contender's check run (NumPy, torch): ``reset()`` to the initial parameters, then
    one ``epoch(order)`` in the order fnet's compiled epoch draws for the same key (see
    ``make_train_epoch``), so its losses compare step by step. ``(losses, seconds)``."""
    import jax

    from fnet import shuffle

    k_order, _ = jax.random.split(jax.random.key(seed))
    order = np.asarray(shuffle.permutation(k_order, n))
    reset()
    t0 = time.perf_counter()
    losses = epoch(order)
    return losses, time.perf_counter() - t0


def optimizer(config: Config):
    """The config's optimizer in fnet: SGD at ``LR``, or nanoGPT's AdamW (``ADAMW``), clipped."""
    from fnet import optim

    if config.optimizer == "sgd":
        return optim.sgd(LR)
    b1, b2 = ADAMW["betas"]
    adamw = optim.adamw(ADAMW["lr"], beta1=b1, beta2=b2, eps=ADAMW["eps"], weight_decay=ADAMW["weight_decay"])
    return optim.clip_by_global_norm(adamw, ADAMW["clip"])


def prepare_jax(name: str, net, params, x: np.ndarray, t: np.ndarray, config: Config, steps: int,
                seed: int, xla_options: dict | None = None, profile: bool = False) -> Runner:
    import jax

    from fnet import apply, losses, train
    from fnet.train.programs import compiler_options

    given = dict(xla_options or {})  # --xla-option; each program gets fit's options over them
    loss = losses.softmax_cross_entropy
    grad_fn = None
    stateful = "state" in net.uses  # batch norm (resnet): training mode, running statistics carried
    state0 = net.init_state((None, *x.shape[1:])) if stateful else None
    if name == "autodiff":
        def grad_fn(params, xb, tb, *, key=None, state=None):
            def f(p):
                y, _, new_state = apply(net, p, xb, key=key, train=True if net.uses else None, state=state)
                return loss.forward(y, tb)[0], new_state

            (value, new_state), grads = jax.value_and_grad(f, has_aux=True)(params)
            return (value, grads, new_state) if stateful else (value, grads)

    opt = optimizer(config)
    opt_state = opt.init(params)
    if name == "progress":
        return _prepare_pieces(net, params, x, t, config, steps, seed, given, opt)
    mesh = None
    if name == "fnet_dp":  # fnet-train --devices N on a CPU: the batch split over N CPU devices
        from fnet import distributed

        mesh = distributed.make_mesh()
        params, opt_state, state0 = distributed.replicate(mesh, (params, opt_state, state0))
    epoch = jax.jit(train.make_train_epoch(net, loss, opt, batch_size=config.batch_size, n_steps=steps,
                                           grad_fn=grad_fn, mesh=mesh))
    if mesh is None:
        X, T = jax.device_put(x), jax.device_put(t)
    else:
        X, T = distributed.put_data(mesh, x), distributed.put_data(mesh, t)
    base = jax.random.key(seed)
    t0 = time.perf_counter()
    lowered = epoch.lower(params, opt_state, state0, X, T, base)
    xla_options = compiler_options(given, program=lowered)  # fit's: fnet's CPU defaults under --xla-option
    compiled = lowered.compile(xla_options)
    compile_s = time.perf_counter() - t0

    def run(rep: int) -> np.ndarray:
        key = base if rep < 0 else jax.random.fold_in(base, rep + 1)
        (p, _, _), losses_ = compiled(params, opt_state, state0, X, T, key)
        jax.block_until_ready(p)
        return np.asarray(losses_)

    t0 = time.perf_counter()
    check = run(-1)  # the check run: key `base`, the same shuffle the NumPy contender is given
    first_call_s = time.perf_counter() - t0
    info: dict[str, Any] = {"xla_options": xla_options}
    if mesh is not None:
        info["devices"] = mesh.size
        # batch norm normalizes with each device's share of the batch (docs/design.md): other losses
        info["per_device_batch_statistics"] = stateful
    with contextlib.suppress(Exception):
        mem = compiled.memory_analysis()
        info["xla_memory_bytes"] = {k: int(getattr(mem, f"{k}_size_in_bytes")) for k in
                                    ("argument", "output", "temp", "alias", "generated_code")}
    with contextlib.suppress(Exception):
        ops = hlo_op_counts(compiled.as_text())
        info["hlo_ops"] = {k: v for k, v in ops.items() if k in (
            *MATMUL_OPS, "custom-call", "transpose", "copy", "gather", "fusion", "while", "sort")}
    if profile:  # a separate compilation: the CPU's per-op trace events cost a little time
        options = dict(xla_options or {})
        if jax.default_backend() == "cpu":
            options["xla_cpu_enable_xprof_traceme"] = True
        traced = lowered.compile(options)
        jax.block_until_ready(traced(params, opt_state, state0, X, T, base))
        info["profile"] = profile_ops(lambda: traced(params, opt_state, state0, X, T, base),
                                      traced.as_text(), steps)
    return Runner(name, run, check, compile_s, first_call_s, info)


def _prepare_pieces(net, params, x, t, config: Config, steps: int, seed: int, given, opt) -> Runner:
    """fnet's epoch as ``fit(progress=...)`` runs it: ``train.PROGRESS_CHUNKS`` compiled pieces,
    each waited for (the progress report's host sync) before the next starts."""
    import jax

    from fnet import losses, train
    from fnet.train import epoch, programs

    X, T = jax.device_put(x), jax.device_put(t)
    base = jax.random.key(seed)
    opt_state = opt.init(params)
    t0 = time.perf_counter()
    pieces = train.make_epoch_pieces(net, losses.softmax_cross_entropy, opt, batch_size=config.batch_size,
                                     n_steps=steps)
    lowered = programs.lower_in_pieces(pieces, (params, opt_state, None), X, T, base, steps)
    compiled = {k: low.compile(programs.compiler_options(given, program=low)) for k, low in lowered.items()}
    compile_s = time.perf_counter() - t0

    def run(rep: int) -> np.ndarray:
        key = base if rep < 0 else jax.random.fold_in(base, rep + 1)
        (p, _, _), losses_, _ = epoch.run_in_pieces(compiled, (params, opt_state, None), X, T, key,
                                                    n_steps=steps, report=lambda done: None)
        jax.block_until_ready(p)
        return losses_

    t0 = time.perf_counter()
    check = run(-1)
    return Runner("progress", run, check, compile_s, time.perf_counter() - t0, {})
