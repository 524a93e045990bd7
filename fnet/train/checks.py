"""What ``fit`` checks before anything is compiled, and the one record it makes of the run.

``settle`` checks ``fit``'s arguments in the order a run needs them (the network, loss
and optimizer; the loop's numbers; the data and labels against the network's outputs;
paths; hooks; devices) and resolves them into the run's ``Settings``
(``fnet.train.settings``). Nothing here runs on the data more than once: one pass for
finiteness (on the device for device arrays) and one for the label range. Every error
names the argument (``batch_size``, ``x_test``) and, for data, the first bad index and
value, so a wrong run fails in seconds instead of training garbage.

The command line calls the same checks of a batch size, a checkpoint path and a resume
(``check_batch_size``, ``check_checkpoint_path``, ``check_resume``): they exist once.
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from fnet import _args, distributed, optim
from fnet import checkpoint as ckpt_lib
from fnet._trees import check_like, first_non_finite
from fnet.core import Layer, apply, param_shapes, reads_ids
from fnet.errors import shape_str
from fnet.losses import Loss
from fnet.metrics import SETS, history_keys
from fnet.metrics import resolve as resolve_metrics
from fnet.optim import Optimizer
from fnet.train import augment as augmentation
from fnet.train.settings import SAMPLING, Data, Plan, Settings
from fnet.train.stopping import warn_test_selection

__all__ = [
    "RESUME_MAY_DIFFER",
    "check_batch_size",
    "check_checkpoint_path",
    "check_data",
    "check_eval_device",
    "check_hooks",
    "check_ids",
    "check_inputs",
    "check_params",
    "check_progress",
    "check_resume",
    "check_targets",
    "convolves_channels",
    "may_evaluate_beside",
    "plan",
    "resolve_mesh",
    "settle",
    "split_validation",
]


def settle(net: Layer, loss: Loss, optimizer: Optimizer, train_data, test_data, /,
           **given: Any) -> tuple[Settings, Data]:
    """``fit``'s arguments checked and resolved into the run's ``Settings`` and its ``Data``.

    ``given`` are ``fit``'s keywords, all of them (its signature documents each). The
    checks run in the order a run needs them; the first that fails raises
    ``TypeError``/``ValueError`` naming the argument, before anything is compiled.
    """
    a = types.SimpleNamespace(**given)
    check_run_args(net, loss, optimizer, a)
    if a.clip_norm is not None:
        optimizer = optim.clip_by_global_norm(optimizer, a.clip_norm)
    train_data, val_data = split_validation(train_data, a.val_data, a.val_fraction, a.seed)
    data, input_shape = check_inputs(net, loss, {"train": train_data, "val": val_data, "test": test_data},
                                     a.params, a.xla_options)
    augment = augmentation.parse(a.augment, x_shape=data.x_train.shape)
    keys = history_keys([k for k, _ in resolve_metrics(a.metrics, loss)])
    eval_sets = tuple(s for s in data.sets() if s != "train" or a.eval_train)
    keep_best = check_hooks(a.callbacks, a.keep_best, keys, checkpoint=a.checkpoint, measured=eval_sets)
    checkpoint = check_checkpoint_path(a.checkpoint, resume=a.resume, overwrite=a.overwrite,
                                       keep_best=keep_best is not None)
    mesh = resolve_mesh(a.mesh, a.progress, a.eval_device)
    config = {**(a.config or {}), "seed": a.seed, "batch_size": a.batch_size, "sampling": a.sampling,
              "n_train": len(data.x_train), **({"xla_options": dict(a.xla_options)} if a.xla_options else {}),
              **({"augment": str(augment)} if augment is not None else {}),
              **({"val_fraction": a.val_fraction} if a.val_fraction is not None else {})}
    return Settings(
        net=net, loss=loss, optimizer=optimizer, input_shape=input_shape,
        plan=plan(len(data.x_train), a.batch_size, epochs=a.epochs, iters=a.iters, mesh=mesh),
        batch_size=a.batch_size, sampling=a.sampling, seed=a.seed,
        first_epoch=resumed_epoch(checkpoint, config) if a.resume else 0, augment=augment, mesh=mesh,
        eval_device=a.eval_device,
        beside=may_evaluate_beside(net, input_shape, a.eval_device, data.x_train.dtype),
        xla_options=dict(a.xla_options) if a.xla_options else None,
        eval_sets=eval_sets, metrics=a.metrics,
        history_keys=keys, eval_batch_size=a.eval_batch_size, divergence=a.divergence,
        callbacks=tuple(a.callbacks), checkpoint=checkpoint, resume=a.resume, keep_best=keep_best,
        config=config, log=a.log, progress=a.progress), data


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


def split_validation(train_data, val_data, val_fraction, seed: int) -> tuple:
    """``(train_data, val_data)``: as given, or with ``val_fraction`` a share of the training set held
    out for validation, the same examples for the same seed (a permutation drawn from it; both sets
    keep the order of the examples)."""
    if val_fraction is None:
        return train_data, val_data
    if val_data is not None:
        raise ValueError("fit: give val_data= or val_fraction=, not both")
    _args.interval("fit", "val_fraction", val_fraction, 0, 1, closed=False,
                   about="the share of the training set held out for validation")
    if not (isinstance(train_data, (tuple, list)) and len(train_data) == 2):
        return train_data, None  # check_inputs names what is wrong with it
    x, t = train_data
    n = len(x)
    n_val = round(n * val_fraction)
    if not 1 <= n_val < n:
        raise ValueError(f"fit: val_fraction={val_fraction:g} of {n} training examples holds out {n_val}; "
                         "it must leave at least one example for each set")
    held = np.zeros(n, bool)
    held[np.random.default_rng(seed).permutation(n)[:n_val]] = True
    val_idx, train_idx = np.flatnonzero(held), np.flatnonzero(~held)
    pick = (lambda a, i: a[i]) if isinstance(x, jax.Array) else (lambda a, i: np.asarray(a)[i])
    return (pick(x, train_idx), pick(t, train_idx)), (pick(x, val_idx), pick(t, val_idx))


def resumed_epoch(checkpoint: Path, config: Mapping[str, Any]) -> int:
    """The epochs ``checkpoint`` holds, once ``check_resume`` accepts it for this run."""
    try:
        check_resume(checkpoint, config)
    except ckpt_lib.CheckpointError as e:  # an unreadable file: the same class, named by fit
        raise ckpt_lib.CheckpointError(f"fit: {e}") from None
    except ValueError as e:
        raise ValueError(f"fit: {e}") from None
    return ckpt_lib.read_config(checkpoint)["epoch"]


RESUME_MAY_DIFFER = frozenset({"epochs", "iters", "data_dir", "no_download", "no_eval_train", "xla_option",
                               "xla_options", "overwrite", "divergence", "early_stop"})
"""Config keys a resumed run may change: how long it trains, where the data is read from,
what is evaluated, how XLA compiles. Every other key must equal the checkpoint's."""

