#!/usr/bin/env python
"""Sequence to sequence, the second book's chapters 7 and 8: addition and dates, with or without attention.

    python scripts/seq2seq.py --data addition --model peeky --reverse --epochs 25
    python scripts/seq2seq.py --data date --model attention --reverse --hidden 256 --epochs 3 \\
        --attention-map attention.png

``--data`` is ``addition`` (sums of two numbers below 1000), ``date`` (dates in the book's mix of
formats, to ``YYYY-MM-DD``), each 50,000 lines generated from ``--seed``, or a file of lines
``QUESTION_ANSWER`` in the book's fixed-width format (``dataset/addition.txt``, ``date.txt``). The
lines are shuffled with ``--seed`` and the last tenth is held out. ``--model`` is ``seq2seq``
(``fnet.models.seq2seq``), ``peeky`` (``seq2seq(peeky=True)``) or ``attention``
(``fnet.models.attention_seq2seq``); ``--reverse`` feeds the questions backwards. Training is the
book's: teacher forcing (the decoder reads the answer's characters and predicts each next one),
every epoch the training lines in a new order in minibatches of ``--batch-size`` (the remainder
left out, as the book's ``Trainer``), Adam with ``--lr``, gradients clipped to a global norm of
``--clip-norm``; the whole epoch is one compiled program. After each epoch the held-out questions
are answered by greedy decoding and ``test acc`` is the share answered exactly right (every
character of the answer, padding included). ``--devices N`` splits every minibatch over N devices
(on a CPU, N CPU devices sharing the cores) and averages the gradients: the same run up to rounding.
Compiled programs are kept in ``--compile-cache`` (as ``fnet-train`` keeps them), so that a rerun
starts training without compiling.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

MODELS = {"seq2seq": "seq2seq", "peeky": "peeky_seq2seq", "attention": "attention_seq2seq"}
"""The --model choices and the layer each builds."""
TASKS = ("addition", "date")
RUN_KEYS = ("data", "model", "reverse", "batch_size", "wordvec", "hidden", "lr", "clip_norm", "seed")
"""What the run computes: a resumed run must have the checkpoint's (only --epochs may grow)."""
SCRIPT = "seq2seq"
MAP_EXAMPLES = 4
"""Held-out examples drawn by --attention-map."""


