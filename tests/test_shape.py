"""fnet.layers.shape: flatten keeps the batch axis and gives dx the input's shape."""

import jax
import jax.numpy as jnp

from fnet import layers as L


def _run(layer, x, dout=None):
    params, _ = layer.init(jax.random.key(0), (None, *x.shape[1:]))
    y, cache = layer.forward(params, x)
    dparams, dx = layer.backward(cache, jnp.ones_like(y) if dout is None else dout)
    return params, y, dparams, dx


def test_flatten():
    x = jax.random.normal(jax.random.key(2), (2, 3, 4))
    _, y, _, dx = _run(L.flatten(), x)
    assert y.shape == (2, 12) and dx.shape == (2, 3, 4)
