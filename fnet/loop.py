"""``fit``'s epoch loop: train an epoch, check it, evaluate it, record it, checkpoint it.

One epoch, in four steps:

1. ``train``: dispatch the compiled epoch (JAX runs it asynchronously);
2. ``check``: wait for its losses and stop on a non-finite loss or divergence
   (``stopping.check_divergence``), before anything else is dispatched;
3. ``evaluate``: dispatch the evaluation of its parameters on the training and test sets;
4. ``record``: wait for the evaluation, then the history record, the log line, the
   checkpoint (and the best one), the callbacks.

**The evaluation beside the next epoch.** With an evaluation device (``fit(eval_device=)``)
and no callbacks, the loop dispatches epoch ``e + 1``, then epoch ``e``'s evaluation, and
then waits for the evaluation, so the two run at the same time on their two devices (and
the first epoch does not wait for the evaluation program, which may still be compiling:
``fnet.programs``). Nothing is computed in
vain: every reason to stop without a callback (a NaN loss, divergence, parameters that
are no longer finite) comes from the epoch's own outputs, checked before the next epoch
is dispatched; callbacks see the evaluation, so with callbacks the loop waits for it. On a
CPU, XLA runs one program at a time per device: a second CPU device
(``jax.config.update("jax_num_cpu_devices", 2)``) is what lets the evaluation use the core
that the book's small training step leaves idle (``docs/speed.md``, "The cold start").
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from fnet import checkpoint as ckpt_lib
from fnet.epoch import Plan, run_in_pieces
from fnet.stopping import NonFiniteLossError, check_divergence, metric_mode

__all__ = ["best_path", "run_epochs"]


@dataclasses.dataclass
class _Trained:
    """Epoch ``e`` dispatched: its carry, losses and finite flags (device arrays until checked)."""

    e: int
    steps: int
    carry: tuple
    losses: Any
    finite: Any
    started: float


def train(programs: dict, e: int, n_steps: int, carry: tuple, data, run_key, *, progress) -> _Trained:
    """Dispatch epoch ``e`` (0-based) of ``n_steps`` (with ``progress``: run it, piece by piece)."""
    x_train, t_train = data[:2]
    t1 = time.perf_counter()
    if progress is None:
        new_carry, losses, finite = programs["epoch"](*carry, x_train, t_train, run_key, np.int32(e), n_steps)
    else:  # the same steps in pieces, reporting between them
        key = jax.random.fold_in(run_key, e)
        new_carry, losses, finite = run_in_pieces(
            programs, carry, x_train, t_train, key, n_steps=n_steps,
            report=lambda done: progress({"epoch": e + 1, "step": done, "steps": n_steps,
                                          "seconds": time.perf_counter() - t1}))
    return _Trained(e, n_steps, new_carry, losses, finite, t1)


def check(trained: _Trained, carry: tuple, *, checkpoint, history: dict, divergence: float | None) -> tuple:
    """Wait for the epoch; stop on a non-finite loss or divergence, keeping ``carry`` (the epoch
    before). ``(losses, seconds)``."""
    e, n_steps = trained.e, trained.steps
    losses = np.asarray(trained.losses)[:n_steps]  # waits for the epoch
    seconds = time.perf_counter() - trained.started
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
    check_divergence(e, losses, trained.carry[0], carry, history, divergence, checkpoint,
                     finite=np.asarray(trained.finite))
    return losses, seconds


def evaluate(programs: dict, carry: tuple, eval_sets, eval_device) -> list:
    """Dispatch the evaluation of ``carry``'s parameters (on ``eval_device``, when given)."""
    if "evaluate" not in programs:
        return []
    params, _, state = carry
    if eval_device is not None:
        params, state = jax.device_put((params, state), eval_device)
    return programs["evaluate"](params, state, eval_sets)


def record(trained: _Trained, losses: np.ndarray, seconds: float, results: list, *, keys: tuple[str, ...],
           eval_train: bool, has_test: bool, batch_size: int) -> dict:
    """Epoch ``trained.e``'s history record, once its evaluation ``results`` are in (this waits)."""
    nan = (np.nan,) * sum(k.startswith("test_") for k in keys)  # the loss and every metric
    tr = results[0] if eval_train else nan
    te = results[-1] if has_test else nan
    measured = {f"train_{k.removeprefix('test_')}": float(v) for k, v in
                zip((k for k in keys if k.startswith("test_")), tr, strict=True)}
    measured |= {k: float(v) for k, v in zip((k for k in keys if k.startswith("test_")), te, strict=True)}
    return {"epoch": trained.e + 1, "steps": trained.steps, "loss": float(losses.mean()), **measured,
            "seconds": seconds, "samples_per_s": trained.steps * batch_size / seconds}


