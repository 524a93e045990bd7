"""Layers: constructors that return ``fnet.Layer`` records.

Every layer's docstring states its shapes, what its cache holds and its derivative.
"""

from fnet.layers.activations import identity, relu, sigmoid, softmax, tanh
from fnet.layers.affine import affine
from fnet.layers.shape import flatten

__all__ = ["affine", "flatten", "identity", "relu", "sigmoid", "softmax", "tanh"]
