"""fnet-train's run: from parsed options to the trained model and its outputs.

``main`` reads as the steps of a run: parse and check the options (``fnet.cli.options``),
or use a saved model (``fnet.cli.use``); start JAX on the devices; load the data; build
the model and its training recipe (``fnet.cli.models``); check a resume; train with
``fnet.train.fit``; report and write the outputs (``fnet.cli.outputs``). The parsed
options (an ``argparse.Namespace``) are the run's one record of its settings.
"""

from __future__ import annotations

import atexit
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, NoReturn

from fnet.cli.models import DEFAULT_LR, build_network, model_input, used_model_options
from fnet.cli.options import (
    CLI_SPELLING,
    build_parser,
    check_args,
    default_lr,
    lr_schedule,
    use_compile_cache,
)
from fnet.cli.outputs import describe_device, progress_line, report, write_outputs

OPTIONAL_CONFIG = ("widths", "blocks", "augment", "label_smoothing", "val_fraction", "schedule_steps",
                   "warmup_used")
"""Options newer than some checkpoints: in the saved config only when used, and compared on
``--resume`` even when only the checkpoint has them."""

NOT_SAVED = ("quiet", "progress", "resume", "overwrite", "keep_best", "plot", "json", "checkpoint",
             "evaluate", "predict", "from_model", "devices", "coordinator", "num_processes", "process_id",
             "compile_cache", "no_compile_cache", "no_data_cache", "no_eval_overlap")
"""Options that do not go into a checkpoint's config: what is shown and written, devices, caches.
Only options that change what is computed may block a resume."""

__all__ = ["main", "run"]


def main(argv: list[str] | None = None) -> int:
    """``fnet-train``: the exit status (0; 1 when training diverges or an output cannot be written;
    2 for bad options or data)."""
    parser = build_parser()
    a = parser.parse_args(argv)
    check_args(parser, a)
    if a.evaluate or a.predict:
        from fnet.cli.use import use_checkpoint

        return use_checkpoint(parser, a)
    t_start = time.perf_counter()
    mesh, eval_device = start_jax(parser, a)
    loaded = load_data(parser, a, mesh)
    if loaded is None:
        return 2
    train_data, val_data, test = loaded
    t_loaded = time.perf_counter()
    try:
        net, input_shape = build_network(a, train_data[0].shape[1:], _classes(a))
    except ValueError as e:  # --net: a module that does not import, a network of the wrong outputs
        parser.error(str(e))
    optimizer, plan = recipe(parser, a, len(train_data[0]), mesh)
    config = saved_config(a)
    resumed_from = check_resume(parser, a, config)
    log = None if a.quiet else print
    if log:
        held = f" ({len(val_data[0])} held out for validation)" if val_data else ""
        log(f"{a.dataset}: {len(train_data[0])} train{held} / {len(test[0])} test examples, loaded in "
            f"{t_loaded - t_start:.1f}s")
        model = f"net {a.net}" if a.model == "net" else f"model {a.model}"
        log(f"{model}: {_count_params(net, input_shape):,} parameters; {optimizer!r}; batch "
            f"{a.batch_size}; {f'iters {a.iters}' if a.iters else f'epochs {a.epochs}'}")
    result = train(a, net, optimizer, train_data, test, val_data, plan=plan, mesh=mesh,
                   eval_device=eval_device, config=config, log=log)
    if isinstance(result, int):
        return result
    timings = {"total_s": time.perf_counter() - t_start, "data_s": t_loaded - t_start,
               "compile_s": result.compile_seconds, "train_s": result.train_seconds}
    final = report(a, result, timings, resumed_from, log)
    device = describe_device(mesh, eval_device, result.evaluated_beside)
    return write_outputs(a, result, config, final, timings, device)


