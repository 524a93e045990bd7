"""Ready-made networks from the book (``book_names`` lives in ``fnet._trees`` and is re-exported here)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from fnet import _args
from fnet import layers as L
from fnet._trees import book_names
from fnet.combinators import residual, sequential, tied_embedding, time_distributed
from fnet.core import Layer, output_shape

__all__ = ["book_names", "gpt", "multi_layer_net", "resnet", "rnnlm", "sequence_classifier", "simple_convnet",
           "transformer_block", "two_layer_net"]


def two_layer_net(input_size: int, hidden_size: int, output_size: int,
                  weight_init_std: float = 0.01) -> Layer:
    """The book's ``TwoLayerNet``: Affine1 -> Relu1 -> Affine2 (softmax-with-loss outside).

    Parameters keep the book's layer names: ``params["Affine1"]["W"]`` is the
    book's ``W1`` (shape ``(input_size, hidden_size)``), ``params["Affine1"]["b"]``
    is ``b1``, and ``params["Affine2"]`` holds ``W2`` and ``b2``. Weights are
    ``weight_init_std * N(0, 1)``, biases zero, as in the book.

    ``init`` takes the input shape, e.g. ``(None, input_size)``; images
    ``(None, 28, 28)`` are flattened by the first affine layer.
    """
    return sequential(
        ("Affine1", L.affine(hidden_size, W_init=weight_init_std,
                             in_features=_args.count("two_layer_net", "input_size", input_size, 1))),
        ("Relu1", L.relu()),
        ("Affine2", L.affine(output_size, W_init=weight_init_std)),
    )


_ACTIVATIONS = {"relu": ("Relu", L.relu), "sigmoid": ("Sigmoid", L.sigmoid), "tanh": ("Tanh", L.tanh)}


def multi_layer_net(input_size: int, hidden_sizes: Sequence[int], output_size: int, *,
                    activation: str = "relu", weight_init: str | float | None = None,
                    use_dropout: bool = False, dropout_rate: float = 0.5,
                    use_batchnorm: bool = False) -> Layer:
    """The book's ``MultiLayerNet`` and ``MultiLayerNetExtend`` (chapter 6).

    For each hidden size ``h`` (``i = 1, 2, ...``): ``Affine{i}`` (``h`` units) ->
    ``BatchNorm{i}`` (if ``use_batchnorm``) -> ``Relu{i}`` / ``Sigmoid{i}`` /
    ``Tanh{i}`` -> ``Dropout{i}`` (if ``use_dropout``); then a final
    ``Affine{len(hidden_sizes) + 1}`` with ``output_size`` units (softmax-with-loss
    outside). The keys are the parameter keys: ``params["Affine1"]["W"]`` is the
    book's ``W1``, ``params["BatchNorm1"]["gamma"]`` its ``gamma1``.

    **Arguments:**

    - ``activation``: ``"relu"``, ``"sigmoid"`` or ``"tanh"``.
    - ``weight_init``: ``"he"`` (std ``sqrt(2 / fan_in)``), ``"xavier"``
      (``sqrt(1 / fan_in)``), the book's spellings ``"relu"`` and ``"sigmoid"``
      for those two, or a float std; used for every affine layer, biases zero.
      Default: He for ReLU, Xavier for sigmoid and tanh, as the book recommends
      (its own default argument is ``'relu'``, He, whatever the activation).
    - ``use_dropout``, ``dropout_rate``: dropout after each activation, with
      ``dropout_rate`` the probability of *dropping* (the book's ``dropout_ration``, sic).
    - ``use_batchnorm``: batch norm between each hidden affine and its activation
      (gamma ones, beta zeros, momentum 0.9).

    With dropout or batch norm the network needs ``train=True/False`` (and a
    ``key`` in training, ``state`` from ``net.init_state((None, input_size))``
    with batch norm). The book's weight decay (``weight_decay_lambda``) belongs
    to the optimizer, not to the network.
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"multi_layer_net: activation must be one of {sorted(_ACTIVATIONS)}, "
                         f"got {activation!r}")
    act_name, act = _ACTIVATIONS[activation]
    if weight_init is None:
        weight_init = "he" if activation == "relu" else "xavier"
    if isinstance(hidden_sizes, (str, bytes)) or not hasattr(hidden_sizes, "__iter__"):
        raise _args.ArgumentTypeError(f"multi_layer_net: hidden_sizes must be a sequence of sizes, e.g. "
                                      f"[100, 100] ([] for none), got {hidden_sizes!r}")
    hidden_sizes = [_args.count("multi_layer_net", "hidden_sizes", h, 1) for h in hidden_sizes]
    input_size = _args.count("multi_layer_net", "input_size", input_size, 1)
    use_dropout = _args.flag("multi_layer_net", "use_dropout", use_dropout)
    use_batchnorm = _args.flag("multi_layer_net", "use_batchnorm", use_batchnorm)
    dropout_rate = _args.interval("multi_layer_net", "dropout_rate", dropout_rate, 0, 1, closed=False,
                                  about="the probability of dropping")
    layers = []
    for i, size in enumerate(hidden_sizes, start=1):
        layers.append((f"Affine{i}", L.affine(size, W_init=weight_init,
                                              in_features=input_size if i == 1 else None)))
        if use_batchnorm:
            layers.append((f"BatchNorm{i}", L.batch_norm()))
        layers.append((f"{act_name}{i}", act()))
        if use_dropout:
            layers.append((f"Dropout{i}", L.dropout(dropout_rate)))
    last = len(hidden_sizes) + 1
    layers.append((f"Affine{last}", L.affine(output_size, W_init=weight_init,
                                             in_features=input_size if last == 1 else None)))
    return sequential(*layers)


