"""fnet-train: the command line's run, from parsed options to the trained model and its outputs.

The options, their checks and the models they describe are in ``fnet.cli_options``.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import NoReturn

from fnet.cli_models import DEFAULT_LR, build_model, model_input, used_model_options
from fnet.cli_options import (
    CLI_SPELLING,
    build_parser,
    check_args,
    default_lr,
    divergence_factor,
    lr_schedule,
    xla_option,
)

OPTIONAL_CONFIG = ("widths", "blocks", "augment", "label_smoothing")
"""Options newer than some checkpoints: in the saved config only when used, and compared on
``--resume`` even when only the checkpoint has them."""

__all__ = ["CLI_SPELLING", "DEFAULT_LR", "build_model", "build_parser", "divergence_factor", "main",
           "plot_history", "xla_option"]


def _progress_line(total_epochs: int, batch_size: int):
    """``--progress``: one line on stderr, rewritten within the epoch and cleared at its end."""
    width = 30

    def show(p: dict) -> None:
        done, steps, seconds = p["step"], p["steps"], p["seconds"]
        bar = "#" * (width * done // steps)
        rate = done * batch_size / max(seconds, 1e-9)
        eta = seconds * (steps - done) / done
        line = (f"epoch {p['epoch']}/{total_epochs} [{bar:<{width}}] {done}/{steps} steps  "
                f"{rate:,.0f} samples/s  ETA {eta:.1f}s")
        end = "\r" + " " * len(line) + "\r" if done == steps else ""
        print("\r" + line + end, end="", file=sys.stderr, flush=True)

    return show


def _describe_device(mesh=None, eval_device=None) -> str:
    import jax

    d = jax.devices()[0]
    used = 1 if mesh is None else mesh.size
    hosts = f" on {jax.process_count()} hosts" if jax.process_count() > 1 else ""
    beside = f", evaluating on {eval_device} beside it" if eval_device is not None else ""
    return f"{used} x {d.device_kind} ({d.platform}){hosts}{beside}"


def _ask_for_eval_device(a) -> bool:
    """Ask JAX for two CPU devices, before its backends start, so that on a CPU the evaluation can run
    on the second while the next epoch trains on the first (``fit(eval_device=)``; XLA runs one
    program at a time per device, and the book's small training step leaves a core idle). Not with
    ``--no-eval-overlap``, several training devices or hosts, or CPU devices the user set up
    (``XLA_FLAGS=--xla_force_host_platform_device_count``, ``JAX_NUM_CPU_DEVICES``)."""
    import jax

    users_cpus = ("xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
                  or jax.config.jax_num_cpu_devices >= 0)
    if a.no_eval_overlap or a.coordinator is not None or a.devices not in (None, 1) or users_cpus:
        return False
    try:
        jax.config.update("jax_num_cpu_devices", 2)
    except RuntimeError:  # JAX already started in this process (main() called from Python): as it is
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    check_args(parser, a)
    if a.evaluate or a.predict:
        from fnet.cli_use import use_checkpoint

        return use_checkpoint(parser, a)

    import jax
    import numpy as np

    from fnet import checkpoint as ckpt_lib
    from fnet import data, distributed, losses, optim, train
    from fnet.core import param_shapes

    t_start = time.perf_counter()
    if a.coordinator is not None:  # before anything else touches JAX
        distributed.initialize(a.coordinator, a.num_processes, a.process_id)
    if not a.no_compile_cache:
        jax.config.update("jax_compilation_cache_dir", str(a.compile_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    eval_device = None
    if _ask_for_eval_device(a) and jax.default_backend() == "cpu":
        mesh, eval_device = None, jax.devices()[1]  # train on the first CPU device, evaluate on the second
    else:
        try:
            mesh = distributed.make_mesh(a.devices)
        except ValueError as e:
            parser.error(str(e).replace("make_mesh: ", "--devices: "))
        mesh = None if mesh.size == 1 else mesh  # one device: plain jit, as fit(mesh="auto")
    try:
        (x_train, t_train), (x_test, t_test) = data.load_dataset(
            a.dataset, a.data_dir, normalize=True, flatten=False, download=not a.no_download,
            spelling=CLI_SPELLING, cache=not a.no_data_cache)
        x_train, x_test = model_input(a.model, x_train), model_input(a.model, x_test)
    except data.DataError as e:
        print(f"fnet-train: {e}", file=sys.stderr)
        return 2
    if a.train_size is not None:
        if a.train_size > len(x_train):
            parser.error(f"--train-size {a.train_size} is larger than the {a.dataset} training set "
                         f"({len(x_train)} examples)")
        x_train, t_train = x_train[: a.train_size], t_train[: a.train_size]
    # each host keeps its own shard (with one host: everything)
    x_train, t_train = distributed.host_shard(x_train, t_train)
    x_test, t_test = distributed.host_shard(x_test, t_test)
    try:
        train.check_batch_size(a.batch_size, len(x_train), mesh, what="--batch-size")
    except ValueError as e:
        parser.error(str(e))
    t_loaded = time.perf_counter()

    net, input_shape = build_model(a.model, x_train.shape[1:], len(data.DATASETS[a.dataset].classes),
                                   hidden=a.hidden,
                                   activation=a.activation, weight_init=a.weight_init, dropout=a.dropout,
                                   batchnorm=a.batchnorm, widths=a.widths, blocks=a.blocks)
    if a.epochs is None and a.iters is None:
        a.iters = 10000
    # the values actually used, not argparse's None for "the default"
    a.lr = a.lr if a.lr is not None else DEFAULT_LR.get(a.optimizer, default_lr(a.optimizer))
    run = train.plan(len(x_train), a.batch_size, epochs=a.epochs, iters=a.iters, mesh=mesh)
    total_steps = run.steps_per_epoch * (run.total_epochs - 1) + run.last_steps
    if "warmup" in a.from_model and a.warmup >= total_steps:  # the recipe's warmup, on a short run
        a.warmup = max(1, total_steps // 10) if total_steps > 1 else None
    optimizer = optim.by_name(a.optimizer, weight_decay=a.weight_decay,
                              lr=lr_schedule(parser, a.schedule, a.lr, a.warmup, total_steps))
    a.hidden, a.activation, a.weight_init = used_model_options(a)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()
              if k not in ("quiet", "resume", "overwrite", "keep_best", "plot", "json", "checkpoint",
                           "from_model", "devices", "coordinator", "num_processes", "process_id",
                           "compile_cache", "no_compile_cache", "no_data_cache", "no_eval_overlap")}
    for k in OPTIONAL_CONFIG:  # newer than some checkpoints: kept only when used
        if not config[k]:
            del config[k]
    resumed_from = 0
    if a.resume:
        try:
            train.check_resume(a.checkpoint, config, spell=lambda k: "--" + k.replace("_", "-"),
                               optional=OPTIONAL_CONFIG)
            resumed_from = ckpt_lib.read_config(a.checkpoint)["epoch"]
        except ValueError as e:
            parser.error(f"--resume: {e}")

    log = None if a.quiet else print
    if log:
        shapes, _ = param_shapes(net, input_shape)
        n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes))
        log(f"{a.dataset}: {len(x_train)} train / {len(x_test)} test examples, loaded in "
            f"{t_loaded - t_start:.1f}s")
        log(f"model {a.model}: {n_params:,} parameters; {optimizer!r}; batch {a.batch_size}; "
            f"{f'iters {a.iters}' if a.iters else f'epochs {a.epochs}'}; devices "
            f"{_describe_device(mesh, eval_device)}")
    try:
        loss = losses.softmax_cross_entropy
        if a.label_smoothing:
            loss = loss.with_options(label_smoothing=a.label_smoothing)
        result = train.fit(net, loss, optimizer, (x_train, t_train), (x_test, t_test),
                           clip_norm=a.clip_norm, augment=a.augment,
                           keep_best="test_acc" if a.keep_best else None,
                           callbacks=[train.early_stopping("test_loss", a.early_stop)] if a.early_stop
                           else [],
                           epochs=a.epochs, iters=a.iters, batch_size=a.batch_size, seed=a.seed,
                           sampling=a.sampling, eval_train=not a.no_eval_train, checkpoint=a.checkpoint,
                           resume=a.resume, overwrite=a.overwrite, config=config, log=log, mesh=mesh,
                           divergence=a.divergence,
                           progress=_progress_line(run.total_epochs, a.batch_size) if a.progress else None,
                           xla_options=dict(a.xla_option) if a.xla_option else None, eval_device=eval_device)
    except train.DivergenceError as e:  # NonFiniteLossError included
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
    total = time.perf_counter() - t_start
    h = result.history
    final = {k: float(h[k][-1]) for k in ("loss", "train_acc", "test_acc") if k in h and len(h[k])}
    if log:
        trained = int(h["steps"][resumed_from:].sum())  # this run's steps, not the checkpoint's
        rate = f", {trained * a.batch_size / result.train_seconds:,.0f} samples/s" if trained else ""
        log(f"total {total:.1f}s (data {t_loaded - t_start:.1f}s, compile {result.compile_seconds:.1f}s, "
            f"training {result.train_seconds:.1f}s{rate})")
        if final:  # with --no-eval-train the training set was not evaluated: no train acc to print
            shown = [k for k in ("train_acc", "test_acc") if not math.isnan(final.get(k, math.nan))]
            log("final: " + ", ".join(f"{k.replace('_', ' ')} {final[k]:.4f}" for k in shown))
    if jax.process_index() != 0:
        return 0
    try:
        if a.json is not None:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(_strict_json({
                "config": config, "final": final,
                "history": {k: v.tolist() for k, v in h.items()},
                "timings": {"total_s": total, "data_s": t_loaded - t_start,
                            "compile_s": result.compile_seconds, "train_s": result.train_seconds},
                "jax": jax.__version__, "device": _describe_device(mesh, eval_device),
                "python": platform.python_version(),
                "machine": platform.machine(),
            }), indent=2, allow_nan=False))
        if a.plot is not None:
            plot_history(h, a.plot, title=f"{a.model} on {a.dataset}")
    except OSError as e:
        saved = f"; the trained model is in {a.checkpoint}" if a.checkpoint else ""
        print(f"fnet-train: cannot write {e.filename or 'an output file'}: {e.strerror or e}{saved}",
              file=sys.stderr)
        return 1
    return 0


def _strict_json(value):
    """``value`` with every NaN as ``null``: a metric not evaluated (``--no-eval-train``) is no number,
    and strict JSON readers reject ``NaN``."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    return value


def plot_history(history: dict, path: Path, title: str = "") -> None:
    """A PNG with the loss and the train/test accuracy per epoch."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def measured(key):  # a curve that was evaluated (not all NaN): --no-eval-train has no train curves
        return np.isfinite(np.asarray(history[key], float)).any()

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(history["epoch"], history["loss"], marker="o", label="minibatch loss (epoch mean)")
    for key, label, style in (("train_loss", "train", "-"), ("test_loss", "test", "--")):
        if measured(key):
            ax1.plot(history["epoch"], history[key], marker="s", linestyle=style, label=label)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    for key, label, style in (("train_acc", "train", "-"), ("test_acc", "test", "--")):
        if measured(key):
            ax2.plot(history["epoch"], history[key], marker="o" if label == "train" else "s", linestyle=style,
                     label=label)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
