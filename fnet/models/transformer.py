"""The transformer block and nanoGPT's GPT, from public layers and combinators."""

from __future__ import annotations

import math

from fnet import _args
from fnet import layers as L
from fnet.combinators import residual, sequential, tied_embedding
from fnet.core import Layer


def transformer_block(dim: int, heads: int, *, dropout: float = 0.0, std: float = 0.02,
                      proj_std: float | None = None) -> Layer:
    """A pre-LN transformer block (GPT-2, nanoGPT's ``Block``): two residual branches.

    ``attn``: ``x + dropout(multi_head_attention(layer_norm(x)))`` (causal); ``mlp``: ``x +
    dropout(affine(D)(gelu(affine(4D)(layer_norm(x)))))``, both affines on the last axis.
    Weights ``N(0, std)``; the two projections back into the residual stream (the attention's
    ``Wo`` and the MLP's second affine) ``N(0, proj_std)`` (default ``std``).

    **Shapes:** ``(N, T, dim) -> (N, T, dim)``. Keys: ``attn/body/{ln_1, attn}``,
    ``mlp/body/{ln_2, fc, gelu, proj}`` (and ``drop`` with dropout).
    """
    dim = _args.count("transformer_block", "dim", dim, 1)
    proj_std = std if proj_std is None else proj_std
    drop = [("drop", L.dropout(dropout))] if dropout else []
    attn = sequential(("ln_1", L.layer_norm()),
                      ("attn", L.multi_head_attention(heads, causal=True, dropout=dropout, W_init=std,
                                                      out_init=proj_std)), *drop)
    mlp = sequential(("ln_2", L.layer_norm()), ("fc", L.affine(4 * dim, W_init=std, flatten=False)),
                     ("gelu", L.gelu()), ("proj", L.affine(dim, W_init=proj_std, flatten=False)), *drop)
    return sequential(("attn", residual(attn)), ("mlp", residual(mlp)))


def gpt(vocab_size: int, context: int, layers: int = 4, heads: int = 4, dim: int = 128, dropout: float = 0.0,
        tie_weights: bool = True) -> Layer:
    """A GPT language model in nanoGPT's layout (``model.py``) and initialisation.

    ids ``(N, T)`` -> ``wte``, a token ``embedding(vocab_size, dim)`` -> ``trunk``: ``wpe``, a learned
    ``positional_embedding(context)`` added, dropout, ``layers`` pre-LN transformer blocks
    (``h_0``, ``h_1``, ...; causal attention with ``heads`` heads, a 4x MLP with GELU), a final
    ``ln_f`` layer norm -> the output layer -> scores ``(N, T, vocab_size)`` for the next id at
    every position (``T <= context``).

    **Initialisation** (GPT-2's): every weight ``N(0, 0.02)``, biases zero, and the projections back
    into the residual stream ``N(0, 0.02 / sqrt(2 * layers))``, so that the residual stream's
    variance does not grow with depth.

    **Output layer:** with ``tie_weights`` (default, as GPT-2) it is the token embedding's table
    transposed (``combinators.tied_embedding``): no parameters of its own, and the table's
    gradient is the sum of its two uses. Without, an ``affine(vocab_size, flatten=False,
    bias=False)`` of its own (``lm_head``).

    **Uses:** ``{"key", "train"}`` with ``dropout > 0`` (after the embeddings, on the attention
    weights, after each residual branch), nothing otherwise.
    """
    vocab_size = _args.count("gpt", "vocab_size", vocab_size, 1)
    context = _args.count("gpt", "context", context, 1)
    layers = _args.count("gpt", "layers", layers, 1)
    if not isinstance(tie_weights, bool):
        raise TypeError(f"gpt: tie_weights must be True or False, got {tie_weights!r}")
    std, proj_std = 0.02, 0.02 / math.sqrt(2 * layers)
    trunk = sequential(("wpe", L.positional_embedding(context, W_init=std)),
                       *([("drop", L.dropout(dropout))] if dropout else []),
                       *[(f"h_{i}", transformer_block(dim, heads, dropout=dropout, std=std,
                                                      proj_std=proj_std)) for i in range(layers)],
                       ("ln_f", L.layer_norm()))
    wte = L.embedding(vocab_size, dim, W_init=std)
    if tie_weights:
        return tied_embedding(wte, trunk)
    return sequential(("wte", wte), ("trunk", trunk),
                      ("lm_head", L.affine(vocab_size, W_init=std, flatten=False, bias=False)))