def start_jax(parser, a) -> tuple[Any, Any]:
    """Join a multi-host run, turn on the compilation cache, and choose the devices: ``(mesh,
    eval_device)``. On a CPU, training on the first CPU device and evaluating on a second one."""
    import jax

    from fnet import distributed

    if a.coordinator is not None:  # before anything else touches JAX
        distributed.initialize(a.coordinator, a.num_processes, a.process_id)
    use_compile_cache(a)
    if _ask_for_cpu_devices(a) and jax.default_backend() == "cpu" and a.devices in (None, 1):
        return None, jax.devices()[1]
    try:
        mesh = distributed.make_mesh(a.devices)
    except ValueError as e:
        parser.error(str(e).replace("make_mesh: ", "--devices: "))
    if a.progress and mesh.size > 1:
        parser.error(f"--progress reports within an epoch on one device, and this run would train on "
                     f"{mesh.size}: add --devices 1, or drop --progress (each epoch still gets its line)")
    return (None if mesh.size == 1 else mesh), None  # one device: plain jit, as fit(mesh="auto")


def _ask_for_cpu_devices(a) -> bool:
    """Ask JAX for CPU devices before its backends start. With ``--devices N`` (N > 1), N of them, so
    that on a CPU the batch is split over N devices that run at the same time (data parallel, sharing
    the machine's cores; docs/speed.md). Otherwise two, so that the evaluation can run on the second
    while the next epoch trains on the first (``fit(eval_device=)``; XLA runs one program at a time
    per device, and the book's small training step leaves a core idle): not with
    ``--no-eval-overlap``. Neither for several hosts nor where the user set up the CPU devices
    (``distributed.ask_for_cpu_devices``)."""
    from fnet import distributed

    if a.coordinator is not None or (a.no_eval_overlap and a.devices in (None, 1)):
        return False
    return distributed.ask_for_cpu_devices(2 if a.devices in (None, 1) else a.devices)


def load_data(parser, a, mesh) -> tuple[tuple, tuple | None, tuple] | None:
    """``(train_data, val_data, test_data)``, each ``(x, t)`` in the model's layout, this host's share
    (``val_data``: ``None`` without ``--val-fraction``), the batch size checked against the training
    set; ``None`` (after the message) when the data cannot be had."""
    from fnet import data, distributed, train

    try:
        (x_train, t_train), (x_test, t_test) = data.load_dataset(
            a.dataset, a.data_dir, normalize=True, flatten=False, download=not a.no_download,
            spelling=CLI_SPELLING, cache=not a.no_data_cache)
    except data.DataError as e:
        print(f"fnet-train: {e}", file=sys.stderr)
        return None
    x_train, x_test = model_input(a.model, x_train, a.net_input), model_input(a.model, x_test, a.net_input)
    if a.train_size is not None:
        if a.train_size > len(x_train):
            parser.error(f"--train-size {a.train_size} is larger than the {a.dataset} training set "
                         f"({len(x_train)} examples)")
        x_train, t_train = x_train[: a.train_size], t_train[: a.train_size]
    # each host keeps its own shard (with one host: everything)
    x_train, t_train = distributed.host_shard(x_train, t_train)
    x_test, t_test = distributed.host_shard(x_test, t_test)
    (x_train, t_train), val_data = hold_out(parser, a, (x_train, t_train))
    try:
        train.check_batch_size(a.batch_size, len(x_train), mesh, what="--batch-size")
    except ValueError as e:
        parser.error(str(e))
    return (x_train, t_train), val_data, (x_test, t_test)


def hold_out(parser, a, train_data) -> tuple[tuple, tuple | None]:
    """``(train_data, val_data)``: with ``--val-fraction``, that share of the training set held out
    (as ``fit(val_fraction=)`` holds it out, the same examples for the same ``--seed``), so that the
    schedule is built over the steps the run takes and the first line counts both sets."""
    from fnet.train.checks import split_validation

    try:
        return split_validation(train_data, None, a.val_fraction, a.seed)
    except ValueError as e:
        parser.error(str(e).replace("fit: val_fraction=", "--val-fraction "))


