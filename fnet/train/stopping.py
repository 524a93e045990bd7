"""When training stops before its last epoch: divergence, non-finite values, early stopping.

``fit`` calls ``check_divergence`` after every epoch; ``early_stopping`` makes one of the
callbacks ``fit(callbacks=...)`` calls with each epoch's record.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from fnet import _args
from fnet._trees import first_non_finite, leaves_with_paths
from fnet.metrics import history_keys

__all__ = ["HISTORY_KEYS", "DivergenceError", "NonFiniteLossError", "SelectionWarning", "check_divergence",
           "diverged", "early_stopping", "metric_mode", "warn_test_selection"]

HISTORY_KEYS = history_keys(("acc",))
"""The keys of an epoch's record with the default metric of a classification loss (accuracy):
what ``fit``'s history holds and its callbacks receive (``fnet.metrics.history_keys``)."""


class DivergenceError(FloatingPointError):
    """Training diverged: the epoch's loss far above the starting loss (``fit(divergence=)``), or
    parameters that became NaN or infinite. Carries the last good state.

    **Attributes:** ``epoch`` (the epoch that failed), ``params``, ``opt_state``,
    ``state`` (from the end of the previous epoch), ``history``.
    """

    def __init__(self, message: str, *, epoch: int, params, opt_state, state, history):
        super().__init__(message)
        self.epoch, self.params, self.opt_state, self.state, self.history = (
            epoch, params, opt_state, state, history)


class NonFiniteLossError(DivergenceError):
    """The training loss became NaN or infinite (a ``DivergenceError``)."""


def check_divergence(e: int, losses: np.ndarray, new_params, carry, history: dict, divergence,
                     checkpoint, finite: Sequence[bool] | None = None) -> None:
    """Stop when the epoch's mean loss is ``divergence`` times the reference, or parameters are not finite.

    The reference is the first epoch's mean loss; during the first epoch, its first step's
    loss (the loss at the starting parameters). ``finite``: whether each leaf of ``new_params``
    (in ``jax.tree.leaves`` order) is finite, as ``fit``'s compiled evaluation computes it;
    ``None``: checked here, leaf by leaf.
    """
    reference = history["loss"][0] if history["loss"] else float(losses[0])
    why = diverged(losses, reference, new_params, divergence, finite)
    if why is not None:
        kept = f"; the checkpoint {checkpoint} holds epoch {e}" if checkpoint and e > 0 else ""
        kept_params = f"the parameters from the end of epoch {e}" if e else "the starting parameters"
        raise DivergenceError(
            f"epoch {e + 1}: training diverged: {why}. Training stopped and {kept_params} were "
            f"kept{kept}. Try a smaller learning rate, or check the inputs.",
            epoch=e + 1, params=carry[0], opt_state=carry[1], state=carry[2],
            history={k: np.asarray(v) for k, v in history.items()})


def diverged(losses: np.ndarray, reference: float, new_params, divergence: float | None,
             finite: Sequence[bool] | None = None) -> str | None:
    """The divergence rule: why a stretch of training with these minibatch ``losses`` diverged, or
    ``None``. It diverged when their mean is over ``divergence`` times the ``reference`` (the
    starting loss; ``None``: no such rule), or when a parameter of ``new_params`` is no longer
    finite (``finite``: each leaf's flag, in ``jax.tree.leaves`` order, when already computed).
    ``fit`` (``check_divergence``) and ``scripts/char_lm.py`` share it."""
    mean = float(np.mean(losses))
    if divergence is not None and mean > divergence * reference:
        return (f"the mean training loss {mean:.4g} is over {divergence:g} times the starting loss "
                f"{reference:.4g} (the divergence rule: fit(divergence=), --divergence)")
    bad = first_non_finite(new_params) if finite is None else next(
        (path for (path, _), ok in zip(leaves_with_paths(new_params), finite, strict=True) if not ok), None)
    if bad is not None:
        return f"the parameter {bad} became NaN or infinite, although the loss stayed finite"
    return None


def metric_mode(metric: str) -> str:
    """``"max"`` for an accuracy (``train_acc``, ``test_top5``), ``"min"`` for a loss."""
    return "max" if metric.endswith("acc") or re.search(r"_top\d+$", metric) else "min"


def early_stopping(monitor: str | None = None, patience: int = 3, *, min_delta: float = 0.0) -> Callable:
    """A ``fit`` callback: stop when ``monitor`` has not improved for ``patience`` epochs.

    ``monitor`` is a history key (``"val_loss"``, ``"val_acc"``, ``"test_loss"``, ``"train_loss"``,
    ``"loss"``); lower is better for losses, higher for accuracies. ``None`` (the default): the
    validation loss when the run has a validation set, else the test loss. Monitoring the test
    set warns (``SelectionWarning``): the stop then depends on the test set, and so do the test
    figures reported. An improvement must beat the best value so far by more than ``min_delta``.
    The callback keeps its count between calls: make a new one for each run (a resumed run starts
    counting afresh).

    **Returns:** ``callback(record) -> str | None``: the reason to stop, or ``None``.
    """
    if monitor is not None and monitor not in HISTORY_KEYS and not re.fullmatch(
            r"(train|val|test)_(loss|acc|top\d+)", monitor):
        raise ValueError(f"early_stopping: monitor must be a history key such as 'val_loss', 'test_acc' or "
                         f"'test_top5' (one of {HISTORY_KEYS} for the default metrics), got {monitor!r}")
    if monitor is not None and monitor.startswith("test_"):
        warn_test_selection(f"early_stopping({monitor!r})")
    patience = _args.count("early_stopping", "patience", patience, 1)
    min_delta = _args.non_negative("early_stopping", "min_delta", min_delta)
    best, best_epoch, waited = math.inf, 0, 0

    def callback(record: dict) -> str | None:
        nonlocal best, best_epoch, waited, monitor
        if monitor is None:  # the first record says whether the run has a validation set
            monitor = "test_loss" if math.isnan(record.get("val_loss", math.nan)) else "val_loss"
            if monitor == "test_loss":
                warn_test_selection("early_stopping() without a validation set (monitoring test_loss)",
                                    stacklevel=2)
        sign = 1.0 if metric_mode(monitor) == "min" else -1.0
        value = sign * float(record[monitor])
        if math.isnan(value):
            raise ValueError(f"early_stopping: {monitor} was not measured (NaN) in epoch {record['epoch']}; "
                             "monitor a metric that fit evaluates (val_* needs val_data or val_fraction, "
                             "test_* test_data, train_* eval_train)")
        if value < best - min_delta:
            best, best_epoch, waited = value, record["epoch"], 0
            return None
        waited += 1
        if waited >= patience:
            return (f"{monitor} has not improved for {patience} epochs (best {sign * best:.4f} in epoch "
                    f"{best_epoch})")
        return None

    return callback


class SelectionWarning(UserWarning):
    """A model is chosen on the test set: its test figures are then optimistic."""


def warn_test_selection(what: str, stacklevel: int = 3) -> None:
    """Warn that ``what`` chooses the model on the test set, and say what to do instead (``stacklevel``:
    as ``warnings.warn``'s, counted from this function's caller's caller)."""
    warnings.warn(f"{what} chooses the model on the test set, so the test figures of the model it keeps "
                  "are optimistic (the test set took part in choosing it); hold out a validation set "
                  "(fit(val_fraction=0.1), fnet-train --val-fraction 0.1) and choose on it",
                  SelectionWarning, stacklevel=stacklevel)
