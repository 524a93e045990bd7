"""fnet: neural-network layers with handwritten backward passes, in JAX.

Each layer is a pure pair ``forward(params, x) -> (y, cache)`` and
``backward(cache, dout) -> (dparams, dx)``; ``sequential`` composes them, and
``loss_and_grads`` runs forward -> loss -> backward. No automatic
differentiation is used anywhere in the library; the tests check every
handwritten rule against it.
"""

import sys

from fnet import data, gradcheck, graph, initializers, layers, losses, optim, schedules, shuffle
from fnet.combinators import parallel, residual, time_distributed
from fnet.core import Layer, Static, apply, output_shape, sequential
from fnet.data import DataError, load_fashion_mnist, load_mnist
from fnet.errors import ContextError, DTypeError, LayerError, ProtocolError, RangeError, ShapeError
from fnet.graph import draw, tape
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
from fnet.summary import summary

__version__ = "0.1.0"

# fnet.draw and fnet.tape were modules of their own before fnet.graph became a package;
# they stay importable by those names as the very same modules (one home, two spellings).
sys.modules.setdefault("fnet.draw", draw)
sys.modules.setdefault("fnet.tape", tape)


def __getattr__(name: str):
    if name == "init":  # the deprecated alias of fnet.initializers; importing it warns
        import fnet.init

        return fnet.init
    raise AttributeError(f"module 'fnet' has no attribute {name!r}")


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
    "draw",
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
    "tape",
    "time_distributed",
    "two_layer_net",
]
