"""fnet: neural-network layers with handwritten backward passes, in JAX.

Each layer is a pure pair ``forward(params, x) -> (y, cache)`` and
``backward(cache, dout) -> (dparams, dx)``; the combinators (``sequential``,
``residual``, ``parallel``, ``time_distributed``) compose them, and
``loss_and_grads`` runs forward -> loss -> backward; ``tied_embedding`` ties a language
model's output layer to its input embedding. No automatic
differentiation is used anywhere in the library; the tests check every
handwritten rule against it.

The training wing and the command line (``fnet.train``, ``fnet.checkpoint``,
``fnet.distributed``, ``fnet.language_model``, ``fnet.cli``) are attributes too, imported
on first use, so that ``import fnet`` stays quick.
"""

import importlib

from fnet import data, gradcheck, graph, initializers, layers, losses, optim, schedules, shuffle, views
from fnet.combinators import parallel, residual, sequential, tied_embedding, time_distributed
from fnet.core import Layer, Static, apply, output_shape
from fnet.data import DataError, load_fashion_mnist, load_mnist
from fnet.errors import ContextError, DTypeError, LayerError, ProtocolError, RangeError, ShapeError
from fnet.losses import Loss
from fnet.models import (
    book_names,
    multi_layer_net,
    resnet,
    sequence_classifier,
    simple_convnet,
    two_layer_net,
)
from fnet.net import accuracy, accuracy_of, loss_and_grads, predict
from fnet.optim import Optimizer
from fnet.views import draw_network, summary

__version__ = "0.1.0"

_ON_FIRST_USE = ("checkpoint", "cli", "distributed", "language_model", "metrics", "train")
"""Subpackages reachable as attributes (``fnet.train``) and imported when first used."""


def __getattr__(name: str):
    if name in _ON_FIRST_USE:
        return importlib.import_module(f"fnet.{name}")
    raise AttributeError(f"module 'fnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_ON_FIRST_USE})


__all__ = [
    "ContextError",
    "DTypeError",
    "DataError",
    "Layer",
    "LayerError",
    "Loss",
    "Optimizer",
    "ProtocolError",
    "RangeError",
    "ShapeError",
    "Static",
    "accuracy",
    "accuracy_of",
    "apply",
    "book_names",
    "data",
    "draw_network",
    "gradcheck",
    "graph",
    "initializers",
    "layers",
    "load_fashion_mnist",
    "load_mnist",
    "loss_and_grads",
    "losses",
    "multi_layer_net",
    "optim",
    "output_shape",
    "parallel",
    "predict",
    "residual",
    "resnet",
    "schedules",
    "sequence_classifier",
    "sequential",
    "shuffle",
    "simple_convnet",
    "summary",
    "tied_embedding",
    "time_distributed",
    "two_layer_net",
    "views",
]
