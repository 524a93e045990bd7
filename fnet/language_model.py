"""Language models, any kind: the text as ids, training on random windows, the loss over held-out
windows, and sampling without state.

``scripts/char_lm.py`` puts these together for characters (the book's sequel, chapters 5-7:
``Rnnlm`` and text generation; nanoGPT's ``train.py`` and ``sample.py``). A language model here is
any network of ids ``(N, T)`` to scores ``(N, T, V)`` for the next id at every position: a GPT
(``fnet.models.gpt``), or recurrent layers (``fnet.models.rnnlm(..., stateful=False)``).

- **Training** (``make_window_steps``): each step draws ``batch`` windows of ``context`` ids at
  random offsets of the training text and predicts every next id; every window starts the
  network afresh, so nothing is carried from one step to the next but the parameters.
- **The held-out loss** (``make_window_loss``): the mean cross-entropy in nats per id over the
  held-out text cut into consecutive, non-overlapping windows (``consecutive_windows``), every
  position predicted: the figure nanoGPT reports. **Perplexity** is its ``exp``: a model that
  spreads its guess evenly over ``k`` characters has perplexity ``k``; the ``unigram_loss`` (the
  characters' frequencies alone) is the baseline to beat.
- **Sampling** (``generate``, ``sample``): each step feeds the network the last ``context`` ids
  and draws the next from ``softmax(logits / temperature)``, keeping the ``top_k`` largest.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from fnet import _args, distributed, losses
from fnet.core import Layer, apply
from fnet.losses import Loss
from fnet.net import loss_and_grads

__all__ = ["consecutive_windows", "decode", "encode", "generate", "make_window_loss", "make_window_steps",
           "random_windows", "sample", "unigram_loss", "vocabulary"]


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


# ------------------------------------------------------------------- training and evaluating on windows


def random_windows(ids: jax.Array, key: jax.Array, batch: int, context: int) -> tuple[jax.Array, jax.Array]:
    """``batch`` windows of ``context`` ids at random offsets of ``ids``, and their next-id targets:
    ``(x, t)``, each ``(batch, context)``, ``t[:, i] = x[:, i + 1]`` continued (nanoGPT's ``get_batch``)."""
    starts = jax.random.randint(key, (batch,), 0, ids.shape[0] - context)
    rows = starts[:, None] + jnp.arange(context)
    return ids[rows], ids[rows + 1]


def make_window_steps(net: Layer, loss: Loss, optimizer, *, batch_size: int, context: int,
                      n_steps: int, mesh: Mesh | None = None) -> Callable:
    """``steps(params, opt_state, ids, key, first, count) -> (params, opt_state, losses)``: the updates
    ``first .. first + count - 1`` of a run (``count <= n_steps``), each on ``batch_size`` random
    windows of ``context`` ids of the text ``ids`` (``random_windows``), in one compiled loop.

    Every window starts the network afresh (no state is carried between windows), so any network
    of ids ``(N, T)`` to scores ``(N, T, V)`` trains this way: a GPT, an RNN. Update ``i`` of the
    run draws its windows and its dropout masks from ``fold_in(key, i)``, so a run cut into
    chunks, or stopped and resumed, takes the same steps. ``losses: (n_steps,)``, NaN past
    ``count``. Jit it; ``first`` and ``count`` are traced (one program for every chunk).

    With a ``mesh`` (``fnet.distributed.make_mesh``; the arguments replicated on its devices) every
    device draws the same windows and takes its share of them; the losses and gradients are
    averaged over the devices before the update (data parallel: the same steps up to rounding;
    dropout draws other masks on each device). ``batch_size`` must split evenly over the devices.
    """
    grads_of = loss_and_grads(net, loss, train=True)
    uses_key = "key" in net.uses
    per_device = batch_size if mesh is None else distributed.check_batch(mesh, batch_size)

    def steps(params, opt_state, ids, key, first, count):
        def step(i, carry):
            params, opt_state, values = carry
            k_data, k_net = jax.random.split(jax.random.fold_in(key, first + i))
            x, t = random_windows(ids, k_data, batch_size, context)
            if mesh is not None:  # this device's windows
                d = jax.lax.axis_index(distributed.AXES)
                x, t = (jax.lax.dynamic_slice_in_dim(a, d * per_device, per_device) for a in (x, t))
                k_net = jax.random.fold_in(k_net, d)
            value, grads = grads_of(params, x, t, key=k_net if uses_key else None)
            if mesh is not None:
                value, grads = jax.lax.pmean((value, grads), distributed.AXES)
            params, opt_state = optimizer.update(grads, opt_state, params)
            return params, opt_state, values.at[i].set(value)

        values = jnp.full((n_steps,), jnp.nan, jnp.float32)
        return jax.lax.fori_loop(0, jnp.minimum(count, n_steps), step, (params, opt_state, values))

    if mesh is None:
        return steps
    return jax.shard_map(steps, mesh=mesh, in_specs=(P(),) * 6, out_specs=P())


def consecutive_windows(ids: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """``ids`` cut into consecutive, non-overlapping windows of ``context`` and their next-id targets:
    ``(x, t)``, each ``(n, context)`` with ``n = (len(ids) - 1) // context``; every id but the last
    few is predicted once. ``ValueError`` when not even one window fits."""
    n = (len(ids) - 1) // context
    if n < 1:
        raise ValueError(f"{len(ids)} characters make no window of {context}: need at least {context + 1}")
    x = np.asarray(ids[: n * context]).reshape(n, context)
    t = np.asarray(ids[1: n * context + 1]).reshape(n, context)
    return x, t


def make_window_loss(net: Layer, *, batch_size: int = 64) -> Callable:
    """``loss(params, x, t) -> mean cross-entropy in nats per id`` over windows ``(n, T)`` (from
    ``consecutive_windows``), every position predicted, in evaluation mode, ``batch_size`` windows at a
    time (the tail as one more static shape). Jit it."""

    def chunk(params, xb, tb):
        y, _, _ = apply(net, params, xb, train=False if "train" in net.uses else None)
        return losses.softmax_cross_entropy.forward(y, tb)[0] * xb.shape[0]

    def loss(params, x, t):
        n = x.shape[0]
        b = min(batch_size, n)
        m = n // b * b
        xs, ts = x[:m].reshape(n // b, b, -1), t[:m].reshape(n // b, b, -1)
        total = jnp.sum(jax.lax.map(lambda xt: chunk(params, *xt), (xs, ts)))
        if m < n:
            total = total + chunk(params, x[m:], t[m:])
        return total / n

    return loss


def generate(net: Layer, params, prompt: jax.Array, n: int, *, context: int, key: jax.Array,
             temperature: float = 1.0, top_k: int | None = None) -> jax.Array:
    """``n`` ids generated after ``prompt`` by a causal network of ids ``(1, T)`` to scores ``(1, T, V)``,
    each drawn from ``softmax(logits / temperature)`` of the next position (only the ``top_k`` largest
    logits, when given). No state: each step feeds the network the last ``context`` ids.

    One compiled program per network, ``context``, ``n`` and ``top_k``, whatever the prompt's
    length: the ids are kept in a window of ``context`` positions, filled from the left; while it is
    not full, the next id is read at the last filled position, which a causal network computes
    without looking at the empty positions after it.

    **Raises:** ``ValueError`` for a prompt that is not a non-empty 1-D array of ids in ``[0, V)``
    (``TypeError`` for ids that are not integers), a negative ``n``, a ``context`` below 1, a
    temperature that is not positive, a ``top_k`` outside ``1 .. V``.
    """
    prompt = jnp.asarray(prompt)
    if prompt.ndim != 1 or not prompt.size:
        raise ValueError(f"generate: the prompt must be a 1-D array of at least one id, shape (T,); got "
                         f"shape {tuple(prompt.shape)}")
    if not jnp.issubdtype(prompt.dtype, jnp.integer):
        raise TypeError(f"generate: the prompt must hold integer ids; got dtype {prompt.dtype}")
    n = _args.count("generate", "n", n, 0)
    context = _args.count("generate", "context", context, 1)
    temperature = _args.positive("generate", "temperature", temperature)
    vocab_size = _logits.eval_shape(net, params, jax.ShapeDtypeStruct((1, context), jnp.int32)).shape[-1]
    if top_k is not None:
        top_k = _args.count("generate", "top_k", top_k, 1)
        _args.interval("generate", "top_k", top_k, 1, vocab_size,
                       hint=f" (the network gives {vocab_size} scores)")
    count, examples = _args.outside(prompt, vocab_size)  # known ids only: not inside a user's jit
    if count:
        raise ValueError(f"generate: the prompt's ids must be in [0, {vocab_size}) (the network gives "
                         f"{vocab_size} scores); got {examples}")
    length = min(prompt.shape[0], context)  # the last `context` ids, at the window's start
    if isinstance(prompt, jax.core.Tracer):  # inside a user's jax.jit
        window = jnp.zeros((context,), jnp.int32).at[:length].set(prompt[-length:].astype(jnp.int32))
    else:  # in NumPy: no small program compiled for each prompt length
        window = np.zeros(context, np.int32)
        window[:length] = np.asarray(prompt)[-length:]
    return _generate(net, context, n, top_k, params, window, np.int32(length), key, np.float32(temperature))


@functools.partial(jax.jit, static_argnums=0)
def _logits(net: Layer, params, window: jax.Array) -> jax.Array:
    return apply(net, params, window, train=False if "train" in net.uses else None)[0]


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _generate(net: Layer, context: int, n: int, top_k: int | None, params, window, length, key, temperature):
    def write(carry, k):
        window, length = carry
        y = _logits(net, params, window[None])
        logits = jax.lax.dynamic_index_in_dim(y[0], length - 1, keepdims=False) / temperature
        if top_k is not None:
            kth = jax.lax.top_k(logits, top_k)[0][-1]
            logits = jnp.where(logits < kth, -jnp.inf, logits)
        c = jax.random.categorical(k, logits).astype(jnp.int32)
        full = length == context
        window = jnp.where(full, jnp.roll(window, -1).at[-1].set(c), window.at[length].set(c))
        return (window, jnp.where(full, length, length + 1)), c

    _, out = jax.lax.scan(write, (window, length), jax.random.split(key, n))
    return out


def sample(net: Layer, params, vocab: str, prompt: str, n: int, *, context: int, key: jax.Array,
           temperature: float = 1.0, top_k: int | None = None) -> str:
    """``n`` characters generated after ``prompt`` (``generate``), as text; the same key gives the
    same text. ``temperature`` below 1 sharpens the distribution (towards the likeliest character),
    above 1 flattens it; ``top_k`` keeps only the ``k`` likeliest.

    **Raises:** ``ValueError`` for an empty prompt, characters the vocabulary lacks, a network
    whose scores do not match the vocabulary, a temperature that is not positive, a ``top_k``
    outside ``1 .. len(vocab)``.
    """
    if not prompt:
        raise ValueError("sample: the prompt needs at least one character")
    _args.positive("sample", "temperature", temperature)
    if top_k is not None:
        _args.interval("sample", "top_k", _args.count("sample", "top_k", top_k, 1), 1, len(vocab))
    context = _args.count("sample", "context", context, 1)
    scores = _logits.eval_shape(net, params, jax.ShapeDtypeStruct((1, context), jnp.int32)).shape[-1]
    if scores != len(vocab):
        raise ValueError(f"sample: the network gives {scores} scores per position but the vocabulary has "
                         f"{len(vocab)} characters; pass the vocabulary the network was trained with")
    ids = generate(net, params, encode(prompt, vocab), n, context=context, key=key, temperature=temperature,
                   top_k=top_k)
    return decode(ids, vocab)


def unigram_loss(train_ids: np.ndarray, val_ids: np.ndarray, vocab_size: int) -> float:
    """The mean cross-entropy in nats per id on ``val_ids`` of the ids' frequencies counted in
    ``train_ids`` (add-one smoothed): the baseline a model that ignores context reaches."""
    counts = np.bincount(train_ids, minlength=vocab_size) + 1.0
    logp = np.log(counts / counts.sum())
    return -float(np.mean(logp[val_ids]))
