"""fnet-train's models: which ones there are, what data layout each reads, and the training
defaults each brings (``MODEL_DEFAULTS``); used by ``fnet.cli.options`` and the scripts."""

from __future__ import annotations

import argparse

MODELS = ("two_layer", "mlp", "convnet", "resnet", "rnn", "lstm", "gru")
NET_INPUTS = ("image", "flat", "rows")
"""The layouts a network of ``--net`` may read: images ``(N, 28, 28, 1)``, flat vectors ``(N, 784)``,
rows ``(N, 28, 28)``."""
IMAGE_MODELS = ("convnet", "resnet")
"""The models that read images ``(N, 28, 28, 1)``."""
SEQUENCE_MODELS = ("rnn", "lstm", "gru")
"""The models that read each image as a sequence of 28 rows of 28 pixels, ``(N, 28, 28)``; the
others (two_layer, mlp) read flattened vectors ``(N, 784)``."""
DEFAULT_LR = {"sgd": 0.1}  # the book's chapter-5 run; other optimizers use their own defaults

BOOK_DEFAULTS = {"optimizer": "sgd", "lr": None, "weight_decay": 0.0, "schedule": "constant", "warmup": None,
                 "clip_norm": None, "label_smoothing": 0.0, "batch_size": 100, "iters": 10000,
                 "no_eval_train": False}
"""The training options' defaults: the book's chapter-5 run (``lr`` None: ``DEFAULT_LR`` or the
optimizer's own)."""
_SEQUENCE_RUN = {"optimizer": "adam", "lr": 2e-3, "schedule": "cosine", "clip_norm": 5.0, "batch_size": 100,
                 "epochs": 10}
MODEL_DEFAULTS = {
    "resnet": {"optimizer": "nesterov", "lr": 0.1, "weight_decay": 5e-4, "schedule": "cosine", "warmup": 400,
               "batch_size": 128, "epochs": 18, "no_eval_train": True},
    **{m: _SEQUENCE_RUN for m in SEQUENCE_MODELS},
}
"""Where a model trains best with another recipe than the book's, within about 30 minutes on
two cores (resnet: 18 epochs, 28 minutes on the 2-core Xeon VM of 2026-12-04; README
"Results"): each option not given on the command line takes the model's value, then the
book's. An ``lr`` here goes with the model's optimizer: ``--optimizer`` alone gives that
optimizer's default rate, and a recipe's warmup longer than a (short) run becomes a tenth of
it. Recorded runs: README "Results"."""


def recipe_text(defaults: dict) -> str:
    """A model's training defaults as the options that give them (``--optimizer nesterov --lr 0.1 ...``)."""
    parts = [f"--{k.replace('_', '-')} {v:g}" if isinstance(v, float) else f"--{k.replace('_', '-')} {v}"
             for k, v in defaults.items() if k != "no_eval_train"]
    return " ".join(parts + (["--no-eval-train"] if defaults.get("no_eval_train") else []))


def apply_model_defaults(a: argparse.Namespace) -> None:
    """Fill the training options not given with ``MODEL_DEFAULTS[a.model]``, then ``BOOK_DEFAULTS``
    (a network of ``--net`` gets the book's)."""
    own = MODEL_DEFAULTS.get(a.model, {})
    optimizer_given = a.optimizer is not None
    a.from_model = []  # the options the model's recipe filled in (not saved in the config)
    for k, book in BOOK_DEFAULTS.items():
        if k == "iters" or getattr(a, k) is not None:
            continue
        if k == "lr" and optimizer_given:  # the model's rate goes with the model's optimizer
            continue
        setattr(a, k, own.get(k, book))
        if k in own:
            a.from_model.append(k)
    if a.epochs is None and a.iters is None:
        if "epochs" in own:
            a.epochs = own["epochs"]
        else:
            a.iters = BOOK_DEFAULTS["iters"]


def build_model(model: str, example_shape: tuple[int, ...], n_classes: int, *,
                hidden: list[int] | None = None, activation: str | None = None,
                weight_init: str | None = None, dropout: float | None = None, batchnorm: bool = False,
                widths: list[int] | None = None, blocks: list[int] | None = None):
    """The network the model options describe (``--model``, ``--hidden``, ...), and its input shape.

    ``example_shape``: one example's shape from the data (``(784,)``, or ``(28, 28, 1)``
    for the convnet); ``n_classes``: the dataset's number of classes. Shared by
    ``fnet-train`` and ``scripts/gradient_check.py``. ``weight_init`` is the option's
    text: ``"he"``, ``"xavier"`` or a standard deviation; every model but resnet honours
    it. ``widths`` and ``blocks``: resnet's stages (defaults those of ``fnet.resnet``).
    """
    import math

    from fnet import models

    n_features = math.prod(example_shape)

    if weight_init is not None and weight_init not in ("he", "xavier"):
        weight_init = float(weight_init)
    if model == "two_layer":
        std = 0.01 if weight_init is None else weight_init
        net = models.two_layer_net(n_features, hidden[0] if hidden else 50, n_classes, weight_init_std=std)
        return net, (None, n_features)
    if model == "mlp":
        kwargs = {"activation": activation or "relu", "use_batchnorm": batchnorm,
                  "use_dropout": dropout is not None}
        if dropout is not None:
            kwargs["dropout_rate"] = dropout
        if weight_init is not None:
            kwargs["weight_init"] = weight_init
        net = models.multi_layer_net(n_features, hidden or [100, 100], n_classes, **kwargs)
        return net, (None, n_features)
    if model in SEQUENCE_MODELS:
        net = models.sequence_classifier(model, hidden=tuple(hidden or [128]), output_size=n_classes)
        return net, (None, *example_shape)
    if model == "resnet":
        default_widths, default_blocks = resnet_defaults()
        net = models.resnet(tuple(example_shape), widths=tuple(widths or default_widths),
                            blocks=tuple(blocks or default_blocks), output_size=n_classes)
        return net, (None, *example_shape)
    net = models.simple_convnet(tuple(example_shape), output_size=n_classes,
                                weight_init_std="he" if weight_init is None else weight_init)
    return net, (None, *example_shape)