SEED_LIMIT = 2 ** 63  # jax.random.key takes a C long


def check_run_args(net, loss, optimizer, a: types.SimpleNamespace) -> None:
    """The arguments of ``fit`` other than data and paths (``a``: its keywords): types and ranges, each
    named."""
    epochs, iters, seed, config, divergence = a.epochs, a.iters, a.seed, a.config, a.divergence
    if not isinstance(net, Layer):
        raise TypeError(f"fit: net must be an fnet Layer, e.g. fnet.two_layer_net(784, 50, 10); "
                        f"got {net!r}")
    if not isinstance(loss, Loss):
        raise TypeError(f"fit: loss must be an fnet loss, e.g. fnet.losses.softmax_cross_entropy; "
                        f"got {loss!r}")
    if not isinstance(optimizer, Optimizer):
        hint = ""
        if callable(optimizer) and getattr(optimizer, "__module__", "") == "fnet.optim":
            hint = f" (fnet.optim.{optimizer.__name__} is its constructor: call it, e.g. " \
                   f"optim.{optimizer.__name__}(lr=0.1))"
        elif hasattr(optimizer, "init") and hasattr(optimizer, "update"):
            hint = " (it looks like an optax GradientTransformation; fnet's optimizers are its own pure " \
                   "functions, fnet.optim.sgd, momentum, nesterov, adagrad, rmsprop, adam)"
        raise TypeError(f"fit: optimizer must be an fnet.optim optimizer, e.g. optim.sgd(0.1){hint}; "
                        f"got {optimizer!r}")
    if (epochs is None) == (iters is None):
        raise ValueError("fit: give exactly one of epochs= or iters=")
    if epochs is not None:
        _args.count("fit", "epochs", epochs, 1)
    if iters is not None:
        _args.count("fit", "iters", iters, 1)
    _args.count("fit", "batch_size", a.batch_size, 1)
    _args.count("fit", "eval_batch_size", a.eval_batch_size, 1)
    seed = _args.count("fit", "seed", seed, 0)
    if seed >= SEED_LIMIT:
        raise ValueError(f"fit: seed must be below 2**63, got {seed}")
    if a.sampling not in SAMPLING:
        raise ValueError(f"fit: sampling must be one of {SAMPLING}, got {a.sampling!r}")
    for name, value in (("eval_train", a.eval_train), ("resume", a.resume), ("overwrite", a.overwrite)):
        if not isinstance(value, bool):
            raise TypeError(f"fit: {name} must be True or False, got {value!r}")
    if a.log is not None and not callable(a.log):
        raise TypeError(f"fit: log must be a function of one str (e.g. print) or None, got {a.log!r}")
    if config is not None:
        if not isinstance(config, Mapping):
            raise TypeError(f"fit: config must be a dict, got {type(config).__name__}")
        try:
            json.dumps(dict(config), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise TypeError(f"fit: config must be JSON-serialisable (it is saved in checkpoints): "
                            f"{e}") from None
    if divergence is not None:
        _args.number("fit", "divergence", divergence)
        if not divergence > 1:
            raise ValueError(f"fit: divergence is a factor over the starting loss and must be > 1 (or None "
                             f"to turn the check off), got {divergence}")


def check_data(x, t, what: str, ids: bool = False):
    """Validate one ``(x, t)`` pair; arrays stay where they are (host or device).

    ``ids``: the network reads integer ids (it starts with an embedding), so ``x`` must be integers."""
    if not isinstance(x, (np.ndarray, jax.Array)):
        x = np.asarray(x)
    if not isinstance(t, (np.ndarray, jax.Array)):
        t = np.asarray(t)
    if x.ndim < 2:
        raise ValueError(f"fit: x_{what} must have a batch axis, shape (N, ...); got shape {x.shape}")
    if ids and not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"fit: x_{what} has dtype {x.dtype}, but the network starts with an embedding, "
                        "which looks up integer ids; pass ids, e.g. x.astype(np.int32)")
    if not ids and not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"fit: x_{what} has dtype {x.dtype}; pass floating-point inputs "
                        "(load images with normalize=True, or divide by 255)")
    if t.ndim < 1 or len(t) != len(x):
        raise ValueError(f"fit: x_{what} has {len(x)} examples but t_{what} has "
                         f"{len(t) if t.ndim else 'none (a scalar)'}")
    if len(x) == 0:
        skip = "; pass test_data=None to skip evaluation" if what == "test" else ""
        raise ValueError(f"fit: the {what} set is empty (x_{what} has shape {x.shape}){skip}")
    _check_finite(x, f"x_{what}")
    if jnp.issubdtype(t.dtype, jnp.floating):
        _check_finite(t, f"t_{what}")
    return x, t


