"""Attention over an encoder's states: the second book's chapter 8 (``AttentionWeight``,
``WeightSum``, ``TimeAttention``).

A decoder step with hidden state ``h: (N, H)`` looks at every state of the encoder, ``hs: (N, T, H)``:

1. ``attention_weight``: a score per encoder step, the dot product ``s[n, t] = hs[n, t] . h[n]``,
   and its softmax over the steps, ``a = softmax(s): (N, T)`` (how much each source position
   matters now);
2. ``weight_sum``: the context ``c[n] = sum over t of a[n, t] hs[n, t]: (N, H)``, the encoder's
   states averaged with those weights;
3. ``time_attention``: both for every decoder step at once, ``(hs_enc, hs_dec) -> c: (N, T_dec, H)``.

Each takes **two inputs**, passed as one tuple ``x = (first, second)`` (fnet's layers take one
input; a tuple of arrays is one input) and gives back the gradients of both as a tuple ``dx``.
They have no parameters. ``time_attention``'s cache keeps the weights ``a: (N, T_dec, T_enc)``:
``attention_weights(cache)`` reads them, the picture of Figure 8-26.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnet.core import Layer, Static, check_dout, check_shape
from fnet.errors import ShapeError, shape_str
from fnet.layers.attention import softmax_backward

__all__ = ["attention_weight", "attention_weights", "time_attention", "weight_sum"]


def _pair(layer: str, x, what: str) -> tuple:
    if not (isinstance(x, (tuple, list)) and len(x) == 2):
        raise ShapeError(layer, f"takes two inputs as one tuple x = {what}; got {type(x).__name__}")
    return tuple(x)


def _pair_shapes(layer: str, input_shape, what: str, ranks: tuple[int, int]) -> tuple[tuple, tuple]:
    shapes = _pair(layer, input_shape, what)
    out = []
    for shape, rank in zip(shapes, ranks, strict=True):
        shape = check_shape(shape, layer)
        if len(shape) != rank:
            raise ShapeError(layer, f"expects x = {what}; got input shapes {tuple(map(shape_str, shapes))}")
        out.append(shape)
    return out[0], out[1]


def _check_states(layer: str, hs, h_shape: tuple, what: str) -> None:
    if hs.ndim != 3 or hs.shape[0] != h_shape[0] or hs.shape[2] != h_shape[-1]:
        raise ShapeError(layer, f"expects x = {what} with the same batch N and width H; got shapes "
                                f"{shape_str(hs.shape)} and {shape_str(h_shape)}")


def attention_weight() -> Layer:
    """The book's ``AttentionWeight``: ``a = softmax(s)``, ``s[n, t] = sum_h hs[n, t, h] h[n, h]``.

    **Shapes:** ``x = (hs: (N, T, H), h: (N, H)) -> a: (N, T)``. **Cache:** ``(hs, h, a)``.

    **Derivative:** the softmax's backward row by row, ``ds = a * (da - sum_t da * a)``, then the
    dot product's: ``dhs[n, t] = ds[n, t] h[n]`` (every encoder step gets ``h`` scaled by its
    score's gradient) and ``dh[n] = sum_t ds[n, t] hs[n, t]`` (``h`` was used at every step:
    the gradients add up, the ``repeat`` node).
    """
    what = "(hs (N, T, H), h (N, H))"

    def init(key, input_shape):
        hs, _ = _pair_shapes("attention_weight", input_shape, what, (3, 2))
        return {}, (hs[0], hs[1])

    def forward(params, x):
        hs, h = _pair("attention_weight", x, what)
        _check_states("attention_weight", hs, h.shape, what)
        s = jnp.einsum("nth,nh->nt", hs, h)
        a = jax.nn.softmax(s, axis=-1)
        return a, (hs, h, a)

    def backward(cache, da):
        hs, h, a = cache
        check_dout("attention_weight", da, a.shape)
        ds = softmax_backward(a, da)
        return {}, (ds[:, :, None] * h[:, None, :], jnp.einsum("nt,nth->nh", ds, hs))

    return Layer("attention_weight", init, forward, backward)


def weight_sum() -> Layer:
    """The book's ``WeightSum``: the context ``c[n] = sum_t a[n, t] hs[n, t]``.

    **Shapes:** ``x = (hs: (N, T, H), a: (N, T)) -> c: (N, H)``. **Cache:** ``(hs, a)``.

    **Derivative:** ``dhs[n, t] = a[n, t] dc[n]`` (the sum hands ``dc`` to every step, weighted)
    and ``da[n, t] = dc[n] . hs[n, t]``.
    """
    what = "(hs (N, T, H), a (N, T))"

    def init(key, input_shape):
        hs, _ = _pair_shapes("weight_sum", input_shape, what, (3, 2))
        return {}, (hs[0], hs[2])

    def forward(params, x):
        hs, a = _pair("weight_sum", x, what)
        if hs.ndim != 3 or a.shape != hs.shape[:2]:
            raise ShapeError("weight_sum", f"expects x = {what}; got shapes {shape_str(jnp.shape(hs))} and "
                                           f"{shape_str(jnp.shape(a))}")
        return jnp.einsum("nt,nth->nh", a, hs), (hs, a)

    def backward(cache, dc):
        hs, a = cache
        check_dout("weight_sum", dc, (hs.shape[0], hs.shape[2]))
        return {}, (a[:, :, None] * dc[:, None, :], jnp.einsum("nh,nth->nt", dc, hs))

    return Layer("weight_sum", init, forward, backward)


def time_attention() -> Layer:
    """The book's ``TimeAttention``: every decoder step attends over all encoder states at once.

    ``s = hs_dec hs_enc^T: (N, T_dec, T_enc)`` (one score per pair of steps), ``a = softmax(s)``
    over the encoder steps, ``c = a hs_enc: (N, T_dec, H)``: ``attention_weight`` then
    ``weight_sum`` for each decoder step, as two batched matmuls.

    **Shapes:** ``x = (hs_enc: (N, T_enc, H), hs_dec: (N, T_dec, H)) -> c: (N, T_dec, H)``.
    **Cache:** ``(hs_enc, hs_dec, a)``; ``attention_weights(cache)`` is ``a``.

    **Derivative:** ``weight_sum``'s, ``da = dc hs_enc^T`` and ``dhs_enc = a^T dc``; the softmax's,
    ``ds = a * (da - sum da * a)`` per row; the scores', ``dhs_dec = ds hs_enc`` and
    ``dhs_enc += ds^T hs_dec`` (the encoder's states are used twice: their gradients add).
    """
    what = "(hs_enc (N, T_enc, H), hs_dec (N, T_dec, H))"

    def init(key, input_shape):
        _, dec = _pair_shapes("time_attention", input_shape, what, (3, 3))
        return {}, dec

    def forward(params, x):
        hs_enc, hs_dec = _pair("time_attention", x, what)
        _check_states("time_attention", hs_enc, hs_dec.shape, what)
        s = jnp.einsum("nuh,nth->nut", hs_dec, hs_enc)
        a = jax.nn.softmax(s, axis=-1)
        return jnp.einsum("nut,nth->nuh", a, hs_enc), (hs_enc, hs_dec, a, Static("attention"))

    def backward(cache, dc):
        hs_enc, hs_dec, a, _ = cache
        check_dout("time_attention", dc, hs_dec.shape)
        da = jnp.einsum("nuh,nth->nut", dc, hs_enc)
        ds = softmax_backward(a, da)
        dhs_enc = jnp.einsum("nut,nuh->nth", a, dc) + jnp.einsum("nut,nuh->nth", ds, hs_dec)
        return {}, (dhs_enc, jnp.einsum("nut,nth->nuh", ds, hs_enc))

    return Layer("time_attention", init, forward, backward)


def attention_weights(cache) -> jax.Array:
    """The weights ``a: (N, T_dec, T_enc)`` in a ``time_attention`` cache: row ``u`` of example ``n``
    says how much each source position counted for output step ``u`` (each row sums to 1)."""
    if not (isinstance(cache, tuple) and len(cache) == 4 and isinstance(cache[3], Static)
            and cache[3].value == "attention"):
        raise TypeError("attention_weights: expected the cache of a time_attention forward")
    return cache[2]