def recipe(parser, a, n_train: int, mesh) -> tuple[Any, Any]:
    """The optimizer the options describe, with its learning-rate schedule over the run, and the
    run's ``Plan``; fills in ``a.lr`` with the rate used. ``a.warmup`` stays what was asked (or the
    model's recipe): a recipe's warmup longer than a short run is shortened here, not in ``a``, so
    that a checkpoint records what the user asked for. ``a.schedule_steps``: the steps the schedule
    is built over, when it depends on them (a resumed run must have the same)."""
    from fnet import optim, train

    if a.epochs is None and a.iters is None:
        a.iters = 10000
    # the values actually used, not argparse's None for "the default"
    a.lr = a.lr if a.lr is not None else DEFAULT_LR.get(a.optimizer, default_lr(a.optimizer))
    plan = train.plan(n_train, a.batch_size, epochs=a.epochs, iters=a.iters, mesh=mesh)
    warmup = a.warmup
    if "warmup" in a.from_model and warmup >= plan.total_steps:  # the recipe's warmup, on a short run
        warmup = max(1, plan.total_steps // 10) if plan.total_steps > 1 else None
    if a.resume and "warmup_used" in _saved(a):  # continue the warmup the checkpoint's run used
        warmup = _saved(a)["warmup_used"]
    # what the schedule was built with: a decaying schedule depends on the run's length, so a resumed
    # run must have the same (check_resume); a shortened warmup is recorded and continued
    a.schedule_steps = plan.total_steps if a.schedule != "constant" else None
    a.warmup_used = warmup if warmup != a.warmup else None
    schedule = lr_schedule(parser, a.schedule, a.lr, warmup, plan.total_steps)
    return optim.by_name(a.optimizer, weight_decay=a.weight_decay, lr=schedule), plan


def _saved(a) -> dict:
    """The config of the ``--checkpoint`` being resumed (``{}`` when it cannot be read: check_resume says
    why)."""
    from fnet import checkpoint as ckpt_lib

    try:
        return ckpt_lib.read_config(a.checkpoint)["config"]
    except ckpt_lib.CheckpointError:
        return {}


def saved_config(a) -> dict:
    """The options a checkpoint keeps (what the run computes, with the model's defaults filled in)."""
    a.hidden, a.activation, a.weight_init = used_model_options(a)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items() if k not in NOT_SAVED}
    for k in OPTIONAL_CONFIG:  # newer than some checkpoints: kept only when used
        if not config[k]:
            del config[k]
    if a.model != "net":  # --net and what it reads: only for a network of one's own
        del config["net"], config["net_input"]
    return config


def check_resume(parser, a, config: dict) -> int:
    """With ``--resume``: the epochs the checkpoint holds, once it is found to be this run's; else 0."""
    if not a.resume:
        return 0
    from fnet import checkpoint as ckpt_lib
    from fnet import train

    try:
        saved = ckpt_lib.read_config(a.checkpoint)["config"]
        if saved.get("schedule_steps") != config.get("schedule_steps") and (
                saved.get("schedule_steps") or config.get("schedule_steps")):
            parser.error(_schedule_differs(a, saved, config))
        train.check_resume(a.checkpoint, config, spell=lambda k: "--" + k.replace("_", "-"),
                           optional=tuple(k for k in OPTIONAL_CONFIG if k not in ("schedule_steps",
                                                                                   "warmup_used")))
        return ckpt_lib.read_config(a.checkpoint)["epoch"]
    except ValueError as e:
        parser.error(f"--resume: {e}")


def _schedule_differs(a, saved: dict, config: dict) -> str:
    """Why a run whose learning-rate schedule depends on its length cannot resume with another length."""
    was = f"--epochs {saved['epochs']}" if saved.get("epochs") else f"--iters {saved.get('iters')}"
    now = f"--epochs {a.epochs}" if a.epochs else f"--iters {a.iters}"
    return (f"--resume: the learning-rate schedule (--schedule {saved.get('schedule')}) of {a.checkpoint} "
            f"was built over {saved.get('schedule_steps') or 'its'} steps ({was}); {now} would rebuild it "
            f"over {config.get('schedule_steps') or 'other'} steps while the step count carries on. Resume "
            f"with {was} to finish that run, or start a new one with --overwrite")