def parser() -> argparse.ArgumentParser:
    from fnet.cli.options import add_compile_cache_options, positive_float, positive_int, seed_number

    count, number = positive_int, positive_float
    p = argparse.ArgumentParser(prog="seq2seq.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, metavar="{addition,date,FILE}",
                   help="a generated task, or a file of QUESTION_ANSWER lines")
    g.add_argument("--reverse", action="store_true", help="feed each question backwards (the book's trick)")
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=tuple(MODELS), default="seq2seq",
                   help="seq2seq, peeky (PeekySeq2seq) or attention (AttentionSeq2seq); default seq2seq")
    g.add_argument("--wordvec", type=count, default=16, help="the character embedding's size (default 16)")
    g.add_argument("--hidden", type=count, default=128, help="the LSTMs' hidden size (default 128)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=count, default=25, help="passes over the training lines (default 25)")
    g.add_argument("--batch-size", type=count, default=128, help="lines per step (default 128)")
    g.add_argument("--lr", type=number, default=1e-3, help="Adam's learning rate (default 0.001)")
    g.add_argument("--clip-norm", type=number, default=5.0, help="the gradients' largest global norm (5)")
    g.add_argument("--seed", type=seed_number, default=0,
                   help="the data, the split, the weights, the order (default 0)")
    g.add_argument("--devices", type=count, default=1, metavar="N",
                   help="split every minibatch over N devices and average the gradients (data parallel; the "
                        "same results up to rounding); on a CPU, N CPU devices sharing the cores (default 1)")
    g = p.add_argument_group("output")
    g.add_argument("--checkpoint", type=Path, help="save after every epoch (.npz)")
    g.add_argument("--resume", action="store_true", help="continue the --checkpoint's run to --epochs")
    g.add_argument("--overwrite", action="store_true", help="replace an existing --checkpoint")
    g.add_argument("--json", type=Path, metavar="FILE", help="the config and test_acc, loss per epoch")
    g.add_argument("--attention-map", type=Path, metavar="FILE",
                   help=f"--model attention: a PNG of the attention weights of {MAP_EXAMPLES} held-out "
                        "examples (needs matplotlib)")
    g.add_argument("--quiet", action="store_true", help="no progress lines")
    add_compile_cache_options(p.add_argument_group("compilation"))
    return p


def check_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Every option checked before any data is made or anything compiled."""
    from fnet import _args
    from fnet.cli.options import check_compile_cache, check_figure_path
    from fnet.train import checks

    if a.data not in TASKS and not Path(a.data).is_file():
        p.error(f"--data must be addition, date or an existing file of QUESTION_ANSWER lines; "
                f"no file {a.data!r}")
    if a.attention_map is not None:
        if a.model != "attention":
            p.error(f"--attention-map draws the attention weights: it needs --model attention, not {a.model}")
        check_figure_path(p, "--attention-map", a.attention_map)
    try:
        checks.check_checkpoint_path(a.checkpoint, resume=a.resume, overwrite=a.overwrite, where="",
                                     spell=lambda k: f"--{k}")
        for option, path in (("--json", a.json), ("--attention-map", a.attention_map)):
            if path is not None:
                _args.writable_path("", option, path)
        check_compile_cache(a)
    except ValueError as e:
        p.error(str(e))


def saved_run(p: argparse.ArgumentParser, a: argparse.Namespace, config: dict) -> dict | None:
    """With ``--resume``: the checkpoint's config, which must be this run's (``--epochs`` aside)."""
    if not a.resume:
        return None
    from fnet import checkpoint as ckpt_lib

    try:
        saved = ckpt_lib.read_config(a.checkpoint)
    except ckpt_lib.CheckpointError as e:
        p.error(f"--checkpoint: {e}")
    if saved["config"].get("script") != SCRIPT:
        p.error(f"--checkpoint {a.checkpoint} was not written by seq2seq.py; give a seq2seq.py checkpoint")
    differ = {k: (saved["config"].get(k), config[k]) for k in (*RUN_KEYS, "vocab")
              if saved["config"].get(k) != config[k]}
    if differ:
        listed = ", ".join(f"--{k.replace('_', '-')} (saved {old!r}, now {new!r})" if k != "vocab"
                           else "the data's characters" for k, (old, new) in differ.items())
        p.error(f"--resume: the run differs from the checkpoint's in {listed}; give the saved values to "
                "continue, or start a new run with another --checkpoint")
    if saved["epoch"] >= a.epochs:
        p.error(f"--resume: the checkpoint has trained {saved['epoch']} epochs already; give --epochs above "
                f"{saved['epoch']} to train more")
    return saved


def load(p: argparse.ArgumentParser, a: argparse.Namespace):
    """The task as ids, questions reversed with ``--reverse``."""
    from fnet.data import DataError, load_task

    try:
        task = load_task(a.data, a.seed)
    except DataError as e:
        p.error(f"--data: {e}")
    if task.n_train < a.batch_size:
        p.error(f"--batch-size {a.batch_size} is larger than the {task.n_train} training lines of {a.data}")
    x = task.x[:, ::-1].copy() if a.reverse else task.x
    return task, x


def make_epoch(net, optimizer, batch_size: int, n_batches: int, mesh=None):
    """One epoch as one function: a new order from ``key``, then ``n_batches`` steps of teacher forcing
    (the decoder reads ``t[:, :-1]`` and predicts ``t[:, 1:]``) and an optimizer update each.

    With a ``mesh`` (``fnet.distributed.make_mesh``; everything replicated on its devices) each device
    takes its columns of every minibatch, and the losses and gradients are averaged over the devices
    before the update, which every device then makes alike."""
    import jax
    from jax import lax
    from jax.sharding import PartitionSpec as P

    from fnet import distributed, loss_and_grads, losses, shuffle

    grads_of = loss_and_grads(net, losses.softmax_cross_entropy)
    devices = 1 if mesh is None else mesh.size
    per_device = batch_size // devices

    def epoch(params, opt_state, x, t, key):
        order = shuffle.permutation(key, x.shape[0])[: n_batches * batch_size].reshape(n_batches, batch_size)
        if mesh is not None:  # this device's columns of every minibatch
            order = lax.dynamic_slice_in_dim(order, lax.axis_index(distributed.AXES) * per_device,
                                             per_device, axis=1)

        def step(carry, rows):
            params, opt_state = carry
            tb = t[rows]
            loss, grads = grads_of(params, (x[rows], tb[:, :-1]), tb[:, 1:])
            if mesh is not None:
                loss, grads = lax.pmean((loss, grads), distributed.AXES)
            return optimizer.update(grads, opt_state, params), loss

        (params, opt_state), step_losses = lax.scan(step, (params, opt_state), order)
        return params, opt_state, step_losses

    if mesh is None:
        return epoch
    return jax.shard_map(epoch, mesh=mesh, in_specs=(P(),) * 5, out_specs=P())


def make_answer(net, start_id: int, length: int):
    """Greedy decoding of ``length`` characters after ``start_id``: ``(ids, attention or None)``."""
    from fnet.models.encoder_decoder import generate

    def answer(params, x):
        return generate(net, params, x, start_id, length)

    return answer


def main(argv: list[str] | None = None) -> int:
    p = parser()
    a = p.parse_args(argv)
    check_args(p, a)
    t0 = time.perf_counter()
    task, x = load(p, a)
    config = {"script": SCRIPT, "vocab": task.vocab, **{k: getattr(a, k) for k in RUN_KEYS}}
    saved = saved_run(p, a, config)

    import jax

    from fnet import distributed
    from fnet.cli.options import devices_mesh, use_compile_cache

    if a.devices > 1:  # on a CPU, a.devices CPU devices
        distributed.ask_for_cpu_devices(a.devices)
    use_compile_cache(a)  # before the weights' initialisation compiles its first program
    import jax.numpy as jnp
    import numpy as np

    from fnet import checkpoint as ckpt_lib
    from fnet import models, optim
    from fnet.core import param_shapes

    net = (models.attention_seq2seq(len(task.vocab), a.wordvec, a.hidden) if a.model == "attention"
           else models.seq2seq(len(task.vocab), a.wordvec, a.hidden, peeky=a.model == "peeky"))
    optimizer = optim.clip_by_global_norm(optim.adam(a.lr), a.clip_norm)
    shapes = ((a.batch_size, x.shape[1]), (a.batch_size, task.t.shape[1] - 1))
    key = jax.random.key(a.seed)
    params, _ = net.init(jax.random.fold_in(key, 0), shapes)
    opt_state, done = optimizer.init(params), 0
    history = {"epoch": [], "loss": [], "test_acc": [], "seconds": []}
    if saved is not None:
        like = param_shapes(net, shapes)[0]
        try:
            ck = ckpt_lib.load(a.checkpoint, params_like=like,
                               opt_state_like=jax.eval_shape(optimizer.init, like))
        except ckpt_lib.CheckpointError as e:
            p.error(f"--checkpoint: {e}")
        params, opt_state, done = ck.params, ck.opt_state, ck.epoch
        history = {k: np.asarray(v).tolist() for k, v in ck.history.items()}
    log = (lambda line: None) if a.quiet else print

    n_train = task.n_train
    n_batches = n_train // a.batch_size
    train_x, train_t = jax.device_put(x[:n_train]), jax.device_put(task.t[:n_train])
    mesh, one = None, jax.devices()[0]  # the held-out questions are answered on one device
    if a.devices > 1:
        mesh = devices_mesh(p, a.devices, a.batch_size)
        params, opt_state, train_x, train_t = distributed.replicate(mesh, (params, opt_state, train_x,
                                                                           train_t))
    test_x, test_t = jax.device_put(x[n_train:]), task.t[n_train:, 1:]
    n_params = sum(int(np.size(w)) for w in jax.tree.leaves(params))
    log(f"data {a.data}: {len(task.x):,} lines, {n_train:,} train, {len(test_t):,} held out; vocabulary "
        f"{len(task.vocab)}; questions of {x.shape[1]} characters{' (reversed)' if a.reverse else ''}, "
        f"answers of {test_t.shape[1]}")
    log(f"{net.name}: {n_params:,} parameters; wordvec {a.wordvec}, hidden {a.hidden}; {n_batches} steps of "
        f"{a.batch_size} per epoch; {optimizer!r}"
        + (f"; data parallel on {mesh.size} x {one.device_kind}" if mesh is not None else ""))
    t1 = time.perf_counter()
    epoch = jax.jit(make_epoch(net, optimizer, a.batch_size, n_batches, mesh)).lower(
        params, opt_state, train_x, train_t, key).compile()
    answer = jax.jit(make_answer(net, task.start_id, test_t.shape[1]))
    correct = jax.jit(lambda params, x, t: jnp.sum(jnp.all(answer(params, x)[0] == t, axis=1)))
    correct = correct.lower(jax.device_put(params, one), test_x, test_t).compile()
    compile_s = time.perf_counter() - t1
    log(f"compiled in {compile_s:.1f}s")

    for e in range(done + 1, a.epochs + 1):
        t2 = time.perf_counter()
        new_params, new_opt_state, step_losses = epoch(params, opt_state, train_x, train_t,
                                                       jax.random.fold_in(key, e))
        step_losses = np.asarray(step_losses)
        seconds = time.perf_counter() - t2
        if not np.isfinite(step_losses).all():
            kept = f"; {a.checkpoint} holds epoch {e - 1}" if a.checkpoint is not None and e > 1 else ""
            sys.exit(f"seq2seq.py: the training loss became {step_losses[~np.isfinite(step_losses)][0]} in "
                     f"epoch {e}; training stopped{kept}. Try a smaller --lr or --clip-norm")
        params, opt_state = new_params, new_opt_state
        right = int(correct(jax.device_put(params, one), test_x, test_t))
        for k, v in (("epoch", e), ("loss", float(step_losses.mean())), ("test_acc", right / len(test_t)),
                     ("seconds", seconds)):
            history[k].append(v)
        if a.checkpoint is not None:  # saved before the line that reports it
            ckpt_lib.save(a.checkpoint, ckpt_lib.Checkpoint(params, opt_state, {}, key, e,
                                                            {k: np.asarray(v) for k, v in history.items()},
                                                            config))
        log(f"epoch {e}/{a.epochs}  loss {step_losses.mean():.4f}  test acc {100 * right / len(test_t):.2f}% "
            f"({right}/{len(test_t)})  {seconds:.1f}s")

    ids, weights = answer(jax.device_put(params, one), test_x[:MAP_EXAMPLES])
    examples = []
    for i in range(min(3, len(test_t))):
        question = "".join(task.vocab[j] for j in task.x[n_train + i])
        guess = "".join(task.vocab[j] for j in np.asarray(ids[i]))
        truth = "".join(task.vocab[j] for j in test_t[i])
        examples.append({"question": question, "answer": truth, "decoded": guess})
        log(f"Q {question}  T {truth}  {'OK' if guess == truth else 'X '} {guess}")
    if a.attention_map is not None:
        try:
            draw_attention(a.attention_map, task, np.asarray(task.x[n_train:n_train + MAP_EXAMPLES]),
                           np.asarray(ids), np.asarray(weights), a.reverse)
        except OSError as err:
            print(f"seq2seq.py: cannot write --attention-map {a.attention_map}: {err.strerror or err}",
                  file=sys.stderr)
            return 1
        log(f"attention map: {a.attention_map}")
    if a.json is not None:
        report = {"config": {k: v for k, v in config.items() if k != "vocab"} | {
                      "epochs": a.epochs, "vocab_size": len(task.vocab), "net": net.name,
                      "devices": a.devices},
                  "test_acc": history["test_acc"], "loss": history["loss"], "history": history,
                  "examples": examples, "compile_seconds": compile_s, "seconds": time.perf_counter() - t0,
                  "jax": jax.__version__, "device": str(jax.devices()[0].device_kind),
                  "python": platform.python_version(), "machine": platform.machine()}
        try:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(report, indent=2))
        except OSError as err:
            print(f"seq2seq.py: cannot write --json {a.json}: {err.strerror or err}", file=sys.stderr)
            return 1
    return 0


def draw_attention(path: Path, task, questions, ids, weights, reverse: bool) -> None:
    """The book's Figure 8-26: per example, the weights of each output character (down) over the
    question's characters (across, in reading order even when fed reversed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(questions)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.2), squeeze=False)
    for ax, q, out, w in zip(axes[0], questions, ids, weights, strict=True):
        w = w[:, ::-1] if reverse else w  # columns in the order the question reads
        ax.imshow(w, cmap="gray", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(q)), [task.vocab[j] for j in q], fontsize=7)
        ax.set_yticks(range(len(out)), [task.vocab[j] for j in out], fontsize=8)
        ax.set_xlabel("question")
        ax.set_ylabel("answer, decoded")
    fig.suptitle("attention weights (white: 1)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
