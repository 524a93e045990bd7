"""``fit``'s epoch loop: train an epoch, check it, evaluate it, record it, checkpoint it.

One epoch, in four steps:

1. ``train``: dispatch the compiled epoch (JAX runs it asynchronously);
2. ``check``: wait for its losses and stop on a non-finite loss or divergence
   (``stopping.check_divergence``), before anything else is dispatched;
3. ``evaluate``: dispatch the evaluation of its parameters on the training and test sets;
4. ``record``: wait for the evaluation, then the history record, the log line, the
   checkpoint (and the best one), the callbacks.

**The evaluation beside the next epoch.** With an evaluation device (``fit(eval_device=)``)
where it may run beside training (``Settings.beside``: not for a network convolving several
channels on a CPU, ``checks.may_evaluate_beside``) and no callbacks, the loop dispatches
epoch ``e + 1``, then epoch ``e``'s evaluation, and
then waits for the evaluation, so the two run at the same time on their two devices (and
the first epoch does not wait for the evaluation program, which may still be compiling:
``fnet.train.programs``). Nothing is computed in
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
from typing import Any

import jax
import numpy as np

from fnet import checkpoint as ckpt_lib
from fnet.metrics import SETS
from fnet.train.epoch import run_in_pieces
from fnet.train.settings import Placed, Settings
from fnet.train.stopping import NonFiniteLossError, check_divergence, metric_mode

__all__ = ["Finished", "Start", "format_record", "run_epochs"]


@dataclasses.dataclass
class Start:
    """Where the loop starts: the carry ``(params, opt_state, state)``, the history so far (one list
    per history key; empty unless resumed) and the run's key."""

    carry: tuple
    history: dict[str, list]
    key: Any


@dataclasses.dataclass
class Finished:
    """Where the loop ended: the last recorded epoch's carry, the history, the seconds spent training,
    and why a callback stopped training (or ``None``)."""

    carry: tuple
    history: dict[str, list]
    train_seconds: float
    stopped: str | None


@dataclasses.dataclass
class _Trained:
    """Epoch ``e`` dispatched: its carry, losses and finite flags (device arrays until checked)."""

    e: int
    steps: int
    carry: tuple
    losses: Any
    finite: Any
    started: float


def train(programs: dict, e: int, carry: tuple, run: Settings, data: Placed, run_key) -> _Trained:
    """Dispatch epoch ``e`` (0-based) (with ``run.progress``: run it, piece by piece)."""
    n_steps = run.plan.steps(e)
    t1 = time.perf_counter()
    if run.progress is None:
        new_carry, losses, finite = programs["epoch"](*carry, data.x, data.t, run_key, np.int32(e), n_steps)
    else:  # the same steps in pieces, reporting between them
        key = jax.random.fold_in(run_key, e)
        new_carry, losses, finite = run_in_pieces(
            programs, carry, data.x, data.t, key, n_steps=n_steps,
            report=lambda done: run.progress({"epoch": e + 1, "step": done, "steps": n_steps,
                                              "seconds": time.perf_counter() - t1}))
    return _Trained(e, n_steps, new_carry, losses, finite, t1)


def check(trained: _Trained, carry: tuple, run: Settings, history: dict) -> tuple:
    """Wait for the epoch; stop on a non-finite loss or divergence, keeping ``carry`` (the epoch
    before). ``(losses, seconds)``."""
    e, n_steps, checkpoint = trained.e, trained.steps, run.checkpoint
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
    check_divergence(e, losses, trained.carry[0], carry, history, run.divergence, checkpoint,
                     finite=np.asarray(trained.finite))
    return losses, seconds


def evaluate(programs: dict, carry: tuple, run: Settings, data: Placed) -> list:
    """Dispatch the evaluation of ``carry``'s parameters (on ``run.eval_device``, when there is one)."""
    if "evaluate" not in programs:
        return []
    params, _, state = carry
    if run.eval_device is not None:
        params, state = jax.device_put((params, state), run.eval_device)
    return programs["evaluate"](params, state, data.eval_sets)


