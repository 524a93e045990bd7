#!/usr/bin/env python
"""A character-level language model on any UTF-8 text: a GPT, an LSTM or a GRU.

    python scripts/char_lm.py --text FILE [--model gpt] [--layers 4] [--heads 4] [--dim 128] ...

Every model trains the same way, nanoGPT's: each step ``--batch-size`` windows of ``--context``
characters at random offsets of the training text, every next character predicted; AdamW
(betas 0.9 and 0.99) with ``--weight-decay`` on the weight matrices, a linear warmup over
``--warmup`` steps and a cosine decay to ``--lr`` / 10 at ``--iters``; gradients clipped to a
global norm of ``--clip-norm``. The last tenth of the text is held out: every ``--eval-every``
steps, and at the end, ``val_loss`` is the mean cross-entropy in nats per character over the
held-out text read in consecutive windows of ``--context`` characters, every position
predicted, beside the unigram baseline's (the characters' frequencies alone). ``--sample N``
prints N characters generated after ``--prompt``, feeding the model its last ``--context``
characters at each step; with ``--no-train`` from a ``--checkpoint``'s model. Compiled programs
are kept in ``--compile-cache`` (as ``fnet-train`` keeps them), so that a rerun skips compiling.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

MODELS = ("gpt", "lstm", "gru")
MODEL_KEYS = ("model", "layers", "heads", "dim", "context", "dropout")
"""What the network is: a checkpoint's, on --resume and --no-train."""
RUN_KEYS = ("val_fraction", "batch_size", "iters", "lr", "warmup", "weight_decay", "clip_norm", "seed")
"""What the training computes: a resumed run must have the checkpoint's."""
SCRIPT = "char_lm"


def parser() -> argparse.ArgumentParser:
    from fnet.cli.options import (
        add_compile_cache_options,
        divergence_factor,
        fraction,
        non_negative_float,
        positive_float,
        positive_int,
        probability,
        seed_number,
    )

    count, number = positive_int, positive_float
    p = argparse.ArgumentParser(prog="char_lm.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--text", type=Path, help="a UTF-8 text file (required unless --no-train)")
    g.add_argument("--val-fraction", type=fraction, default=0.1, help="the held-out tail (default 0.1)")
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=MODELS, default="gpt",
                   help="gpt (fnet.models.gpt, weights tied), lstm or gru (fnet.models.rnnlm); default gpt")
    g.add_argument("--layers", type=count, help="transformer blocks or recurrent layers (gpt: 4, else 1)")
    g.add_argument("--heads", type=count, help="gpt: attention heads (default 4)")
    g.add_argument("--dim", type=count, default=128, help="the model width: embedding and hidden size (128)")
    g.add_argument("--context", type=count, default=64, help="characters a window holds (default 64)")
    g.add_argument("--dropout", type=probability, default=0.0, help="dropout probability (default 0)")
    g = p.add_argument_group("training")
    g.add_argument("--batch-size", type=count, default=12, help="windows per step (default 12)")
    g.add_argument("--iters", type=count, default=2000, help="steps (default 2000)")
    g.add_argument("--lr", type=number, default=1e-3, help="the peak learning rate (default 1e-3)")
    g.add_argument("--warmup", type=int, default=100, help="linear warmup steps (default 100)")
    g.add_argument("--weight-decay", type=non_negative_float, default=0.1, help="AdamW's decay of the weight "
                                                                          "matrices (default 0.1)")
    g.add_argument("--clip-norm", type=number, default=1.0, help="the gradients' largest global norm (1)")
    g.add_argument("--seed", type=seed_number, default=0)
    g.add_argument("--eval-every", type=count, default=500, help="steps between held-out evaluations (500)")
    g.add_argument("--devices", type=count, default=1, metavar="N",
                   help="split every step's windows over N devices and average the gradients (data "
                        "parallel; the same steps up to rounding); on a CPU, N CPU devices sharing the "
                        "cores (default 1)")
    g.add_argument("--divergence", type=divergence_factor, default=10.0, metavar="FACTOR",
                   help="stop (exit status 1) when the mean loss of the steps between two evaluations "
                        "exceeds FACTOR (default %(default)s) times the starting loss; off: never")
    g = p.add_argument_group("output")
    g.add_argument("--checkpoint", type=Path, help="save at every evaluation and at the end (.npz)")
    g.add_argument("--resume", action="store_true", help="continue the --checkpoint's run")
    g.add_argument("--overwrite", action="store_true", help="replace an existing --checkpoint")
    g.add_argument("--no-train", action="store_true", help="only --sample from the --checkpoint's model")
    g.add_argument("--sample", type=int, default=0, metavar="N", help="generate N characters at the end")
    g.add_argument("--prompt", default="\n", help="the text the sample continues (default a newline)")
    g.add_argument("--temperature", type=number, default=1.0, help="< 1 sharper, > 1 more random (1)")
    g.add_argument("--top-k", type=count, help="draw only among the K likeliest characters")
    g.add_argument("--json", type=Path, metavar="PATH", help="the effective config, the figures, the sample")
    g.add_argument("--quiet", action="store_true", help="no progress lines")
    add_compile_cache_options(p.add_argument_group("compilation"))
    return p


