"""fnet.layers.shape: flatten keeps the batch axis and gives dx the input's shape."""

import jax
from harness import run_layer

from fnet import layers as L


def test_flatten():
    x = jax.random.normal(jax.random.key(2), (2, 3, 4))
    _, y, _, dx = run_layer(L.flatten(), x)
    assert y.shape == (2, 12) and dx.shape == (2, 3, 4)