def _check_finite(a, name: str) -> None:
    finite = bool(jnp.all(jnp.isfinite(a))) if isinstance(a, jax.Array) else bool(np.isfinite(a).all())
    if not finite:
        host = np.asarray(a)
        bad = ~np.isfinite(host)
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"fit: {name} holds {int(bad.sum())} values that are NaN or infinite, the first "
                         f"{host[where]} at index {where[0]}{list(where[1:]) if len(where) > 1 else ''}; "
                         "clean the data before training (a NaN input can vanish behind a ReLU and train "
                         "NaN weights with a normal-looking loss)")


def check_targets(t, what: str, out_shape: tuple, ignore: int | None = None) -> None:
    """Labels against the network's outputs ``out_shape`` (``(None, C)``): class indices in
    ``[0, C)`` of shape ``(N,)`` (or ``ignore``, the loss's padding label, which it skips), or float
    targets of the outputs' shape."""
    n_out = out_shape[-1]
    if jnp.issubdtype(t.dtype, jnp.integer) or t.dtype == bool:
        if tuple(t.shape[1:]) != tuple(out_shape[1:-1]):
            raise ValueError(f"fit: t_{what} holds class indices of shape {shape_str(t.shape)}, but the "
                             f"network gives outputs of shape {shape_str(out_shape)}: pass labels of shape "
                             f"{shape_str((t.shape[0], *out_shape[1:-1]))}")
        host = np.asarray(t)
        bad = ((host < 0) | (host >= n_out)) & (host != ignore if ignore is not None else True)
        if bad.any():
            i = int(np.argmax(bad.reshape(len(host), -1).any(axis=1)))
            value = host[i] if host.ndim == 1 else host[i][bad[i]].flat[0]
            padding = f" or the loss's ignore_index {ignore}" if ignore is not None else ""
            raise ValueError(f"fit: t_{what} has {int(bad.sum())} labels outside 0..{n_out - 1}{padding} "
                             f"(the network has {n_out} outputs), the first {value} at index {i}")
    elif tuple(t.shape[1:]) != tuple(out_shape[1:]):
        raise ValueError(f"fit: t_{what} has shape {shape_str(t.shape)}, but the network gives outputs of "
                         f"shape {shape_str(out_shape)}: pass integer class indices of shape "
                         f"{shape_str((t.shape[0], *out_shape[1:-1]))} or targets of shape "
                         f"{shape_str((t.shape[0], *out_shape[1:]))}")


