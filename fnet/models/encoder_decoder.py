"""Encoder-decoder models: the second book's ``Seq2seq``, ``PeekySeq2seq`` and ``AttentionSeq2seq``
(chapters 7 and 8), and their greedy decoding.

An LSTM **encoder** reads the source ids; an LSTM **decoder** starts from the encoder's last
hidden state (its memory cell from zeros, as the book's ``set_state(h)``) and predicts the
target one step at a time. In training the decoder reads the true previous character at every
step (teacher forcing); to predict, ``generate`` feeds it its own previous output (greedy decoding).

**Two inputs.** fnet's layers take one input: these models take one tuple ``x = (source ids
(N, T_src), decoder ids (N, T_dec))`` and give the scores ``(N, T_dec, vocab_size)`` for the
next character at every decoder step. ``init`` takes the pair of shapes, e.g.
``((None, 7), (None, 4))``; ``backward`` returns the gradients of both (zeros: ids are not
differentiable), so the gradient-equivalence tests check every rule as any other layer's
(``docs/design.md``, "Two inputs").

Each model's backward is written out step by step: the output layer's, the decoder LSTM's
(``sequence_backward``: backpropagation through time, which also returns the gradient of the
state the decoder started from), then that gradient enters the encoder at its last step.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fnet import _args
from fnet import layers as L
from fnet.core import Layer, Static, check_dout, check_shape
from fnet.errors import DTypeError, RangeError, ShapeError, shape_str
from fnet.layers._through_time import sequence_backward, sequence_forward
from fnet.layers.encoder_attention import time_attention
from fnet.layers.recurrent import LSTM

__all__ = ["MODELS", "attention_seq2seq", "generate", "seq2seq"]

MODELS = ("seq2seq", "peeky_seq2seq", "attention_seq2seq")
"""The layer names of the encoder-decoder models (what ``generate`` decodes)."""


def _pair_input(name: str, x) -> tuple:
    if not (isinstance(x, (tuple, list)) and len(x) == 2):
        raise ShapeError(name, f"takes x = (source ids (N, T_src), decoder ids (N, T_dec)) as one tuple; "
                               f"got {type(x).__name__}")
    src, dec = (jnp.asarray(v) for v in x)
    for what, v in (("source", src), ("decoder", dec)):
        if not jnp.issubdtype(v.dtype, jnp.integer):
            raise DTypeError(name, f"reads integer ids; the {what} ids have dtype {v.dtype}")
        if v.ndim != 2:
            raise ShapeError(name, f"expects {what} ids of shape (N, T); got {shape_str(v.shape)}")
    if src.shape[0] != dec.shape[0]:
        raise ShapeError(name, f"the source ids {shape_str(src.shape)} and decoder ids "
                               f"{shape_str(dec.shape)} must have the same batch N")
    return src, dec


def _pair_shapes(name: str, input_shape) -> tuple[tuple, tuple]:
    if not (isinstance(input_shape, (tuple, list)) and len(input_shape) == 2
            and all(isinstance(s, (tuple, list)) for s in input_shape)):
        raise ShapeError(name, f"init takes the pair of input shapes ((N, T_src), (N, T_dec)), e.g. "
                               f"((None, 7), (None, 4)); got {input_shape!r}")
    src, dec = (check_shape(s, name) for s in input_shape)
    if len(src) != 2 or len(dec) != 2:
        raise ShapeError(name, f"expects ids of shapes (N, T_src) and (N, T_dec); got {input_shape!r}")
    return src, dec


def _settings(name: str, vocab_size, wordvec, hidden) -> tuple[int, int, int]:
    return (_args.count(name, "vocab_size", vocab_size, 1), _args.count(name, "wordvec", wordvec, 1),
            _args.count(name, "hidden", hidden, 1))


def _lstm_params(key, d: int, hidden: int):
    return L.lstm(hidden).init(key, (None, 1, d))[0]


def _init(key, embed: Layer, out: Layer, wordvec: int, hidden: int, decoder_in: int, out_in: int) -> dict:
    """The parameters of both halves: the decoder's LSTM reads ``decoder_in`` features, the output
    layer ``out_in``."""
    k = jax.random.split(key, 5)
    return {"encoder": {"embedding": embed.init(k[0], (None, 1))[0],
                        "lstm": _lstm_params(k[1], wordvec, hidden)},
            "decoder": {"embedding": embed.init(k[2], (None, 1))[0],
                        "lstm": _lstm_params(k[3], decoder_in, hidden),
                        "affine": out.init(k[4], (None, 1, out_in))[0]}}


def _repeat(h, t: int):
    """``h: (N, H)`` at every one of ``t`` steps: ``(N, t, H)``."""
    return jnp.broadcast_to(h[:, None, :], (h.shape[0], t, h.shape[1]))


def seq2seq(vocab_size: int, wordvec: int, hidden: int, *, peeky: bool = False) -> Layer:
    """The book's ``Seq2seq`` (``peeky=True``: ``PeekySeq2seq``).

    **Network:** encoder ``embedding(vocab_size, wordvec) -> lstm(hidden)``, whose last hidden
    state ``h`` starts the decoder ``embedding -> lstm(hidden) -> affine(vocab_size)`` on every
    step. With ``peeky``, ``h`` is also concatenated to the decoder LSTM's input and to the
    output layer's input at every step, so the decoder never loses sight of the source.

    **Shapes:** ``x = (source (N, T_src), decoder (N, T_dec))`` integer ids ``->`` scores
    ``(N, T_dec, vocab_size)``. **Params:** ``{"encoder": {"embedding", "lstm"}, "decoder":
    {"embedding", "lstm", "affine"}}`` (the LSTMs as ``fnet.layers.lstm``'s ``Wx, Wh, b``; the
    embeddings start at ``0.01 N(0, 1)`` as the book's).

    **Derivative:** the affine's backward gives ``dhs_dec`` (and with ``peeky`` a gradient of
    ``h`` at every step, summed); backpropagation through the decoder gives its parameters'
    gradients, ``dx`` of its inputs (with ``peeky`` again a part for ``h``) and ``dh0``, the
    gradient of the state it started from; ``dh = dh0 (+ the peeky sums)`` enters the encoder
    at its last step, and backpropagation through it reaches the source embedding.
    """
    name = "peeky_seq2seq" if peeky else "seq2seq"
    vocab_size, wordvec, hidden = _settings(name, vocab_size, wordvec, hidden)
    _args.flag(name, "peeky", peeky)
    embed = L.embedding(vocab_size, wordvec, W_init=0.01)
    out = L.affine(vocab_size, flatten=False)
    peek = hidden if peeky else 0

    def init(key, input_shape):
        _, dec = _pair_shapes(name, input_shape)
        params = _init(key, embed, out, wordvec, hidden, wordvec + peek, hidden + peek)
        return params, (dec[0], dec[1], vocab_size)

    def forward(params, x):
        src, dec = _pair_input(name, x)
        pe, pd = params["encoder"], params["decoder"]
        e, cache_e = embed.forward(pe["embedding"], src)
        _, (h, _), run_e = sequence_forward(LSTM, pe["lstm"], e)
        d, cache_d = embed.forward(pd["embedding"], dec)
        t_dec = dec.shape[1]
        if peeky:
            d = jnp.concatenate([d, _repeat(h, t_dec)], axis=-1)
        hs, _, run_d = sequence_forward(LSTM, pd["lstm"], d, (h, jnp.zeros_like(h)))
        z = jnp.swapaxes(hs, 0, 1)  # (N, T_dec, H)
        if peeky:
            z = jnp.concatenate([z, _repeat(h, t_dec)], axis=-1)
        y, cache_out = out.forward(pd["affine"], z)
        return y, (cache_e, run_e, cache_d, run_d, cache_out, Static(y.shape))

    def backward(cache, dy):
        cache_e, run_e, cache_d, run_d, cache_out, y_shape = cache
        check_dout(name, dy, y_shape.value)
        d_affine, dz = out.backward(cache_out, dy)
        dhs = dz[..., :hidden]
        dh = dz[..., hidden:].sum(axis=1) if peeky else 0.0  # h fed every step: gradients add
        d_lstm_d, dd, (dh0, _) = sequence_backward(LSTM, run_d, jnp.swapaxes(dhs, 0, 1), None)
        if peeky:
            dh = dh + dd[..., wordvec:].sum(axis=1)
            dd = dd[..., :wordvec]
        d_embed_d, ddec = embed.backward(cache_d, dd)
        d_lstm_e, de, _ = sequence_backward(LSTM, run_e, None, (dh0 + dh,))
        d_embed_e, dsrc = embed.backward(cache_e, de)
        return ({"encoder": {"embedding": d_embed_e, "lstm": d_lstm_e},
                 "decoder": {"embedding": d_embed_d, "lstm": d_lstm_d, "affine": d_affine}}, (dsrc, ddec))

    return Layer(name, init, forward, backward)


def attention_seq2seq(vocab_size: int, wordvec: int, hidden: int) -> Layer:
    """The book's ``AttentionSeq2seq``: the decoder attends over every state of the encoder.

    **Network:** encoder ``embedding -> lstm(hidden)`` keeps all its states ``hs_enc: (N, T_src,
    H)``; the decoder ``embedding -> lstm(hidden)`` starts from ``hs_enc[:, -1]``; at every
    decoder step ``time_attention`` makes the context ``c`` (the encoder's states weighted by
    the softmax of their dot products with the decoder's state), and ``affine(vocab_size)``
    reads ``[c, hs_dec]``.

    **Shapes:** ``x = (source (N, T_src), decoder (N, T_dec))`` ids ``-> (N, T_dec, vocab_size)``.
    **Params:** ``{"encoder": {"embedding", "lstm"}, "decoder": {"embedding", "lstm", "affine"}}``.

    **Derivative:** the affine's backward splits into ``dc`` and ``dhs_dec``; ``time_attention``'s
    backward turns ``dc`` into gradients of both the encoder's states and the decoder's (added to
    ``dhs_dec``); backpropagation through the decoder gives ``dh0``, added to the encoder's last
    state's gradient; backpropagation through the encoder takes the gradients of all its states.
    """
    name = "attention_seq2seq"
    vocab_size, wordvec, hidden = _settings(name, vocab_size, wordvec, hidden)
    embed = L.embedding(vocab_size, wordvec, W_init=0.01)
    attend = time_attention()
    out = L.affine(vocab_size, flatten=False)

    def init(key, input_shape):
        _, dec = _pair_shapes(name, input_shape)
        params = _init(key, embed, out, wordvec, hidden, wordvec, 2 * hidden)
        return params, (dec[0], dec[1], vocab_size)

    def forward(params, x):
        src, dec = _pair_input(name, x)
        pe, pd = params["encoder"], params["decoder"]
        e, cache_e = embed.forward(pe["embedding"], src)
        hs_e, (h, _), run_e = sequence_forward(LSTM, pe["lstm"], e)
        d, cache_d = embed.forward(pd["embedding"], dec)
        hs_d, _, run_d = sequence_forward(LSTM, pd["lstm"], d, (h, jnp.zeros_like(h)))
        hs_enc, hs_dec = jnp.swapaxes(hs_e, 0, 1), jnp.swapaxes(hs_d, 0, 1)
        c, cache_att = attend.forward({}, (hs_enc, hs_dec))
        y, cache_out = out.forward(pd["affine"], jnp.concatenate([c, hs_dec], axis=-1))
        return y, (cache_e, run_e, cache_d, run_d, cache_att, cache_out, Static(y.shape))

    def backward(cache, dy):
        cache_e, run_e, cache_d, run_d, cache_att, cache_out, y_shape = cache
        check_dout(name, dy, y_shape.value)
        d_affine, dz = out.backward(cache_out, dy)
        _, (dhs_enc, dhs_dec) = attend.backward(cache_att, dz[..., :hidden])
        dhs_dec = dhs_dec + dz[..., hidden:]  # hs_dec went to the attention and to the output
        d_lstm_d, dd, (dh0, _) = sequence_backward(LSTM, run_d, jnp.swapaxes(dhs_dec, 0, 1), None)
        d_embed_d, ddec = embed.backward(cache_d, dd)
        dhs_enc = dhs_enc.at[:, -1].add(dh0)  # the last state also started the decoder
        d_lstm_e, de, _ = sequence_backward(LSTM, run_e, jnp.swapaxes(dhs_enc, 0, 1), None)
        d_embed_e, dsrc = embed.backward(cache_e, de)
        return ({"encoder": {"embedding": d_embed_e, "lstm": d_lstm_e},
                 "decoder": {"embedding": d_embed_d, "lstm": d_lstm_d, "affine": d_affine}}, (dsrc, ddec))

    return Layer(name, init, forward, backward)


def generate(net: Layer, params, source, start_id: int, length: int) -> tuple[jax.Array, jax.Array | None]:
    """Greedy decoding: ``(ids, attention)`` for ``source: (N, T_src)``, ``length`` steps from
    ``start_id`` (the book's ``generate``).

    The encoder runs once; the decoder then runs one step at a time from its state, reading at
    each step its own previous output (the most probable character), as no answer is known.
    ``ids: (N, length)``; ``attention: (N, length, T_src)`` for ``attention_seq2seq`` (the weights
    of each output step over the source, Figure 8-26), else ``None``. Compiled with ``jax.jit``
    (``net``, ``start_id`` and ``length`` static): one program per network and shapes.

    **Raises:** ``ValueError`` for another network, a ``length`` below 1, a source that is not
    ``(N, T_src)`` integer ids (``ShapeError``), a ``start_id`` or (known, untraced) source ids
    outside the embeddings' vocabularies (``RangeError``), which would decode from NaN or wrapped rows.
    """
    if net.name not in MODELS:
        raise ValueError(f"generate: decodes the models {MODELS}; got a {net.name!r} layer")
    length = _args.count("generate", "length", length, 1)
    if isinstance(start_id, bool) or not isinstance(start_id, (int, np.integer)):
        raise TypeError(f"generate: start_id must be the id of the start character, an int; got {start_id!r}")
    source = jnp.asarray(source)
    if source.ndim != 2 or not source.shape[1] or not jnp.issubdtype(source.dtype, jnp.integer):
        raise ShapeError("generate", f"source must be integer ids of shape (N, T_src), T_src >= 1; got "
                                     f"{shape_str(source.shape)} of dtype {source.dtype}")
    source_vocab, vocab = (params[half]["embedding"]["W"].shape[0] for half in ("encoder", "decoder"))
    if not 0 <= start_id < vocab:
        raise RangeError("generate", f"start_id must be in [0, {vocab}) (the decoder's vocabulary); "
                                     f"got {start_id}")
    count, examples = _args.outside(source, source_vocab)
    if count:
        raise RangeError("generate", f"source ids must be in [0, {source_vocab}) (the encoder's "
                                     f"vocabulary); got {examples}")
    return _generate(net, params, source, int(start_id), length)


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _generate(net: Layer, params, source: jax.Array, start_id: int, length: int):
    pe, pd = params["encoder"], params["decoder"]
    e = jnp.take(pe["embedding"]["W"], source, axis=0)
    hs_e, (h, c), _ = sequence_forward(LSTM, pe["lstm"], e)
    hs_enc = jnp.swapaxes(hs_e, 0, 1)
    peeky, attention = net.name == "peeky_seq2seq", net.name == "attention_seq2seq"
    h_enc = h
    Wx, Wh, b = pd["lstm"]["Wx"], pd["lstm"]["Wh"], pd["lstm"]["b"]
    W_out, b_out = pd["affine"]["W"], pd["affine"]["b"]
    n = source.shape[0]

    def step(carry, _):
        (h, c), token = carry
        d = jnp.take(pd["embedding"]["W"], token, axis=0)
        if peeky:
            d = jnp.concatenate([d, h_enc], axis=-1)
        (h, c), _ = LSTM.step(Wh, d @ Wx + b, (h, c))
        z, a = h, jnp.zeros((n, 0), h.dtype)
        if peeky:
            z = jnp.concatenate([h, h_enc], axis=-1)
        if attention:
            a = jax.nn.softmax(jnp.einsum("nth,nh->nt", hs_enc, h), axis=-1)
            z = jnp.concatenate([jnp.einsum("nt,nth->nh", a, hs_enc), h], axis=-1)
        token = jnp.argmax(z @ W_out + b_out, axis=-1).astype(source.dtype)
        return ((h, c), token), (token, a)

    start = jnp.full((n,), start_id, source.dtype)
    _, (ids, weights) = lax.scan(step, ((h, jnp.zeros_like(c)), start), None, length=length)
    ids = jnp.swapaxes(ids, 0, 1)
    return ids, (jnp.swapaxes(weights, 0, 1) if attention else None)