def build_network(options, example_shape: tuple[int, ...], n_classes: int):
    """The network the options describe (``--model`` and its options, or ``--net``), from the parsed
    options or a checkpoint's saved config (a mapping): ``(net, input_shape)``."""
    get = options.get if isinstance(options, dict) else lambda k, default=None: getattr(options, k, default)
    if get("model") == "net":
        return user_net(get("net"), example_shape, n_classes)
    return build_model(get("model"), example_shape, n_classes, hidden=get("hidden"),
                       activation=get("activation"), weight_init=get("weight_init"), dropout=get("dropout"),
                       batchnorm=bool(get("batchnorm")), widths=get("widths"), blocks=get("blocks"))


def model_input(model: str, x, net_input: str = "image"):
    """Images ``x: (N, 28, 28, 1)`` as ``model`` reads them: as they are (image models), rows
    ``(N, 28, 28)`` (sequence models) or flat vectors ``(N, 784)`` (two_layer, mlp); for ``"net"``
    (``--net``), as ``net_input`` says."""
    if model == "net":
        layout = net_input
    else:
        layout = "image" if model in IMAGE_MODELS else "rows" if model in SEQUENCE_MODELS else "flat"
    if layout == "image":
        return x
    return x.reshape(len(x), x.shape[1], -1) if layout == "rows" else x.reshape(len(x), -1)


def user_net(spec: str, example_shape: tuple, n_classes: int):
    """The network of ``--net MODULE:FUNCTION``: ``FUNCTION()`` of ``MODULE`` (imported with the current
    directory first on the path), checked to be a ``Layer`` that gives ``n_classes`` scores per
    example of ``example_shape``; and its input shape. **Raises:** ``ValueError`` saying what is wrong."""
    import importlib
    import os
    import sys

    from fnet.core import Layer, output_shape

    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name.isidentifier():
        raise ValueError(f"--net {spec}: expected MODULE:FUNCTION, e.g. mynets:small_cnn (mynets.py in the "
                         "current directory, def small_cnn() returning an fnet Layer)")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"--net {spec}: cannot import {module_name}: {e}") from None
    finally:
        sys.path.remove(os.getcwd())
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"--net {spec}: {module_name} has no function {name}")
    net = fn()
    if not isinstance(net, Layer):
        raise ValueError(f"--net {spec}: {name}() returned {type(net).__name__}, not an fnet Layer")
    input_shape = (None, *example_shape)
    try:
        out = output_shape(net, input_shape)
    except Exception as e:
        raise ValueError(f"--net {spec}: the network does not take examples of shape {tuple(example_shape)} "
                         f"(--net-input): {e}") from None
    if len(out) != 2 or out[1] != n_classes:
        raise ValueError(f"--net {spec}: the network gives outputs of shape {out}, but the data have "
                         f"{n_classes} classes: it must give (N, {n_classes}) scores")
    return net, input_shape


def resnet_defaults() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``fnet.resnet``'s default ``(widths, blocks)``, read from its signature (one home for them)."""
    import inspect

    from fnet import models

    params = inspect.signature(models.resnet).parameters
    return params["widths"].default, params["blocks"].default


def used_model_options(a: argparse.Namespace) -> tuple[list[int] | None, str | None, str | None]:
    """``(hidden, activation, weight_init)`` as ``build_model`` uses them, defaults filled in
    (and, for resnet, ``a.widths`` and ``a.blocks``); ``None`` for ``--net``."""
    if a.model == "net":
        return None, None, None
    if a.model == "two_layer":
        return a.hidden or [50], None, a.weight_init or "0.01"
    if a.model == "mlp":
        activation = a.activation or "relu"
        default = "he" if activation == "relu" else "xavier"
        return a.hidden or [100, 100], activation, a.weight_init or default
    if a.model == "resnet":
        default_widths, default_blocks = resnet_defaults()
        a.widths, a.blocks = a.widths or list(default_widths), a.blocks or list(default_blocks)
        return None, None, None
    if a.model in SEQUENCE_MODELS:
        return a.hidden or [128], None, None
    return None, None, a.weight_init or "he"