def train(a, net, optimizer, train_data, test_data, val_data, *, plan, mesh, eval_device, config: dict, log):
    """``fit`` with the options: its ``TrainResult``, or the exit status when it stopped (1: diverged;
    130: interrupted; 2: an error the parser could not see, such as an unknown ``--xla-option``)."""
    from fnet import checkpoint as ckpt_lib
    from fnet import losses
    from fnet import train as training

    loss = losses.softmax_cross_entropy
    if a.label_smoothing:
        loss = loss.with_options(label_smoothing=a.label_smoothing)
    chooses = [opt for opt, given in (("--keep-best", a.keep_best), ("--early-stop", a.early_stop)) if given]
    if chooses and not a.val_fraction:  # fit's SelectionWarning, in the command line's words
        verb = "choose" if len(chooses) > 1 else "chooses"
        print(f"fnet-train: warning: {' and '.join(chooses)} without --val-fraction {verb} on the test set, "
              "so the test figures reported are optimistic (the test set took part in choosing); add "
              "--val-fraction 0.1 to choose on a validation set held out of the training set",
              file=sys.stderr)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", training.SelectionWarning)
            return training.fit(
                net, loss, optimizer, train_data, test_data, clip_norm=a.clip_norm, augment=a.augment,
                keep_best=True if a.keep_best else None, val_data=val_data,
                callbacks=[training.early_stopping(patience=a.early_stop)] if a.early_stop else [],
                epochs=a.epochs, iters=a.iters, batch_size=a.batch_size, seed=a.seed, sampling=a.sampling,
                eval_train=not a.no_eval_train, checkpoint=a.checkpoint, resume=a.resume,
                overwrite=a.overwrite, config=config, log=log, mesh=mesh, divergence=a.divergence,
                progress=progress_line(plan.total_epochs, a.batch_size) if a.progress else None,
                xla_options=dict(a.xla_option) if a.xla_option else None, eval_device=eval_device)
    except training.DivergenceError as e:  # NonFiniteLossError included
        print(f"fnet-train: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        held = ""
        if a.checkpoint is not None and a.checkpoint.exists():
            held = (f"; {a.checkpoint} holds epoch {ckpt_lib.read_config(a.checkpoint)['epoch']} "
                    "(continue with --resume)")
        print(f"fnet-train: interrupted{held}", file=sys.stderr)
        return 130
    except ValueError as e:  # a CheckpointError, or what the parser cannot see (an unknown --xla-option)
        print(f"fnet-train: {e}", file=sys.stderr)
        return 2


def _classes(a) -> int:
    from fnet import data

    return len(data.DATASETS[a.dataset].classes)


def _count_params(net, input_shape) -> int:
    import math

    import jax

    from fnet.core import param_shapes

    shapes, _ = param_shapes(net, input_shape)
    return sum(math.prod(p.shape) for p in jax.tree.leaves(shapes))


def run() -> NoReturn:
    """``fnet-train`` and ``scripts/train.py``: ``main()``, then the exit handlers, then exit at once.

    Python's own teardown (freeing every module, the JAX client and its thread pools) is
    skipped: it does nothing a finished command needs and is measurable beside the book's
    short run (``docs/speed.md``). The output is flushed, the files are closed, a compilation
    still in flight is waited for (it writes to JAX's persistent cache), and the ``atexit``
    handlers (JAX's among them) still run.
    An exception leaves as usual, with its traceback.
    """
    code = main()
    from fnet.train.programs import wait_for_compilations

    wait_for_compilations()  # a run stopped before its first evaluation may still be compiling it
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