def best_path(checkpoint: str | Path) -> Path:
    """Where ``keep_best`` saves: ``runs/book.npz`` -> ``runs/book.best.npz``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.best{checkpoint.suffix or '.npz'}")


def run_epochs(programs: dict, run: Plan, first_epoch: int, carry: tuple, history: dict, data, eval_sets,
               run_key, *, batch_size: int, checkpoint, config, divergence, log: Callable[[str], Any] | None,
               callbacks, keep_best: str | None, progress, eval_train: bool, eval_device) -> tuple:
    """Run the epochs of ``run`` from ``first_epoch`` (0-based) on, from ``carry``, appending to
    ``history``. ``data``: ``(x_train, t_train, x_test, t_test)`` on the training device(s);
    ``eval_sets``: the ``(x, t)`` pairs to evaluate (on ``eval_device``, when given).

    **Returns:** ``(carry, history, train_seconds, stopped)``: the last recorded epoch's carry,
    and why a callback stopped training (or ``None``).
    """
    keys, has_test = tuple(history), data[2] is not None
    elapsed0 = history["elapsed"][-1] if history["elapsed"] else 0.0
    sign = 1.0 if keep_best is None or metric_mode(keep_best) == "min" else -1.0
    best = min((sign * v for v in history[keep_best]), default=np.inf) if keep_best else np.inf
    beside = eval_device is not None and progress is None and not callbacks
    t_loop, train_seconds, pending = time.perf_counter(), 0.0, None

    def finish(trained: _Trained, losses, seconds, results) -> str | None:
        """Record, log and checkpoint an evaluated epoch; a callback's reason to stop, or ``None``."""
        nonlocal best
        rec = record(trained, losses, seconds, results, keys=keys, eval_train=eval_train, has_test=has_test,
                     batch_size=batch_size)
        rec["elapsed"] = elapsed0 + time.perf_counter() - t_loop
        for k in history:
            history[k].append(rec[k])
        if log:
            log(format_record(rec, run.total_epochs))
        if checkpoint is not None and jax.process_index() == 0:
            arrays = {k: np.asarray(v) for k, v in history.items()}
            saved = ckpt_lib.Checkpoint(*trained.carry, run_key, trained.e + 1, arrays, config)
            ckpt_lib.save(checkpoint, saved)
            if keep_best and sign * rec[keep_best] < best:
                best = sign * rec[keep_best]
                ckpt_lib.save(best_path(checkpoint), saved)
        reasons = [r for r in [cb(dict(rec)) for cb in callbacks] if r]  # every callback sees every epoch
        if not reasons or isinstance(reasons[0], str):
            return reasons[0] if reasons else None
        return f"a callback stopped after epoch {trained.e + 1}"

    def evaluated(trained: _Trained) -> list:
        return evaluate(programs, trained.carry, eval_sets, eval_device)

    stopped = None
    for e in range(first_epoch, run.total_epochs):
        trained = train(programs, e, run.steps(e), carry, data, run_key, progress=progress)
        if pending is not None:  # epoch e - 1, evaluated while epoch e trains (dispatched just before)
            finish(*pending, evaluated(pending[0]))  # no callbacks here: nothing can stop
            pending = None
        losses, seconds = check(trained, carry, checkpoint=checkpoint, history=history, divergence=divergence)
        train_seconds += seconds
        carry = trained.carry
        if beside:
            pending = (trained, losses, seconds)
            continue
        stopped = finish(trained, losses, seconds, evaluated(trained))
        if stopped:
            if log:
                log(f"stopped after epoch {e + 1}: {stopped}")
            break
    if pending is not None:
        finish(*pending, evaluated(pending[0]))
    return carry, history, train_seconds, stopped


def format_record(rec: dict, total_epochs: int) -> str:
    """The log line of one epoch's record."""
    width = len(str(total_epochs))
    shown = [(k, v) for k, v in rec.items() if k.startswith(("train_", "test_")) and not k.endswith("_loss")]
    metrics = "".join(f"  {k.replace('_', ' ')} {v:.4f}" for k, v in shown if not math.isnan(v))
    return (f"epoch {rec['epoch']:{width}d}/{total_epochs}  loss {rec['loss']:.4f}{metrics}"
            f"  {rec['elapsed']:6.1f}s  {rec['samples_per_s']:,.0f} samples/s")