_BOOK_CONV_NAMES = {"filter_num": "filters", "filter_size": "kernel_size", "pad": "padding"}


def simple_convnet(input_shape: tuple[int, int, int] = (28, 28, 1), conv: dict | None = None,
                   hidden_size: int = 100, output_size: int = 10,
                   weight_init_std: float | str = "he") -> Layer:
    """The book's ``SimpleConvNet`` (chapter 7), channels-last.

    ``Conv1`` (``conv2d``, default 30 filters 5x5, stride 1, no padding) ->
    ``Relu1`` -> ``Pool1`` (2x2 max pooling, stride 2) -> ``Affine1`` (``hidden_size``)
    -> ``Relu2`` -> ``Affine2`` (``output_size``; softmax-with-loss outside).

    **Shapes:** input ``(N, *input_shape)``, images ``(N, H, W, C)``: load
    MNIST as ``(N, 28, 28, 1)`` (the book's ``(N, 1, 28, 28)`` transposed).
    ``Affine1`` flattens the pooled ``(N, 12, 12, 30)`` itself, in NHWC order,
    so its ``W`` rows are not in the book's order.

    **Arguments:** ``conv``: ``dict(filters=30, kernel_size=5, stride=1,
    padding=0)``, any subset (the book's ``conv_param`` with ``filter_num``,
    ``filter_size``, ``pad``, ``stride``, renamed); ``weight_init_std``: ``"he"``
    (default: std ``sqrt(2 / fan_in)`` per layer, 0.28 for the 5x5 kernel, 0.022
    for ``Affine1``, 0.14 for ``Affine2``), ``"xavier"``, or one float std for all
    three layers, as the book's ``0.01`` (pass it to reproduce the book).

    **Why He by default:** on Fashion-MNIST it reached a higher test accuracy,
    sooner, than the book's 0.01, with plain SGD and with the book's Adam (the
    figures are in ``docs/speed.md``).
    """
    settings = {"filters": 30, "kernel_size": 5, "stride": 1, "padding": 0}
    if conv is not None and not isinstance(conv, dict):
        raise _args.ArgumentTypeError(f"simple_convnet: conv must be a dict such as dict(filters=30, "
                                      f"kernel_size=5), got {conv!r}")
    for k, v in (conv or {}).items():
        if k not in settings:
            hint = f" (the book's {k!r} is {_BOOK_CONV_NAMES[k]!r} here)" if k in _BOOK_CONV_NAMES else ""
            raise ValueError(f"simple_convnet: unknown conv setting {k!r}{hint}; use {sorted(settings)}")
        settings[k] = v
    if not (isinstance(input_shape, (tuple, list)) and len(input_shape) == 3):
        raise ValueError(f"simple_convnet: input_shape is one image's (H, W, C), e.g. (28, 28, 1); "
                         f"got {input_shape!r}")
    conv1 = L.conv2d(settings["filters"], settings["kernel_size"], settings["stride"], settings["padding"],
                     W_init=weight_init_std)
    pool1 = L.max_pool2d(2, stride=2)
    # The book computes pool_output_size by hand; here the layers compute it (and raise
    # now, naming Conv1 or Pool1, if the image is too small). Affine1 checks it at init.
    _, h, w, c = output_shape(sequential(("Conv1", conv1), ("Pool1", pool1)), (None, *input_shape))
    return sequential(
        ("Conv1", conv1),
        ("Relu1", L.relu()),
        ("Pool1", pool1),
        ("Affine1", L.affine(hidden_size, W_init=weight_init_std, in_features=h * w * c)),
        ("Relu2", L.relu()),
        ("Affine2", L.affine(output_size, W_init=weight_init_std)),
    )


