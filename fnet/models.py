"""Ready-made networks from the book."""

from __future__ import annotations

from fnet import layers as L
from fnet.core import Layer, sequential


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
        ("Affine1", L.affine(hidden_size, W_init=weight_init_std, in_features=input_size)),
        ("Relu1", L.relu()),
        ("Affine2", L.affine(output_size, W_init=weight_init_std)),
    )


def book_names(params) -> dict:
    """``two_layer_net`` params by the book's names: ``{"W1", "b1", "W2", "b2"}``."""
    return {"W1": params["Affine1"]["W"], "b1": params["Affine1"]["b"],
            "W2": params["Affine2"]["W"], "b2": params["Affine2"]["b"]}
