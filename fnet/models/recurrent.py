"""Recurrent networks: a sequence classifier and the second book's ``Rnnlm`` (chapter 6)."""

from __future__ import annotations

from collections.abc import Sequence

from fnet import _args
from fnet import layers as L
from fnet.combinators import sequential, time_distributed
from fnet.core import Layer

RECURRENT_CELLS = {"rnn": L.rnn, "lstm": L.lstm, "gru": L.gru}


def sequence_classifier(cell: str = "lstm", hidden: int | Sequence[int] = 128,
                        output_size: int = 10) -> Layer:
    """Recurrent layers over a sequence, then an affine on the last hidden state.

    For Fashion-MNIST read row by row (``fnet-train --model lstm``), each image
    ``(28, 28)`` is a sequence of 28 steps of 28 pixels: ``(N, T, D) -> (N,
    output_size)``. ``cell``: ``"rnn"``, ``"lstm"`` or ``"gru"``; ``hidden``: the
    hidden size, or one size per stacked layer (every layer but the last returns
    its whole sequence to the next). Keys: ``lstm_0``, ``lstm_1``, ..., ``affine_0``.
    """
    if cell not in RECURRENT_CELLS:
        raise ValueError(f"sequence_classifier: cell must be one of {sorted(RECURRENT_CELLS)}, got {cell!r}")
    iterable = hasattr(hidden, "__iter__") and not isinstance(hidden, (str, bytes))
    sizes = list(hidden) if iterable else [hidden]
    if not sizes:
        raise ValueError("sequence_classifier: hidden needs at least one size")
    sizes = [_args.count("sequence_classifier", "hidden", h, 1) for h in sizes]
    make = RECURRENT_CELLS[cell]
    stack = [make(h, return_sequences=i < len(sizes) - 1) for i, h in enumerate(sizes)]
    return sequential(*stack, L.affine(_args.count("sequence_classifier", "output_size", output_size, 1)))


def rnnlm(vocab_size: int, wordvec_size: int = 64, hidden_size: int = 256, *, layers: int = 1,
          dropout: float = 0.0, stateful: bool = True, cell: str = "lstm") -> Layer:
    """The book's sequel's ``Rnnlm`` (``BetterRnnlm`` with ``layers=2`` and dropout): a language model.

    ``embedding(vocab_size, wordvec_size)`` -> ``layers`` recurrent layers of ``hidden_size`` (``cell``:
    ``"lstm"``, ``"gru"`` or ``"rnn"``; with ``dropout`` between them and before the output, when >
    0) -> ``affine(vocab_size)`` on every position: ids ``(N, T)`` -> scores ``(N, T,
    vocab_size)`` for the next id at every step. ``stateful``: the recurrent layers carry their
    state between calls (truncated BPTT); ``stateful=False`` starts every call from zeros, as
    ``fnet.language_model``'s training on random windows needs.
    """
    layers = _args.count("rnnlm", "layers", layers, 1)
    if cell not in RECURRENT_CELLS:
        raise ValueError(f"rnnlm: cell must be one of {sorted(RECURRENT_CELLS)}, got {cell!r}")
    parts: list[Layer] = [L.embedding(vocab_size, wordvec_size)]
    for _ in range(layers):
        parts.append(RECURRENT_CELLS[cell](hidden_size, stateful=stateful))
        if dropout:
            parts.append(L.dropout(dropout))
    return sequential(*parts, time_distributed(L.affine(vocab_size)))
