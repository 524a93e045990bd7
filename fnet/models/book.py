"""The first book's networks: ``TwoLayerNet`` (chapter 5), ``MultiLayerNet`` (chapter 6) and
``SimpleConvNet`` (chapter 7), each a ``sequential`` of public layers."""

from __future__ import annotations

from collections.abc import Sequence

from fnet import _args
from fnet import layers as L
from fnet.combinators import sequential
from fnet.core import Layer, output_shape


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