def check_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Every option checked before any text is read or anything compiled."""
    from fnet import _args
    from fnet.cli.options import check_compile_cache
    from fnet.train import checks

    a.layers = a.layers or (4 if a.model == "gpt" else 1)
    if a.model == "gpt":
        a.heads = a.heads or 4
        if a.dim % a.heads:
            p.error(f"--dim {a.dim} must be divisible by --heads {a.heads} (each head works in dim / heads)")
    elif a.heads is not None:
        p.error(f"--heads applies to --model gpt, not {a.model}")
    if a.sample < 0:
        p.error(f"--sample must be >= 0, got {a.sample}")
    if a.sample and not a.prompt:
        p.error("--prompt must hold at least one character for --sample (the model continues it)")
    if a.no_train:
        if a.checkpoint is None or not a.checkpoint.is_file() or not a.sample:
            p.error("--no-train samples from a trained model: give --checkpoint PATH of an existing file "
                    "and --sample N")
    elif a.text is None:
        p.error("--text FILE is required (the text to learn)")
    if not 0 <= a.warmup < a.iters:
        default = " (the default)" if a.warmup == p.get_default("warmup") else ""
        p.error(f"--warmup must be in [0, --iters) = [0, {a.iters}), got {a.warmup}{default}; give a "
                f"short run a shorter --warmup")
    try:
        if not a.no_train:
            checks.check_checkpoint_path(a.checkpoint, resume=a.resume, overwrite=a.overwrite, where="",
                                         spell=lambda k: f"--{k}")
        if a.json is not None:
            _args.writable_path("", "--json", a.json)
        check_compile_cache(a)
    except ValueError as e:
        p.error(str(e))


def read_text(p: argparse.ArgumentParser, path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        p.error(f"--text {path}: {e.strerror or e}")
    except UnicodeDecodeError as e:
        p.error(f"--text {path} is not UTF-8 text (byte {e.start}: {e.reason})")


def saved_run(p: argparse.ArgumentParser, a: argparse.Namespace) -> dict | None:
    """With ``--resume`` or ``--no-train``: the checkpoint's config, the network's options taken from it."""
    if not (a.resume or a.no_train):
        return None
    from fnet import checkpoint as ckpt_lib

    try:
        saved = ckpt_lib.read_config(a.checkpoint)["config"]
    except ckpt_lib.CheckpointError as e:
        p.error(f"--checkpoint: {e}")
    if saved.get("script") != SCRIPT:
        p.error(f"--checkpoint {a.checkpoint} was not written by char_lm.py (a fnet-train checkpoint, or "
                "another program's); give a char_lm.py checkpoint")
    for k in MODEL_KEYS:
        setattr(a, k, saved[k])
    if a.resume:
        differ = {k: (saved.get(k), getattr(a, k)) for k in RUN_KEYS if saved.get(k) != getattr(a, k)}
        if differ:
            listed = ", ".join(f"--{k.replace('_', '-')} (saved {old!r}, now {new!r})"
                               for k, (old, new) in differ.items())
            p.error(f"--resume: the run differs from the checkpoint's in {listed}; the learning-rate "
                    "schedule and the data depend on them: give the saved values to continue, or start a new "
                    "run with another --checkpoint")
    return saved


def build(a: argparse.Namespace, vocab_size: int):
    """The network and the optimizer the options describe."""
    from fnet import models, optim, schedules

    if a.model == "gpt":
        net = models.gpt(vocab_size, a.context, layers=a.layers, heads=a.heads, dim=a.dim, dropout=a.dropout)
    else:
        net = models.rnnlm(vocab_size, a.dim, a.dim, layers=a.layers, dropout=a.dropout, stateful=False,
                           cell=a.model)
    lr = schedules.cosine(a.lr, a.iters, final_lr=a.lr / 10, warmup_steps=a.warmup)
    optimizer = optim.adamw(lr, beta1=0.9, beta2=0.99, weight_decay=a.weight_decay) if a.weight_decay \
        else optim.adam(lr, beta1=0.9, beta2=0.99)
    return net, optim.clip_by_global_norm(optimizer, a.clip_norm)


def main(argv: list[str] | None = None) -> int:
    p = parser()
    a = p.parse_args(argv)
    check_args(p, a)
    saved = saved_run(p, a)
    t0 = time.perf_counter()
    import jax

    from fnet import distributed
    from fnet.cli.options import devices_mesh, use_compile_cache

    if a.devices > 1:  # on a CPU, a.devices CPU devices
        distributed.ask_for_cpu_devices(a.devices)
    use_compile_cache(a)  # before the weights' initialisation compiles its first program
    import numpy as np

    from fnet import checkpoint as ckpt_lib
    from fnet import language_model as lm
    from fnet.core import param_shapes

    vocab = saved["vocab"] if saved else None
    data = None if a.no_train else split_text(p, a, read_text(p, a.text), vocab)
    vocab = vocab or data["vocab"]
    if a.sample:
        try:  # before any training: a prompt the model cannot read fails now, not after the run
            lm.encode(a.prompt, vocab)
        except ValueError as e:
            p.error(f"--prompt: {e}")
        if a.top_k is not None and a.top_k > len(vocab):  # likewise for --top-k
            p.error(f"--top-k {a.top_k}: the vocabulary has {len(vocab)} characters; use at most "
                    f"{len(vocab)}")
    net, optimizer = build(a, len(vocab))
    config = {"script": SCRIPT, "vocab": vocab, **{k: getattr(a, k) for k in MODEL_KEYS + RUN_KEYS},
              "text": None if a.text is None else str(a.text)}
    key = jax.random.key(a.seed)
    params, _ = net.init(jax.random.fold_in(key, 0), (a.batch_size, a.context))
    opt_state, done, history = optimizer.init(params), 0, {"iter": [], "loss": [], "val_loss": []}
    if saved is not None:
        like = param_shapes(net, (a.batch_size, a.context))[0]
        try:
            ck = ckpt_lib.load(a.checkpoint, params_like=like,
                               opt_state_like=None if a.no_train else jax.eval_shape(optimizer.init, like))
        except ckpt_lib.CheckpointError as e:
            p.error(f"--checkpoint: {e}")
        params, done = ck.params, ck.epoch
        opt_state = ck.opt_state if a.resume else opt_state
        history = {k: np.asarray(v).tolist() for k, v in ck.history.items()} or history
    log = (lambda line: None) if a.quiet else print
    report = {"config": config | {"vocab_size": len(vocab), "devices": a.devices}}
    mesh = None
    if a.devices > 1 and data is not None:
        mesh = devices_mesh(p, a.devices, a.batch_size)
    if data is not None:
        report |= train(a, net, optimizer, (params, opt_state), data, key, done, history, config, log, mesh)
        params = report.pop("params")
    if a.sample:
        text = lm.sample(net, params, vocab, a.prompt, a.sample, context=a.context, top_k=a.top_k,
                         key=jax.random.fold_in(key, 2**31 - 1), temperature=a.temperature)
        log(f"--- sample ({a.sample} characters, temperature {a.temperature:g}"
            f"{f', top-k {a.top_k}' if a.top_k else ''}, seed {a.seed}) ---")
        print(a.prompt + text)
        report["sample"] = text
    if a.json is not None:
        report["seconds"] = time.perf_counter() - t0
        report |= {"jax": jax.__version__, "device": str(jax.devices()[0].device_kind),
                   "python": platform.python_version(), "machine": platform.machine()}
        try:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps({k: v for k, v in report.items() if k != "config"} | {
                "config": {k: v for k, v in report["config"].items() if k != "vocab"}}, indent=2))
        except OSError as e:
            print(f"char_lm.py: cannot write --json {a.json}: {e.strerror or e}", file=sys.stderr)
            return 1
    return 0


def split_text(p: argparse.ArgumentParser, a: argparse.Namespace, text: str, vocab: str | None) -> dict:
    """The text as ids, split into the training text and the held-out windows; the unigram baseline."""
    from fnet import language_model as lm

    vocab = vocab or lm.vocabulary(text)
    try:
        ids = lm.encode(text, vocab)
    except ValueError as e:
        p.error(f"--text {a.text}: {e}")
    cut = int(len(ids) * (1 - a.val_fraction))
    if cut < a.context + 1:
        p.error(f"--text {a.text}: its training part ({cut} characters) is shorter than a window of "
                f"--context {a.context} plus the next character; use a longer text or a smaller --context")
    try:
        val_x, val_t = lm.consecutive_windows(ids[cut:], a.context)
    except ValueError as e:
        p.error(f"--text {a.text}: the held-out tail ({len(ids) - cut} characters, --val-fraction "
                f"{a.val_fraction}) holds no window: {e}")
    return {"vocab": vocab, "train": ids[:cut], "val": (val_x, val_t), "n": len(ids),
            "unigram_loss": lm.unigram_loss(ids[:cut], ids[cut:], len(vocab))}


def train(a, net, optimizer, carry, data, key, done: int, history: dict, config: dict, log,
          mesh=None) -> dict:
    """Steps ``done`` to ``a.iters``, in compiled chunks of up to ``--eval-every`` steps, with a progress
    line and the held-out loss after each; the checkpoint after each. The figures for ``--json``. With a
    ``mesh`` the steps run data parallel on its devices; the held-out loss on the first device."""
    import jax
    import numpy as np

    from fnet import checkpoint as ckpt_lib
    from fnet import distributed, losses
    from fnet import language_model as lm
    from fnet.train import stopping

    n_params = sum(int(np.size(w)) for w in jax.tree.leaves(carry[0]))
    held = data["n"] - len(data["train"])
    log(f"text {a.text}: {data['n']:,} characters, vocabulary {len(data['vocab'])}; train "
        f"{len(data['train']):,}, held out {held:,} ({len(data['val'][0]):,} windows of {a.context}); "
        f"unigram baseline {data['unigram_loss']:.4f} nats/char")
    log(f"{a.model}: {n_params:,} parameters; {a.iters} steps of {a.batch_size} x {a.context}; {optimizer!r}"
        + (f"; data parallel on {mesh.size} x {jax.devices()[0].device_kind}" if mesh is not None else ""))
    ids = jax.device_put(data["train"])
    val = tuple(jax.device_put(v) for v in data["val"])
    one = jax.devices()[0]  # the held-out loss's device
    if mesh is not None:
        carry, ids = distributed.replicate(mesh, (carry, ids))
    t_compile = time.perf_counter()  # ahead of time, so that the steps' times are the steps'
    steps = jax.jit(lm.make_window_steps(net, losses.softmax_cross_entropy, optimizer,
                                         batch_size=a.batch_size, context=a.context,
                                         n_steps=min(a.eval_every, a.iters), mesh=mesh)
                    ).lower(*carry, ids, key, np.int32(0), np.int32(0)).compile()
    val_loss = jax.jit(lm.make_window_loss(net)).lower(jax.device_put(carry[0], one), *val).compile()
    compile_s = time.perf_counter() - t_compile
    log(f"compiled in {compile_s:.1f}s")
    t_train, trained, reference = 0.0, 0, None
    while done < a.iters:
        count = min(a.eval_every, a.iters - done)
        t1 = time.perf_counter()
        params, opt_state, chunk = steps(*carry, ids, key, np.int32(done), np.int32(count))
        chunk = np.asarray(chunk)[:count]
        seconds = time.perf_counter() - t1
        if not np.isfinite(chunk).all():
            bad = done + int(np.argmax(~np.isfinite(chunk))) + 1
            sys.exit(f"char_lm.py: the training loss became {chunk[~np.isfinite(chunk)][0]} at step {bad}; "
                     f"training stopped{_kept(a, done)}. Try a smaller --lr, or a smaller --clip-norm")
        reference = float(chunk[0]) if reference is None else reference
        start = history["loss"][0] if history["loss"] else reference
        why = stopping.diverged(chunk, start, params, a.divergence)
        if why is not None:
            sys.exit(f"char_lm.py: steps {done + 1}-{done + count}: training diverged: {why}. Training "
                     f"stopped{_kept(a, done)}. Try a smaller --lr")
        carry, done = (params, opt_state), done + count
        t_train, trained = t_train + seconds, trained + count
        loss_val = float(val_loss(jax.device_put(params, one), *val))
        for k, v in (("iter", done), ("loss", float(chunk.mean())), ("val_loss", loss_val)):
            history[k].append(v)
        if a.checkpoint is not None:  # saved before the line that reports it
            ckpt_lib.save(a.checkpoint, ckpt_lib.Checkpoint(params, opt_state, {}, key, done,
                                                            {k: np.asarray(v) for k, v in history.items()},
                                                            config))
        eta = (a.iters - done) * t_train / trained
        log(f"step {done}/{a.iters}  loss {chunk.mean():.4f}  val loss {loss_val:.4f} "
            f"(perplexity {_exp(loss_val):.2f}; unigram {data['unigram_loss']:.4f})  "
            f"{1000 * seconds / count:.1f} ms/step  {count * a.batch_size * a.context / seconds:,.0f} "
            f"tokens/s  ETA {eta:.0f}s")
    params = jax.device_put(carry[0], one)
    final = history["val_loss"][-1] if history["val_loss"] else float(val_loss(params, *val))
    return {"params": params, "compile_seconds": compile_s,
            "ms_per_iter": 1000 * t_train / trained if trained else None,
            "tokens_per_s": trained * a.batch_size * a.context / t_train if trained else None,
            "val_loss": final, "val_perplexity": _exp(final), "unigram_loss": data["unigram_loss"],
            "unigram_perplexity": _exp(data["unigram_loss"]), "history": history, "train_seconds": t_train}


def _kept(a, done: int) -> str:
    return f"; {a.checkpoint} holds step {done}" if a.checkpoint is not None and done else ""


def _exp(x: float) -> float:
    """``exp(x)``, infinite rather than an ``OverflowError`` for a loss that is (nearly) infinite."""
    return math.exp(x) if x < 700 else math.inf


if __name__ == "__main__":
    sys.exit(main())
