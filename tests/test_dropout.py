"""fnet.layers.dropout: evaluation is the identity, training drops `rate` and scales the
survivors, and a missing key or mode is an error naming the layer.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import rand

import fnet
from fnet import layers as L
from fnet.errors import ContextError


def test_dropout_eval_is_identity_and_needs_no_key():
    layer = L.dropout(0.5)
    x = rand((3, 4))
    y, cache, _ = fnet.apply(layer, {}, x, train=False)
    np.testing.assert_array_equal(y, x)
    _, dx = layer.backward(cache, x)
    np.testing.assert_array_equal(dx, x)


def test_dropout_training_drops_rate_and_scales_survivors():
    rate = 0.3
    layer = L.dropout(rate)
    x = jnp.ones((200, 500), jnp.float32)
    y, mask, _ = fnet.apply(layer, {}, x, key=jax.random.key(7), train=True)
    dropped = float(jnp.mean(y == 0))
    assert abs(dropped - rate) < 0.01  # 100,000 draws: the standard deviation is 0.0015
    np.testing.assert_allclose(np.unique(np.asarray(y)), [0.0, 1 / (1 - rate)], rtol=1e-6)
    assert y.dtype == mask.dtype == jnp.float32
    # the same key gives the same mask; another key another one
    y2, _, _ = fnet.apply(layer, {}, x, key=jax.random.key(7), train=True)
    y3, _, _ = fnet.apply(layer, {}, x, key=jax.random.key(8), train=True)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(y, y3)


def test_dropout_errors_name_the_layer():
    layer = L.dropout(0.5)
    with pytest.raises(ContextError, match=r"^dropout: needs a random key"):
        layer.forward({}, jnp.ones((2, 3)), key=None, train=True)
    with pytest.raises(ContextError, match=r"^dropout: .*pass train=True or train=False"):
        layer.forward({}, jnp.ones((2, 3)), key=jax.random.key(0), train=None)
    with pytest.raises(ValueError, match=r"dropout: .*pass train=True or train=False"):
        fnet.apply(layer, {}, jnp.ones((2, 3)), key=jax.random.key(0))
    for rate in (1.0, -0.1, 1.5, "0.5", True):
        with pytest.raises(ValueError, match=r"dropout: rate is the probability of dropping .*\[0, 1\)"):
            L.dropout(rate)


def test_traced_mode_is_an_error_naming_the_layer():
    layer = L.dropout(0.5)
    with pytest.raises(ContextError, match=r"^dropout: train must be a Python bool.*static"):
        jax.jit(lambda t: layer.forward({}, jnp.ones(3), key=jax.random.key(0), train=t))(True)


def test_missing_key_inside_sequential_names_the_path():
    net = fnet.sequential(("Affine1", L.affine(3)), ("Dropout1", L.dropout(0.5)))
    params, _ = net.init(jax.random.key(0), (None, 4))
    with pytest.raises(ContextError, match=r"^Dropout1 \(dropout\): needs a random key"):
        fnet.apply(net, params, jnp.ones((2, 4)), train=True)
