"""Multi-head self-attention (Vaswani et al. 2017), the transformer's layer, forward and backward by hand.

The layer is the book's sequel's attention (chapter 8: ``AttentionWeight``, a softmax over
scores, then ``WeightSum``) with the queries, keys and values made by the layer itself, split
into heads, and causal masking for language models (llm.c's ``attention_forward`` and
``attention_backward``; CS231n's ``MultiHeadAttention``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from fnet import _args, initializers
from fnet.core import Layer, check_dout, check_shape
from fnet.errors import ContextError, ShapeError, shape_str
from fnet.layers._checks import exact_rank, float_input, mode

__all__ = ["causal_mask", "multi_head_attention", "softmax_backward"]

PROJECTIONS = ("q", "k", "v")


def multi_head_attention(heads: int, *, causal: bool = False, dropout: float = 0.0,
                         W_init: initializers.Initializer | float | str = "xavier",
                         out_init: initializers.Initializer | float | str | None = None,
                         dtype=jnp.float32) -> Layer:
    """Multi-head self-attention: every position of a sequence attends to every position (with
    ``causal``, to itself and the positions before it), in ``heads`` heads side by side.

    **Shapes:** ``x: (N, T, D) -> y: (N, T, D)``; ``D`` must be divisible by ``heads``, each
    head working in ``d = D / heads`` dimensions.

    **Params** (the layout of ``torch.nn.MultiheadAttention`` and nanoGPT's ``c_attn``, split
    by name): ``Wq, Wk, Wv: (D, D)`` and ``bq, bv: (D,)`` make the queries, keys and values,
    ``q = x Wq + bq``, ``k = x Wk``, ``v = x Wv + bv``; head ``h`` owns their columns ``h*d ..
    (h+1)*d``. ``Wo: (D, D)``, ``bo: (D,)`` project the merged heads back: ``y = o Wo + bo``.
    Weights from ``W_init`` (``Wo`` from ``out_init``, default ``W_init``), biases zero. There is
    no key bias: adding ``b`` to every key adds ``q . b`` to a whole row of scores, which the
    softmax ignores, so its gradient is exactly zero and it would never learn (GPT-2's ``c_attn``
    has one, which stays at its initial zero).

    **Forward**, per head, with ``q, k, v: (N, T, d)``::

        s = q k^T / sqrt(d)                 scores (N, T, T); with causal, s[t, u] = -inf for u > t
        a = softmax(s) along each row       attention weights; a row sums to 1
        o = dropout(a) v                    each position's weighted sum of the values (N, T, d)

    then the heads' ``o`` side by side, ``(N, T, D)``, and the output projection.

    **Uses:** ``{"key", "train"}`` only when ``dropout > 0`` (on the attention weights, in
    training); otherwise ``forward(params, x)``.

    **Cache:** ``x``, the weights, ``q``, ``k``, ``v``, the attention weights ``a`` (and the
    dropout mask), the merged heads ``o``: its memory is dominated by ``a``, ``N * heads * T *
    T`` numbers per layer (twice that with dropout), against ``N * T * D`` for the others.

    **Derivative** (``do`` the gradient of the merged heads, per head):
    ``dv = a^T do``, ``da = do v^T`` (through dropout's mask), then the softmax's
    Jacobian-vector product along each row, ``ds = a * (da - sum(da * a))``: masked scores have
    ``a = 0`` and get exactly zero gradient; ``dq = ds k / sqrt(d)``, ``dk = ds^T q / sqrt(d)``;
    the heads merge back into ``(N, T, 3D)`` and go through the projections as ``affine``'s do.
    """
    heads = _args.count("multi_head_attention", "heads", heads, 1)
    dtype = _args.float_dtype("multi_head_attention", dtype)
    rate = _args.in_unit("multi_head_attention", "dropout", dropout,
                         about="the probability of dropping an attention weight")
    if not isinstance(causal, bool):
        raise TypeError(f"multi_head_attention: causal must be True or False, got {causal!r}")
    W_init = initializers.resolve(W_init, "multi_head_attention", "W_init")
    if out_init is not None:
        out_init = initializers.resolve(out_init, "multi_head_attention", "out_init")
    out_init = W_init if out_init is None else out_init

    def init(key, input_shape):
        shape = check_shape(input_shape, "multi_head_attention")
        d = _model_dim(shape, heads)
        keys = jax.random.split(key, 4)
        params = {f"W{p}": W_init(k, (d, d), dtype) for p, k in zip(PROJECTIONS, keys, strict=False)}
        params |= {"bq": jnp.zeros((d,), dtype), "bv": jnp.zeros((d,), dtype)}
        params["Wo"], params["bo"] = out_init(keys[3], (d, d), dtype), jnp.zeros((d,), dtype)
        return params, shape

    def forward(params, x, **ctx):
        x = float_input("multi_head_attention", x)
        _model_dim(x.shape, heads, params["Wq"].shape[0])
        n, t, d = x.shape
        W = jnp.concatenate([params[f"W{p}"] for p in PROJECTIONS], axis=1)  # (D, 3D): one matmul
        b = jnp.concatenate([params["bq"], jnp.zeros_like(params["bq"]), params["bv"]])
        q, k, v = jnp.split((x @ W + b).reshape(n, t, 3, heads, d // heads), 3, axis=2)
        q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]  # (N, T, H, d) each
        s = jnp.einsum("nthd,nshd->nhts", q, k) / math.sqrt(d // heads)
        if causal:
            s = jnp.where(causal_mask(t), s, -jnp.inf)
        a = jnp.exp(s - jnp.max(s, axis=-1, keepdims=True))
        a = a / jnp.sum(a, axis=-1, keepdims=True)
        mask = _dropout_mask(rate, a, ctx)
        o = jnp.einsum("nhts,nshd->nthd", a if mask is None else a * mask, v).reshape(n, t, d)
        y = o @ params["Wo"] + params["bo"]
        return y, (x, W, params["Wo"], q, k, v, a, mask, o)

    def backward(cache, dout):
        x, W, Wo, q, k, v, a, mask, o = cache
        d = x.shape[2]
        check_dout("multi_head_attention", dout, x.shape)
        dout2, o2 = dout.reshape(-1, d), o.reshape(-1, d)
        dWo, dbo = o2.T @ dout2, dout2.sum(axis=0)
        do = (dout2 @ Wo.T).reshape(q.shape)  # the heads' outputs (N, T, H, d)
        a_used = a if mask is None else a * mask
        dv = jnp.einsum("nhts,nthd->nshd", a_used, do)  # each value, by the weights it was summed with
        da = jnp.einsum("nthd,nshd->nhts", do, v)
        if mask is not None:
            da = da * mask
        ds = softmax_backward(a, da) / math.sqrt(d // heads)
        dq = jnp.einsum("nhts,nshd->nthd", ds, k)
        dk = jnp.einsum("nhts,nthd->nshd", ds, q)
        dqkv = jnp.stack([dq, dk, dv], axis=2).reshape(-1, 3 * d)  # the heads merged, (N*T, 3D)
        dW, db = x.reshape(-1, d).T @ dqkv, dqkv.sum(axis=0)  # db's key part: the bias there is none
        dx = (dqkv @ W.T).reshape(x.shape)
        grads = {f"W{p}": dW[:, i * d:(i + 1) * d] for i, p in enumerate(PROJECTIONS)}
        grads |= {"bq": db[:d], "bv": db[2 * d:], "Wo": dWo, "bo": dbo}
        return grads, dx

    return Layer("multi_head_attention", init, forward, backward, uses={"key", "train"} if rate else set())


def causal_mask(t: int) -> jax.Array:
    """``(T, T)`` booleans: position ``t`` (a row) may attend to positions ``0 .. t`` (its columns)."""
    return jnp.tril(jnp.ones((t, t), bool))


def softmax_backward(a: jax.Array, da: jax.Array) -> jax.Array:
    """The softmax's Jacobian-vector product along the last axis: ``ds = a * (da - sum(da * a))``.

    ``a = softmax(s)`` has ``da_i/ds_j = a_i (delta_ij - a_j)``, so
    ``ds_j = sum_i da_i a_i (delta_ij - a_j) = a_j (da_j - sum_i da_i a_i)``: the row-sum term is
    what makes the weights compete (dropping it leaves only the diagonal). Where ``a`` is 0 (a
    masked score) the gradient is exactly 0.
    """
    return a * (da - jnp.sum(da * a, axis=-1, keepdims=True))


def _model_dim(shape, heads: int, d_params: int | None = None) -> int:
    """``D`` of ``(N, T, D)``, checked: divisible by ``heads``, and equal to the params' ``D``."""
    exact_rank("multi_head_attention", shape, 3, "(N, T, D): batch, positions, features")
    d = shape[2]
    if d % heads:
        raise ShapeError("multi_head_attention", f"the model dimension D = {d} of input {shape_str(shape)} "
                                                 f"must be divisible by heads = {heads}; use a D that is a "
                                                 f"multiple of {heads}, or another number of heads")
    if d_params is not None and d != d_params:
        raise ShapeError("multi_head_attention", f"input of shape {shape_str(shape)} has D = {d}, but Wq "
                                                 f"expects {d_params}; initialise the layer with this input "
                                                 "shape")
    return d


def _dropout_mask(rate: float, a: jax.Array, ctx: dict):
    """The scaled dropout mask of the attention weights in training, or ``None``."""
    if not rate or not mode("multi_head_attention", ctx["train"]):
        return None
    if ctx["key"] is None:
        raise ContextError("multi_head_attention", "dropout on the attention weights needs a random key in "
                                                   "training: pass key=... (a new one for every step)")
    keep = 1.0 - rate
    return jnp.where(jax.random.bernoulli(ctx["key"], keep, a.shape), 1.0 / keep, 0.0).astype(a.dtype)
