"""A character-level language model's parts: vocabulary, BPTT windows, training, perplexity, sampling.

``scripts/char_rnn.py`` puts them together (the book's sequel, chapters 5-7:
``SimpleRnnlm``, ``Rnnlm``, ``BetterRnnlm`` and the text generation of chapter 7).

**Truncated BPTT** (the sequel's ``fit`` of ``RnnlmTrainer``): the text, as ids,
is cut into ``batch`` contiguous streams, one per row; each step trains on the
next ``window`` characters of every stream, predicting each next character.
The network's stateful recurrent layers carry their state from one window to
the next (so the model sees the text as one long sequence), while the gradient
stops at each window's edge. The state is reset (``init_state``: zeros) at the
start of each pass over the text.

**Perplexity** is ``exp`` of the mean cross-entropy per character: a model that
spreads its guess evenly over ``k`` characters has perplexity ``k``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from fnet import losses
from fnet.core import Layer, apply
from fnet.net import loss_and_grads

__all__ = ["decode", "encode", "make_bptt_epoch", "make_bptt_loss", "sample", "unigram_perplexity",
           "vocabulary", "windows"]


def vocabulary(text: str) -> str:
    """The distinct characters of ``text``, sorted: character ``vocab[i]`` has id ``i``."""
    return "".join(sorted(set(text)))


def encode(text: str, vocab: str) -> np.ndarray:
    """``text`` as int32 ids; ``ValueError`` naming the characters ``vocab`` does not have."""
    index = {c: i for i, c in enumerate(vocab)}
    missing = sorted(set(text) - set(index))
    if missing:
        raise ValueError(f"characters not in the model's vocabulary ({len(vocab)} characters): "
                         f"{''.join(missing[:20])!r}")
    return np.fromiter((index[c] for c in text), np.int32, len(text))


def decode(ids, vocab: str) -> str:
    """The characters of ``ids``."""
    return "".join(vocab[i] for i in np.asarray(ids).ravel())


def windows(ids: np.ndarray, batch: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-character targets, ``(n_windows, batch, window)`` each.

    Row ``b`` of every window continues row ``b`` of the previous one: ``ids`` is
    cut into ``batch`` streams of ``len(ids) // batch`` characters (the tail that
    does not fill a stream is dropped), and each stream into windows of
    ``window`` steps, targets shifted by one. ``ValueError`` if not even one
    window fits.
    """
    stream = (len(ids) - 1) // batch
    n = stream // window
    if n < 1:
        raise ValueError(f"{len(ids)} characters make no window of {window} steps for a batch of {batch} "
                         f"(need at least batch * window + 1 = {batch * window + 1}); use a smaller "
                         "--batch-size or --window, or a longer text")
    rows = np.asarray(ids[: batch * stream + 1])
    x = np.stack([rows[b * stream: b * stream + n * window] for b in range(batch)])
    t = np.stack([rows[b * stream + 1: b * stream + n * window + 1] for b in range(batch)])
    split = lambda a: a.reshape(batch, n, window).transpose(1, 0, 2)  # noqa: E731
    return split(x), split(t)


def make_bptt_epoch(net: Layer, optimizer) -> Callable:
    """``epoch(params, opt_state, key, xs, ts) -> (params, opt_state, mean loss)``: one pass of
    truncated BPTT over the text, one scan.

    It differs from ``fnet.train``'s epoch in what matters for truncated BPTT: the windows
    (``xs``, ``ts`` from ``windows``) are taken **in order**, not shuffled, so that the
    network's state starts from zeros (a reset) and flows from each window to the next;
    ``key`` is split per window for dropout. Jit it.
    """
    grads_of = loss_and_grads(net, losses.softmax_cross_entropy, train=True)
    stateful = "state" in net.uses

    def epoch(params, opt_state, key, xs, ts):
        state = net.init_state(xs.shape[1:]) if stateful else None

        def step(carry, inputs):
            params, opt_state, state = carry
            x, t, k = inputs
            out = grads_of(params, x, t, key=k if "key" in net.uses else None, state=state)
            loss, grads, state = out if stateful else (*out, None)
            params, opt_state = optimizer.update(grads, opt_state, params)
            return (params, opt_state, state), loss

        keys = jax.random.split(key, xs.shape[0])
        (params, opt_state, _), step_losses = jax.lax.scan(step, (params, opt_state, state), (xs, ts, keys))
        return params, opt_state, jnp.mean(step_losses)

    return epoch


def make_bptt_loss(net: Layer) -> Callable:
    """``loss(params, xs, ts) -> mean cross-entropy per character`` over the windows in order
    (evaluation mode, the state from zeros and carried from window to window)."""
    stateful = "state" in net.uses

    def evaluate(params, xs, ts):
        state = net.init_state(xs.shape[1:]) if stateful else None

        def step(state, inputs):
            x, t = inputs
            y, _, state = apply(net, params, x, train=False if "train" in net.uses else None, state=state)
            return state, losses.softmax_cross_entropy.forward(y, t)[0]

        _, per_window = jax.lax.scan(step, state, (xs, ts))
        return jnp.mean(per_window)

    return evaluate


def sample(net: Layer, params, vocab: str, prompt: str, n: int, *, key: jax.Array,
           temperature: float = 1.0) -> str:
    """``n`` characters generated after ``prompt``, each drawn from ``softmax(logits / temperature)``.

    The network must be stateful (``char_rnn``'s is): the prompt is read one
    character at a time, then each drawn character is fed back. The same key
    gives the same text; ``temperature`` below 1 sharpens the distribution
    (towards the likeliest character), above 1 flattens it.
    """
    if not prompt:
        raise ValueError("sample: the prompt needs at least one character")
    if not temperature > 0:
        raise ValueError(f"sample: temperature must be positive, got {temperature}")
    ids = jnp.asarray(encode(prompt, vocab))
    run = _sampler(net, len(vocab), len(prompt), n)
    return decode(run(params, ids, key, jnp.float32(temperature)), vocab)


def _sampler(net: Layer, vocab_size: int, prompt_len: int, n: int):
    def one(params, state, x):
        y, _, state = apply(net, params, x.reshape(1, 1), train=False if "train" in net.uses else None,
                            state=state)
        return y[0, -1], state

    @jax.jit
    def run(params, prompt, key, temperature):
        state = net.init_state((1, 1))

        def read(state, c):
            logits, state = one(params, state, c)
            return state, logits

        state, logits = jax.lax.scan(read, state, prompt)

        def write(carry, k):
            state, logits = carry
            c = jax.random.categorical(k, logits / temperature)
            logits, state = one(params, state, c)
            return (state, logits), c

        _, out = jax.lax.scan(write, (state, logits[-1]), jax.random.split(key, n))
        return out

    return run


def unigram_perplexity(train_ids: np.ndarray, val_ids: np.ndarray, vocab_size: int) -> float:
    """The perplexity on ``val_ids`` of character frequencies counted in ``train_ids`` (add-one smoothed):
    the baseline a model that ignores context reaches."""
    counts = np.bincount(train_ids, minlength=vocab_size) + 1.0
    logp = np.log(counts / counts.sum())
    return math.exp(-float(np.mean(logp[val_ids])))
