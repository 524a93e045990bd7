"""fnet.layers._checks and fnet.errors: what every layer rejects, and the error types."""

import jax
import jax.numpy as jnp
import pytest

import fnet
from fnet import layers as L


@pytest.mark.parametrize("layer", [L.affine(5), L.relu(), L.sigmoid(), L.softmax(), L.flatten()],
                         ids=lambda layer: layer.name)
def test_integer_images_are_rejected(layer):
    params, _ = layer.init(jax.random.key(0), (None, 784))
    with pytest.raises(TypeError, match=r"input has dtype uint8, but layers compute in floating point.*"
                                        r"x.astype\(jnp.float32\) / 255.0"):
        layer.forward(params, jnp.ones((2, 784), jnp.uint8))


def test_errors_are_value_and_type_errors():
    assert issubclass(fnet.ShapeError, ValueError) and issubclass(fnet.DTypeError, TypeError)
