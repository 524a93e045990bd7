"""fnet.layers.activations: ReLU's choice at 0 and its mask, a sigmoid that does not overflow,
a stable softmax, tanh and identity. Gradients against autodiff: test_gradients.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import run_layer

from fnet import layers as L


def test_relu_derivative_is_zero_at_zero():
    x = jnp.array([[-1.0, 0.0, 2.0]])
    _, y, _, dx = run_layer(L.relu(), x)
    assert y.tolist() == [[0.0, 0.0, 2.0]]
    assert dx.tolist() == [[0.0, 0.0, 1.0]]


def test_relu_cache_is_a_mask_not_the_input():
    _, cache = L.relu().forward({}, jnp.ones((2, 3)))
    assert cache.dtype == jnp.bool_


@pytest.mark.parametrize("x", [1000.0, -1000.0, 88.8, -88.8, 0.0])
def test_sigmoid_does_not_overflow(x):
    xs = jnp.full((1, 2), x, jnp.float32)
    _, y, _, dx = run_layer(L.sigmoid(), xs)
    assert jnp.all(jnp.isfinite(y)) and jnp.all(jnp.isfinite(dx))
    np.testing.assert_allclose(y, 0.5 * (1 + np.tanh(np.float64(x) / 2)), rtol=1e-6, atol=1e-30)


def test_sigmoid_derivative():
    x = jnp.array([[0.0, 2.0, -3.0]])
    _, y, _, dx = run_layer(L.sigmoid(), x)
    np.testing.assert_allclose(dx, y * (1 - y), rtol=1e-6)
    assert float(dx[0, 0]) == pytest.approx(0.25)


def test_softmax_is_stable_and_normalised():
    x = jnp.array([[1000.0, 1000.0, -1000.0], [-1000.0, -1000.0, -1000.0]])
    _, y, _, dx = run_layer(L.softmax(), x, dout=jnp.array([[1.0, 0, 0], [0, 1.0, 0]]))
    np.testing.assert_allclose(y, [[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    assert jnp.all(jnp.isfinite(dx))
    np.testing.assert_allclose(dx.sum(axis=-1), 0.0, atol=1e-7)  # softmax outputs sum to a constant


def test_tanh_and_identity():
    x = jax.random.normal(jax.random.key(2), (2, 3, 4))
    _, y, _, dx = run_layer(L.tanh(), x)
    np.testing.assert_allclose(dx, 1 - jnp.tanh(x) ** 2, rtol=1e-6)
    _, y, _, dx = run_layer(L.identity(), x)
    assert jnp.array_equal(y, x) and jnp.array_equal(dx, jnp.ones_like(x))