def resnet(input_shape: tuple[int, int, int] = (28, 28, 1), widths: Sequence[int] = (16, 32, 64),
           blocks: Sequence[int] = (2, 2, 2), output_size: int = 10) -> Layer:
    """A small ResNet for small images: pre-activation basic blocks (He et al. 2016).

    **Structure** (channels-last, every convolution 3x3 with padding 1 unless said):

    - ``stem``: ``conv2d(widths[0], 3)``;
    - ``stage_1`` ... ``stage_S`` (one per width): ``blocks[s]`` residual blocks
      ``block_1``, ``block_2``, ...; each is ``residual(body, shortcut)`` with
      ``body = batch_norm -> relu -> conv2d(w, 3, stride) -> batch_norm -> relu ->
      conv2d(w, 3)``. The first block of every stage after the first halves the
      image (stride 2) and widens it, so its shortcut is a projection, a 1x1
      ``conv2d(w, 1, stride=2)``; every other shortcut is the identity, along
      which the gradient reaches the block's input untouched;
    - ``head``: ``batch_norm -> relu -> global_avg_pool2d -> affine(output_size)``
      (softmax-with-loss outside).

    The defaults, widths ``(16, 32, 64)`` and two blocks per stage, are the
    CIFAR ResNet of He et al. 2015 with 2 instead of 3 to 18 blocks per stage:
    14 weight layers, 174,778 parameters; 28x28 images become 28, 14, then 7 pixels a side.
    He initialisation for every convolution, Xavier for the last affine. The
    convolutions have no bias (``bias=False``): every path ends in a batch norm,
    which would subtract it again.

    **Shapes:** ``(N, H, W, C) -> (N, output_size)``. The net holds batch norm:
    it needs ``train=True/False`` and ``state`` from ``net.init_state``.
    """
    if not (isinstance(input_shape, (tuple, list)) and len(input_shape) == 3):
        raise ValueError(f"resnet: input_shape is one image's (H, W, C), e.g. (28, 28, 1); "
                         f"got {input_shape!r}")
    widths = _args.counts("resnet", "widths", widths, 1)
    blocks = _args.counts("resnet", "blocks", blocks, 1)
    if len(widths) != len(blocks):
        raise ValueError(f"resnet: widths {widths} and blocks {blocks} must have one entry per "
                         "stage each, so the same length")
    output_size = _args.count("resnet", "output_size", output_size, 1)
    stages = []
    for s, (width, n_blocks) in enumerate(zip(widths, blocks, strict=True)):
        units = []
        for b in range(n_blocks):
            stride = 2 if s > 0 and b == 0 else 1
            body = sequential(L.batch_norm(), L.relu(), L.conv2d(width, 3, stride, padding=1, bias=False),
                              L.batch_norm(), L.relu(), L.conv2d(width, 3, padding=1, bias=False))
            shortcut = L.conv2d(width, 1, stride, bias=False) if stride != 1 else None
            units.append((f"block_{b + 1}", residual(body, shortcut)))
        stages.append((f"stage_{s + 1}", sequential(*units)))
    net = sequential(("stem", L.conv2d(widths[0], 3, padding=1, bias=False)), *stages,
                     ("head", sequential(L.batch_norm(), L.relu(), L.global_avg_pool2d(),
                                         L.affine(output_size, W_init="xavier"))))
    output_shape(net, (None, *input_shape))  # too small an image raises now, naming the layer
    return net


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
