"""What fnet-train shows and writes: the progress line, the devices, the final report, the JSON
and the plot."""

from __future__ import annotations

import json
import math
import platform
import sys
from pathlib import Path

__all__ = ["describe_device", "plot_history", "progress_line", "report", "strict_json", "write_outputs"]


def progress_line(total_epochs: int, batch_size: int):
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


def describe_device(mesh=None, eval_device=None, beside: bool = True) -> str:
    import jax

    from fnet.train.fit import describe_evaluation

    d = jax.devices()[0]
    used = 1 if mesh is None else mesh.size
    hosts = f" on {jax.process_count()} hosts" if jax.process_count() > 1 else ""
    return f"{used} x {d.device_kind} ({d.platform}){hosts}{describe_evaluation(eval_device, beside)}"


def strict_json(value):
    """``value`` with every NaN as ``null``: a metric not evaluated (``--no-eval-train``) is no number,
    and strict JSON readers reject ``NaN``."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
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


def report(a, result, timings: dict, resumed_from: int, log) -> dict:
    """Log the run's total line and final accuracies; the final metrics ``{loss, train_acc, test_acc}``."""
    h = result.history
    final = {k: float(h[k][-1]) for k in ("loss", "train_acc", "test_acc") if k in h and len(h[k])}
    if log:
        trained = int(h["steps"][resumed_from:].sum())  # this run's steps, not the checkpoint's
        rate = f", {trained * a.batch_size / result.train_seconds:,.0f} samples/s" if trained else ""
        log(f"total {timings['total_s']:.1f}s (data {timings['data_s']:.1f}s, compile "
            f"{timings['compile_s']:.1f}s, training {timings['train_s']:.1f}s{rate})")
        if final:  # with --no-eval-train the training set was not evaluated: no train acc to print
            shown = [k for k in ("train_acc", "test_acc") if not math.isnan(final.get(k, math.nan))]
            log("final: " + ", ".join(f"{k.replace('_', ' ')} {final[k]:.4f}" for k in shown))
    return final


def write_outputs(a, result, config: dict, final: dict, timings: dict, device: str) -> int:
    """``--json`` and ``--plot`` (by process 0): the exit status, 1 when one cannot be written."""
    import jax

    if jax.process_index() != 0:
        return 0
    try:
        if a.json is not None:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(strict_json({
                "config": config, "final": final,
                "history": {k: v.tolist() for k, v in result.history.items()},
                "timings": timings, "jax": jax.__version__, "device": device,
                "python": platform.python_version(), "machine": platform.machine(),
            }), indent=2, allow_nan=False))
        if a.plot is not None:
            plot_history(result.history, a.plot, title=f"{a.model} on {a.dataset}")
    except OSError as e:
        saved = f"; the trained model is in {a.checkpoint}" if a.checkpoint else ""
        print(f"fnet-train: cannot write {e.filename or 'an output file'}: {e.strerror or e}{saved}",
              file=sys.stderr)
        return 1
    return 0