def check_inputs(net: Layer, loss: Loss, sets: Mapping[str, Any], params, xla_options) -> tuple[Data, tuple]:
    """The data (finite, ids in the embedding's vocabulary, labels in range for the network's outputs
    and the loss's padding) and ``params=``: the ``Data`` and the input shape ``(None, *example)``.

    ``sets``: ``{"train": pair, "val": pair or None, "test": pair or None}``."""
    if xla_options is not None and (not isinstance(xla_options, Mapping)
                                    or not all(isinstance(k, str) for k in xla_options)):
        raise TypeError(f"fit: xla_options must be a dict of XLA option name -> value, got {xla_options!r}")
    for what, pair in sets.items():
        if pair is not None and not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError(f"fit: {what}_data must be a pair (x_{what}, t_{what}), "
                            f"got {type(pair).__name__}")
    ids = reads_ids(net)
    checked = {w: None if p is None else check_data(*p, w, ids) for w, p in sets.items()}
    input_shape = (None, *checked["train"][0].shape[1:])
    for what, pair in checked.items():
        if pair is not None and pair[0].shape[1:] != input_shape[1:]:
            raise ValueError(f"fit: x_{what} has examples of shape {pair[0].shape[1:]}, but x_train has "
                             f"{input_shape[1:]}; every set must have the same kind of examples")
    params_like, out_shape = param_shapes(net, input_shape)
    vocab = _vocab(net, params_like) if ids else None
    for what, pair in checked.items():
        if pair is not None:
            if vocab is not None:
                check_ids(pair[0], what, vocab)
            check_targets(pair[1], what, out_shape, ignore=loss.fixed.get("ignore_index"))
    if params is not None:
        check_params(params, net, input_shape)
    data = {f"{part}_{w}": None if p is None else p[i]
            for w, p in checked.items() for i, part in enumerate("xt")}
    return Data(**data), input_shape


def _vocab(net: Layer, params_like) -> int:
    """The vocabulary of the embedding ``net`` starts with: the rows of its table."""
    while net.children:
        key, net = net.children[0]
        params_like = params_like[key]
    return params_like["W"].shape[0]


def check_ids(x, what: str, vocab: int) -> None:
    """Integer ids for an embedding of ``vocab`` rows: every one in ``[0, vocab)`` (an id out of range
    would look up a NaN row: a NaN loss, or a silently NaN evaluation)."""
    host = np.asarray(x)
    bad = (host < 0) | (host >= vocab)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"fit: x_{what} has {int(bad.sum())} ids outside 0..{vocab - 1} (the embedding's "
                         f"vocabulary of {vocab}), the first {host[where]} at index {where[0]}"
                         f"{list(where[1:]) if len(where) > 1 else ''}")


def check_params(params, net: Layer, input_shape: tuple) -> None:
    """``params`` given to ``fit`` must have the structure and shapes ``net.init`` makes."""
    like, _ = param_shapes(net, input_shape)
    check_like("fit", "params", params, like, against="the network's parameters (from net.init)")
    bad = first_non_finite(params)
    if bad is not None:
        raise ValueError(f"fit: params at {bad!r} hold NaN or infinite values; start from finite parameters")


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


def check_resume(checkpoint: str | Path, config: Mapping[str, Any], *,
                 spell: Callable[[str], str] = str, optional: Iterable[str] = ()) -> None:
    """``ValueError`` when ``config`` differs from the checkpoint's in a key outside ``RESUME_MAY_DIFFER``.

    The keys present in ``config`` are compared, and the ``optional`` ones (options
    recorded only when used) also where only the checkpoint has them: a run saved with
    ``augment`` does not resume without it. ``spell`` names a key in the message (the
    command line passes ``--option`` spellings). An unreadable checkpoint raises
    ``CheckpointError`` (a ``ValueError``).
    """
    saved = ckpt_lib.read_config(checkpoint)["config"]
    keys = [*config, *(k for k in optional if k in saved and k not in config)]
    diff = {k: (saved.get(k), config.get(k)) for k in keys
            if k not in RESUME_MAY_DIFFER and saved.get(k) != config.get(k)}
    if diff:
        raise ValueError(f"cannot resume from {checkpoint}: the run differs in "
                         + ", ".join(f"{spell(k)} (saved {a!r}, now {b!r})" for k, (a, b) in diff.items()))


