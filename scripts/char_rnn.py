#!/usr/bin/env python
"""A character-level language model on any UTF-8 text, trained with truncated BPTT.

    python scripts/char_rnn.py --text FILE [--hidden 256] [--layers 1] [--window 64] ...

The network is ``fnet.models.rnnlm``: embedding -> LSTM(s) -> time_distributed(affine),
trained by ``fnet.language_model`` (windows of the text, the LSTM state carried from
window to window, gradients clipped by their global norm). The last ``--val-fraction``
of the text is held out: every epoch prints the train and validation perplexity beside
the unigram baseline's (character frequencies alone). ``--sample N`` prints N characters
generated after ``--prompt``; with ``--no-train`` it samples from a ``--checkpoint``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="char_rnn.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", type=Path, help="a UTF-8 text file (required unless --no-train)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out tail of the text (default 0.1)")
    p.add_argument("--embedding", type=int, default=64, help="embedding size (default 64)")
    p.add_argument("--hidden", type=int, default=256, help="LSTM hidden size (default 256)")
    p.add_argument("--layers", type=int, default=1, help="stacked LSTMs (default 1)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout after each LSTM (default 0)")
    p.add_argument("--window", type=int, default=64, help="BPTT window: steps per update (default 64)")
    p.add_argument("--batch-size", type=int, default=32, help="parallel streams of the text (default 32)")
    p.add_argument("--epochs", type=int, default=10, help="passes over the training text (default 10)")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam's learning rate, cosine to 0 (default 2e-3)")
    p.add_argument("--clip-norm", type=float, default=5.0,
                   help="clip the gradients' global norm to this (the book's clip_grads; default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", type=Path, help="save after every epoch (.npz)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--no-train", action="store_true", help="only --sample from the --checkpoint's model")
    p.add_argument("--sample", type=int, default=0, metavar="N", help="generate N characters at the end")
    p.add_argument("--prompt", default="\n", help="text the sample continues (default a newline)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="sampling temperature: < 1 sharper, > 1 more random (default 1)")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the config, per-epoch metrics and sample")
    a = p.parse_args(argv)
    for name in ("embedding", "hidden", "layers", "window", "batch_size", "epochs"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(a, name)}")
    if a.sample < 0 or not 0 < a.val_fraction < 1 or not 0 <= a.dropout < 1:
        p.error("--sample must be >= 0, --val-fraction in (0, 1), --dropout in [0, 1)")
    if not (a.lr > 0 and a.clip_norm > 0 and a.temperature > 0):
        p.error("--lr, --clip-norm and --temperature must be positive")
    if a.no_train and (a.checkpoint is None or not a.checkpoint.is_file() or a.sample < 1):
        p.error("--no-train samples from a trained model: give --checkpoint PATH of an existing file and "
                "--sample N")
    if not a.no_train and a.text is None:
        p.error("--text FILE is required (the text to learn)")
    if a.resume and (a.checkpoint is None or not a.checkpoint.is_file()):
        p.error("--resume needs --checkpoint PATH of an existing checkpoint")
    if a.checkpoint is not None and a.checkpoint.exists() and not (a.resume or a.no_train):
        p.error(f"--checkpoint {a.checkpoint} exists: add --resume to continue it, or choose another path")
    return a


MODEL_KEYS = ("embedding", "hidden", "layers", "dropout")
RUN_KEYS = ("val_fraction", "window", "batch_size", "lr", "clip_norm", "seed", "epochs")


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        sys.exit(f"char_rnn.py: --text {path}: {e.strerror or e}")
    except UnicodeDecodeError as e:
        sys.exit(f"char_rnn.py: --text {path} is not UTF-8 text (byte {e.start}: {e.reason})")


def main(argv=None) -> int:
    a = parse(argv)
    import jax
    import numpy as np

    from fnet import checkpoint as ckpt_lib
    from fnet import language_model as lm
    from fnet import models, optim, schedules
    from fnet.core import param_shapes

    t0 = time.perf_counter()
    saved = ckpt_lib.read_config(a.checkpoint)["config"] if (a.resume or a.no_train) else None
    if saved is not None:
        for k in MODEL_KEYS:  # the network is the checkpoint's
            setattr(a, k, saved[k])
    vocab = saved["vocab"] if saved is not None else None
    if not a.no_train:
        text = read_text(a.text)
        vocab = vocab or lm.vocabulary(text)
        try:
            ids = lm.encode(text, vocab)
        except ValueError as e:
            sys.exit(f"char_rnn.py: --text {a.text}: {e}")
        cut = int(len(ids) * (1 - a.val_fraction))
        try:
            train_x, train_t = lm.windows(ids[:cut], a.batch_size, a.window)
            val_x, val_t = lm.windows(ids[cut:], min(a.batch_size, max(1, (len(ids) - cut - 1) // a.window)),
                                      a.window)
        except ValueError as e:
            sys.exit(f"char_rnn.py: --text {a.text}: {e}")
        baseline = lm.unigram_perplexity(ids[:cut], ids[cut:], len(vocab))
    if a.sample:
        try:  # before any training: a prompt the model cannot read fails now, not after the run
            lm.encode(a.prompt, vocab)
        except ValueError as e:
            sys.exit(f"char_rnn.py: --prompt: {e}")
    net = models.rnnlm(len(vocab), a.embedding, a.hidden, layers=a.layers, dropout=a.dropout)
    config = {"vocab": vocab, **{k: getattr(a, k) for k in MODEL_KEYS + RUN_KEYS},
              "text": None if a.text is None else str(a.text)}
    key = jax.random.key(a.seed)
    params, _ = net.init(jax.random.fold_in(key, 0), (a.batch_size, a.window))
    if not a.no_train:
        steps = a.epochs * train_x.shape[0]
        optimizer = optim.clip_by_global_norm(optim.adam(schedules.cosine(a.lr, steps)), a.clip_norm)
    else:
        optimizer = optim.clip_by_global_norm(optim.adam(a.lr), a.clip_norm)
    opt_state = optimizer.init(params)
    history: dict[str, list] = {"train_perplexity": [], "val_perplexity": [], "seconds": []}
    start = 0
    if saved is not None:
        like = param_shapes(net, (a.batch_size, a.window))[0]
        ck = ckpt_lib.load(a.checkpoint, params_like=like,
                           opt_state_like=None if a.no_train else jax.eval_shape(optimizer.init, like))
        if a.resume:
            changed = {k: (saved[k], config[k]) for k in RUN_KEYS
                       if k != "epochs" and saved.get(k) != config[k]}
            if changed:
                sys.exit(f"char_rnn.py: --resume with other options than the checkpoint's: {changed}")
        params, opt_state, start = ck.params, ck.opt_state if a.resume else opt_state, ck.epoch
        history = {k: list(v) for k, v in ck.history.items()} or history
    log = print
    if not a.no_train:
        log(f"text {a.text}: {len(ids):,} characters, vocabulary {len(vocab)}; train {cut:,}, validation "
            f"{len(ids) - cut:,}; unigram baseline perplexity {baseline:.2f}")
        n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
        log(f"rnnlm: embedding {a.embedding}, {a.layers} x LSTM {a.hidden}, {n_params:,} parameters; "
            f"{train_x.shape[0]} windows of {a.batch_size} x {a.window} per epoch")
        epoch_fn = jax.jit(lm.make_bptt_epoch(net, optimizer))
        evaluate = jax.jit(lm.make_bptt_loss(net))
        for e in range(start, a.epochs):
            t = time.perf_counter()
            params, opt_state, train_loss = epoch_fn(params, opt_state, jax.random.fold_in(key, e + 1),
                                                     train_x, train_t)
            val_loss = float(evaluate(params, val_x, val_t))
            secs = time.perf_counter() - t
            train_ppl, val_ppl = math.exp(float(train_loss)), math.exp(val_loss)
            for k, v in zip(history, (train_ppl, val_ppl, secs), strict=True):
                history[k].append(v)
            tokens = train_x.size / secs
            log(f"epoch {e + 1}/{a.epochs}  train perplexity {train_ppl:.3f}  validation {val_ppl:.3f}  "
                f"(unigram {baseline:.2f})  {secs:.1f}s  {tokens:,.0f} chars/s")
            if not math.isfinite(val_ppl):
                sys.exit("char_rnn.py: the loss is not finite; try a lower --lr or --clip-norm")
            if a.checkpoint is not None:
                ckpt_lib.save(a.checkpoint, ckpt_lib.Checkpoint(params, opt_state, {}, key, e + 1, history,
                                                                config))
    text_out = None
    if a.sample:
        try:
            text_out = lm.sample(net, params, vocab, a.prompt, a.sample,
                                 key=jax.random.fold_in(key, 2**31 - 1), temperature=a.temperature)
        except ValueError as e:
            sys.exit(f"char_rnn.py: --prompt: {e}")
        log(f"--- sample ({a.sample} characters, temperature {a.temperature:g}, seed {a.seed}) ---")
        log(a.prompt + text_out)
    if a.json is not None:
        out = {"config": {k: v for k, v in config.items() if k != "vocab"}, "vocab_size": len(vocab),
               "history": history, "sample": text_out, "seconds": time.perf_counter() - t0}
        if not a.no_train:
            out["unigram_perplexity"] = baseline
        a.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
