"""Embeddings: the book's sequel's ``Embedding`` (chapter 4), a table looked up by integer ids; and the
positional embedding of the transformer, a table added by position."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fnet import _args, initializers
from fnet.core import Layer, Static, check_dout, check_shape
from fnet.errors import DTypeError, RangeError, ShapeError, shape_str
from fnet.layers._checks import exact_rank, float_input, min_rank


def embedding(vocab_size: int, dim: int, *, W_init: initializers.Initializer | float | str = 1.0,
              dtype=jnp.float32) -> Layer:
    """``y = W[ids]``: row ``ids[n, t]`` of the table ``W: (vocab_size, dim)``.

    **Shapes:** integer ids ``(N, T)`` (or ``(N,)``, or any ``(N, ...)``) ->
    ``(N, T, dim)`` (the ids' shape with ``dim`` appended).

    **Cache:** the ids (and, static, the table's shape).

    **Backward:** the lookup picks rows, so each picked row receives its
    output's gradient, and a row picked several times receives the **sum**
    (the book's ``np.add.at(dW, idx, dout)``, a scatter-add):
    ``dW = zeros.at[ids].add(dout)``. The ids are integers, not a
    differentiable input: ``dx`` is **zeros of the ids' shape** (in the table's
    dtype), which is what ``sequential``'s checks expect of any layer.

    **Ids out of range** (outside ``[0, vocab_size)``): when the ids are known
    at trace time (a NumPy or concrete JAX array), ``RangeError`` names the
    offending values. Under ``jit`` they are not known: then the rows of such
    ids are **NaN** (``jnp.take(..., mode="fill")``; negative ids too, which NumPy
    would wrap), so the loss is NaN and
    ``fit`` stops on it, never a silently wrong row; their gradients are dropped.

    **Arguments:** ``W_init``: a float standard deviation of a normal (default
    ``1.0``, as ``torch.nn.Embedding``; the book's sequel uses ``0.01``),
    ``"he"``, ``"xavier"`` or an initialiser; ``dtype`` of the table.
    """
    vocab_size = _args.count("embedding", "vocab_size", vocab_size, 1)
    dim = _args.count("embedding", "dim", dim, 1)
    dtype = _args.float_dtype("embedding", dtype)
    W_init = initializers.resolve(W_init, "embedding", "W_init")

    def init(key, input_shape):
        shape = check_shape(input_shape, "embedding")
        min_rank("embedding", shape, 1, "(N, ...) of integer ids")
        return {"W": W_init(key, (vocab_size, dim), dtype)}, (*shape, dim)

    def forward(params, ids):
        W = params["W"]
        ids = jnp.asarray(ids)
        if not jnp.issubdtype(ids.dtype, jnp.integer):
            raise DTypeError("embedding", f"looks up integer ids, got an input of dtype {ids.dtype} and "
                                          f"shape {shape_str(ids.shape)}; convert with ids.astype(jnp.int32)")
        min_rank("embedding", ids.shape, 1, "(N, ...) of integer ids")
        if W.shape[0] != vocab_size:
            raise ShapeError("embedding", f"the table W has shape {W.shape}, but this layer has "
                                          f"vocab_size {vocab_size}; were the params made by another layer?")
        count, examples = _args.outside(ids, vocab_size)
        if count:
            raise RangeError("embedding", f"ids must be in [0, {vocab_size}) (the vocab_size); got "
                                          f"{count} outside it, e.g. {examples}")
        # negative ids would wrap around (NumPy's indexing): send them past the end, where they fill
        ids = jnp.where(ids < 0, vocab_size, ids)
        y = jnp.take(W, ids, axis=0, mode="fill", fill_value=jnp.nan)
        return y, (ids, Static(W.shape))

    def backward(cache, dout):
        ids, table = cache
        check_dout("embedding", dout, (*ids.shape, table.value[1]))
        dW = jnp.zeros(table.value, dout.dtype).at[ids].add(dout, mode="drop")
        return {"W": dW}, jnp.zeros(ids.shape, dout.dtype)

    return Layer("embedding", init, forward, backward)


POSITIONAL_KINDS = ("learned", "sinusoidal")


def positional_embedding(max_len: int, kind: str = "learned", *,
                         W_init: initializers.Initializer | float | str = 0.02, dtype=jnp.float32) -> Layer:
    """Where each position is: row ``t`` of a table added to position ``t`` of every sequence.

    ``kind="learned"`` (GPT's ``wpe``): the table ``W: (max_len, D)`` is a parameter (normal with
    std 0.02 by default, as GPT-2 and nanoGPT). ``kind="sinusoidal"`` (Vaswani et al. 2017, CS231n's
    ``PositionalEncoding``): the fixed table ``P[t, 2i] = sin(t / 10000^(2i/D))``, ``P[t, 2i+1] =
    cos(t / 10000^(2i/D))``, no parameters.

    **Shapes:** ``x: (N, T, D) -> y = x + table[:T]: (N, T, D)``, for any ``T <= max_len``
    (a longer sequence is an error naming both).

    **Cache:** the sequence length ``T`` and the table's shape (``Static``).

    **Derivative:** an addition: ``dx = dout``; the learned table's row ``t`` is added to
    position ``t`` of every sequence (a fan-out over the batch), so ``dW[t] = sum over the batch
    of dout[:, t]``, and rows ``t >= T`` get zero.
    """
    max_len = _args.count("positional_embedding", "max_len", max_len, 1)
    dtype = _args.float_dtype("positional_embedding", dtype)
    if kind not in POSITIONAL_KINDS:
        raise ValueError(f"positional_embedding: kind must be one of {POSITIONAL_KINDS}, got {kind!r}")
    W_init = initializers.resolve(W_init, "positional_embedding", "W_init")
    learned = kind == "learned"

    def check(shape) -> None:
        exact_rank("positional_embedding", shape, 3, "(N, T, D): batch, positions, features")
        if shape[1] is not None and shape[1] > max_len:
            raise ShapeError("positional_embedding",
                             f"sequences of T = {shape[1]} positions (input {shape_str(shape)}) are longer "
                             f"than max_len = {max_len}; cut them to {max_len} or build the layer with a "
                             "larger max_len")

    def init(key, input_shape):
        shape = check_shape(input_shape, "positional_embedding")
        check(shape)
        return ({"W": W_init(key, (max_len, shape[2]), dtype)} if learned else {}), shape

    def forward(params, x):
        x = float_input("positional_embedding", x)
        check(x.shape)
        t, d = x.shape[1], x.shape[2]
        if learned:
            if params["W"].shape[1] != d:
                raise ShapeError("positional_embedding", f"input {shape_str(x.shape)} has D = {d} features, "
                                                         f"but W has shape {params['W'].shape}")
            return x + params["W"][:t], Static((t, params["W"].shape))
        return x + sinusoidal(t, d, x.dtype), Static((t, None))

    def backward(cache, dout):
        t, table = cache.value
        if not learned:
            return {}, dout
        dW = jnp.pad(jnp.sum(dout, axis=0), ((0, table[0] - t), (0, 0)))  # rows >= T were not used
        return {"W": dW}, dout

    return Layer("positional_embedding", init, forward, backward)


def sinusoidal(length: int, dim: int, dtype=jnp.float32) -> jax.Array:
    """The fixed positional encoding of Vaswani et al.: ``(length, dim)``, sines in the even columns,
    cosines in the odd ones, wavelengths from ``2 pi`` to ``10000 * 2 pi``."""
    position = np.arange(length)[:, None]
    rate = 1.0 / 10000 ** (np.arange(0, dim, 2) / dim)
    table = np.zeros((length, dim))
    table[:, 0::2] = np.sin(position * rate)
    table[:, 1::2] = np.cos(position * rate[: dim // 2])
    return jnp.asarray(table, dtype)