def check_checkpoint_path(checkpoint, *, resume: bool, overwrite: bool, where: str = "fit",
                          spell: Callable[[str], str] = str, keep_best: bool = False) -> Path | None:
    """The checkpoint path, writable; an existing checkpoint is never replaced by a new run by accident.
    With ``keep_best``, neither is the best epoch's checkpoint beside it (``checkpoint.best_path``),
    which may outlive the main one."""
    named = f"{where}: " if where else ""
    if checkpoint is None:
        if resume:
            raise ValueError(f"{named}{spell('resume')} needs {spell('checkpoint')}")
        return None
    path = _args.writable_path(where, spell("checkpoint"), checkpoint)
    if resume:
        if not path.exists():
            raise ckpt_lib.CheckpointError(f"{named}{spell('resume')}: no checkpoint at {path}")
    elif path.exists() and not overwrite:
        try:
            held = f" (a run saved after epoch {ckpt_lib.read_config(path)['epoch']})"
        except ValueError:
            held = " (not a readable checkpoint)"
        raise ValueError(f"{named}{spell('checkpoint')} {path} already exists{held}; pass "
                         f"{spell('resume')} to continue that run, or {spell('overwrite')} to start "
                         "over and replace it")
    best = ckpt_lib.best_path(path)
    if keep_best and not resume and not overwrite and best.exists():
        raise ValueError(f"{named}{spell('keep_best').replace('_', '-')} would replace {best}, the best "
                         f"epoch of an earlier run; pass {spell('overwrite')} to start over and replace it, "
                         f"or choose another {spell('checkpoint')}")
    if keep_best:
        _args.writable_path(where, spell("checkpoint"), best)
    return path


def check_hooks(callbacks, keep_best, keys: tuple[str, ...], *, checkpoint,
                measured: tuple[str, ...]) -> str | None:
    """``callbacks`` (functions of a record) and ``keep_best`` (a measured history key, with a
    checkpoint; ``True``: the validation set's accuracy, or loss, when the run has one, else the test
    set's). Returns the key ``keep_best`` resolves to. Choosing on the test set warns
    (``SelectionWarning``): the test figures of the model chosen are then optimistic."""
    if not isinstance(callbacks, (list, tuple)) or not all(callable(c) for c in callbacks):
        raise TypeError(f"fit: callbacks must be a list of functions record -> stop reason or None, e.g. "
                        f"[train.early_stopping(patience=3)]; got {callbacks!r}")
    if keep_best is None or keep_best is False:
        return None
    if keep_best is True:
        held = "val" if "val" in measured else "test"
        keep_best = f"{held}_acc" if f"{held}_acc" in keys else f"{held}_loss"
    if keep_best not in keys:
        raise ValueError(f"fit: keep_best must be True or one of {keys}, got {keep_best!r}")
    if checkpoint is None:
        raise ValueError(f"fit: keep_best={keep_best!r} saves the best epoch beside the checkpoint; pass "
                         "checkpoint=PATH as well")
    prefix = keep_best.split("_")[0]
    if prefix in SETS and prefix not in measured:
        raise ValueError(f"fit: keep_best={keep_best!r} is not measured in this run (val_* needs val_data or "
                         "val_fraction, test_* test_data, train_* eval_train=True)")
    if prefix == "test":
        warn_test_selection(f"keep_best={keep_best!r}", stacklevel=5)  # at the user's call of fit
    return keep_best


def check_progress(progress, mesh) -> None:
    """``progress``: a function of one dict, on one device."""
    if progress is not None and not callable(progress):
        raise TypeError(f"fit: progress must be a function of one dict (epoch, step, steps, seconds), "
                        f"got {progress!r}")
    if progress is not None and mesh is not None:
        raise ValueError("fit: progress reports within an epoch on one device; with a mesh, pass mesh=None "
                         "or progress=None")