def record(trained: _Trained, losses: np.ndarray, seconds: float, results: list, run: Settings) -> dict:
    """Epoch ``trained.e``'s history record, once its evaluation ``results`` are in (this waits).

    ``results`` hold ``(loss, *metrics)`` for each set of ``run.eval_sets``; a set not evaluated
    (the training set without ``eval_train``, a missing validation or test set) records NaN."""
    measured = {}
    names = [k.removeprefix("test_") for k in run.history_keys if k.startswith("test_")]  # loss, metrics
    by_set = dict(zip(run.eval_sets, results, strict=True))
    for prefix in SETS:
        values = by_set.get(prefix, (np.nan,) * len(names))
        measured |= {f"{prefix}_{k}": float(v) for k, v in zip(names, values, strict=True)}
    return {"epoch": trained.e + 1, "steps": trained.steps, "loss": float(losses.mean()), **measured,
            "seconds": seconds, "samples_per_s": trained.steps * run.batch_size / seconds}


def run_epochs(run: Settings, programs: dict, start: Start, data: Placed) -> Finished:
    """Run the epochs of ``run.plan`` from ``run.first_epoch`` (0-based) on, from ``start``, appending
    to its history."""
    history, carry = start.history, start.carry
    train_seconds, pending, stopped = 0.0, None, None
    finish = _finisher(run, history, start.key, time.perf_counter())
    for e in range(run.first_epoch, run.plan.total_epochs):
        trained = train(programs, e, carry, run, data, start.key)
        if pending is not None:  # epoch e - 1, evaluated while epoch e trains (dispatched just before)
            finish(*pending, evaluate(programs, pending[0].carry, run, data))  # no callbacks: nothing stops
            pending = None
        losses, seconds = check(trained, carry, run, history)
        train_seconds += seconds
        carry = trained.carry
        if run.evaluates_beside:
            pending = (trained, losses, seconds)
            continue
        stopped = finish(trained, losses, seconds, evaluate(programs, carry, run, data))
        if stopped:
            if run.log:
                run.log(f"stopped after epoch {e + 1}: {stopped}")
            break
    if pending is not None:
        finish(*pending, evaluate(programs, pending[0].carry, run, data))
    return Finished(carry, history, train_seconds, stopped)


def _finisher(run: Settings, history: dict, run_key, t_loop: float) -> Callable:
    """``finish(trained, losses, seconds, results) -> stop reason or None``: what happens to an
    evaluated epoch. Its record joins the history, its line the log, its carry the checkpoint (and
    the best one, ``keep_best``), its record the callbacks."""
    elapsed0 = history["elapsed"][-1] if history["elapsed"] else 0.0
    sign = 1.0 if run.keep_best is None or metric_mode(run.keep_best) == "min" else -1.0
    best = min((sign * v for v in history[run.keep_best]), default=np.inf) if run.keep_best else np.inf

    def finish(trained: _Trained, losses, seconds, results) -> str | None:
        nonlocal best
        rec = record(trained, losses, seconds, results, run)
        rec["elapsed"] = elapsed0 + time.perf_counter() - t_loop
        for k in history:
            history[k].append(rec[k])
        if run.log:
            run.log(format_record(rec, run.plan.total_epochs))
        if run.checkpoint is not None and jax.process_index() == 0:
            arrays = {k: np.asarray(v) for k, v in history.items()}
            saved = ckpt_lib.Checkpoint(*trained.carry, run_key, trained.e + 1, arrays, dict(run.config))
            ckpt_lib.save(run.checkpoint, saved)
            if run.keep_best and sign * rec[run.keep_best] < best:
                best = sign * rec[run.keep_best]
                ckpt_lib.save(ckpt_lib.best_path(run.checkpoint), saved)
        reasons = [r for r in [cb(dict(rec)) for cb in run.callbacks] if r]  # every callback sees every epoch
        if not reasons or isinstance(reasons[0], str):
            return reasons[0] if reasons else None
        return f"a callback stopped after epoch {trained.e + 1}"

    return finish


def format_record(rec: dict, total_epochs: int) -> str:
    """The log line of one epoch's record: the training loss (the mean over the epoch's minibatches),
    the training set's metrics, and the held-out sets' loss and metrics (validation, then test)."""
    width = len(str(total_epochs))
    shown = [(k, v) for k, v in rec.items()
             if k.startswith(("train_", "val_", "test_")) and k != "train_loss"]
    metrics = "".join(f"  {k.replace('_', ' ')} {v:.4f}" for k, v in shown if not math.isnan(v))
    return (f"epoch {rec['epoch']:{width}d}/{total_epochs}  loss {rec['loss']:.4f}{metrics}"
            f"  {rec['elapsed']:6.1f}s  {rec['samples_per_s']:,.0f} samples/s")
