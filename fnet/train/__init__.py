"""Training: ``fit`` runs compiled epochs, evaluates, checkpoints, stops early, and resumes.

One concept per module:

- ``fit``: ``fit`` in phases, and the ``TrainResult`` it returns;
- ``settings``: the records of a run (``Settings``, ``Plan``, its data);
- ``checks``: what ``fit`` checks before compiling, resolving it into ``Settings``
  (``check_batch_size``, ``check_resume``, ``plan`` serve the command line too);
- ``programs``: the run's programs, traced and compiled ahead of time;
- ``epoch``: one compiled epoch (``make_train_epoch``; in pieces for progress reports);
- ``evaluate``: the loss and metrics over a set (``make_evaluate``);
- ``loop``: the epoch loop (train, check, evaluate, record, checkpoint);
- ``stopping``: divergence and early stopping;
- ``augment``: random crops and flips inside the compiled epoch.
"""

from fnet.checkpoint import best_path
from fnet.train.checks import RESUME_MAY_DIFFER, check_batch_size, check_checkpoint_path, check_resume, plan
from fnet.train.epoch import (
    PROGRESS_CHUNKS,
    chunk_lengths,
    make_epoch_pieces,
    make_train_epoch,
)
from fnet.train.evaluate import make_evaluate
from fnet.train.fit import TrainResult, fit
from fnet.train.settings import DEFAULT_DIVERGENCE, SAMPLING, Plan, Settings
from fnet.train.stopping import (
    HISTORY_KEYS,
    DivergenceError,
    NonFiniteLossError,
    SelectionWarning,
    early_stopping,
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
    "SelectionWarning",
    "Settings",
    "TrainResult",
    "best_path",
    "check_batch_size",
    "check_checkpoint_path",
    "check_resume",
    "chunk_lengths",
    "early_stopping",
    "fit",
    "make_epoch_pieces",
    "make_evaluate",
    "make_train_epoch",
    "plan",
]