def check_eval_device(eval_device, mesh) -> None:
    """``eval_device``: ``None``, or a device of this process beside training on one device."""
    if eval_device is None:
        return
    if not isinstance(eval_device, jax.Device):
        raise TypeError(f"fit: eval_device must be a jax.Device, e.g. jax.devices()[1], or None; "
                        f"got {eval_device!r}")
    if isinstance(mesh, Mesh):
        raise ValueError(f"fit: eval_device evaluates beside training on one device, but mesh= trains on a "
                         f"mesh of {mesh.size} device{'s' if mesh.size > 1 else ''}, where the evaluation is "
                         "split over the mesh; pass mesh=None or eval_device=None")
    if eval_device.process_index != jax.process_index():
        raise ValueError(f"fit: eval_device {eval_device} belongs to process {eval_device.process_index}, "
                         f"not to this one ({jax.process_index()}); pass one of jax.local_devices()")


def may_evaluate_beside(net: Layer, input_shape: tuple, eval_device: jax.Device | None,
                        dtype=jnp.float32) -> bool:
    """Whether the evaluation on ``eval_device`` may run while the next epoch trains: there is an
    evaluation device, and it is no CPU or ``net`` has no convolution over several channels
    (``convolves_channels``). XLA's CPU convolutions of such a network (Eigen's), in a training
    epoch on one CPU device, computed other values while another program ran on a second CPU
    device (a step's loss 0.5% off; ``docs/design.md``, "The evaluation beside the next epoch"):
    ``fit`` then evaluates on ``eval_device`` after each epoch, with nothing beside it."""
    if eval_device is None:
        return False
    return eval_device.platform != "cpu" or not convolves_channels(net, input_shape, dtype)


def convolves_channels(net: Layer, input_shape: tuple, dtype=jnp.float32) -> bool:
    """Whether ``net``'s forward pass (in training, for ``input_shape = (None, *example)``) has a
    convolution (``lax.conv_general_dilated``) reading more than one channel. Traced from shapes,
    nothing computed: the book's ``simple_convnet`` (one grey channel in) has none, ``resnet`` many."""
    uses = net.uses

    def forward(params, x):
        key = jax.random.key(0) if "key" in uses else None  # traced: nothing runs eagerly
        state = net.init_state(input_shape) if "state" in uses else None
        return apply(net, params, x, key=key, train=True if "train" in uses else None, state=state)[0]

    params_like, _ = param_shapes(net, input_shape)
    jaxpr = jax.make_jaxpr(forward)(params_like, jax.ShapeDtypeStruct((1, *input_shape[1:]), dtype))
    return any(_conv_channels(eqn) > 1 for eqn in _equations(jaxpr.jaxpr)
               if eqn.primitive.name == "conv_general_dilated")


def _equations(jaxpr) -> Iterable:
    """Every equation of ``jaxpr`` and of the jaxprs inside it (scan and loop bodies, branches)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr holds its Jaxpr
                if hasattr(inner, "eqns"):
                    yield from _equations(inner)


def _conv_channels(eqn) -> int:
    """The input channels of a ``conv_general_dilated`` equation (its lhs feature dimension)."""
    lhs_spec = eqn.params["dimension_numbers"].lhs_spec  # (batch, feature, spatial...) positions
    return eqn.invars[0].aval.shape[lhs_spec[1]]


def resolve_mesh(mesh: Mesh | str | None, progress, eval_device=None) -> Mesh | None:
    """``fit(mesh=)`` as a ``Mesh`` or ``None``: ``"auto"`` is every GPU or TPU when there are several,
    but one device with ``progress`` or an ``eval_device`` (checked here too), and one device on a
    CPU: simulated CPU devices (``jax_num_cpu_devices``, ``--xla_force_host_platform_device_count``)
    share the same cores, so data parallelism over them is only done on request (a ``Mesh``)."""
    if isinstance(mesh, str) and mesh == "auto":
        one = progress is not None or eval_device is not None or jax.default_backend() == "cpu"
        mesh = None if one else distributed.default_mesh()
    check_eval_device(eval_device, mesh)
    if progress is not None and isinstance(mesh, Mesh) and mesh.size == 1:
        mesh = None  # one device: the same run without shard_map
    check_progress(progress, mesh)
    if mesh is not None and not (isinstance(mesh, Mesh) and set(mesh.axis_names) == set(distributed.AXES)):
        raise ValueError(f"fit: mesh must be a jax.sharding.Mesh with axes {distributed.AXES} (from "
                         f"fnet.distributed.make_mesh), None or 'auto'; got {mesh!r}")
    return mesh
