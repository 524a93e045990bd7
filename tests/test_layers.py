"""Layer values, numerics at the extremes, derivative conventions and error messages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnet
from fnet import layers as L


def _run(layer, x, dout=None):
    params, _ = layer.init(jax.random.key(0), (None, *x.shape[1:]))
    y, cache = layer.forward(params, x)
    dparams, dx = layer.backward(cache, jnp.ones_like(y) if dout is None else dout)
    return params, y, dparams, dx


def test_affine_values_and_nd_input():
    x = jax.random.normal(jax.random.key(1), (3, 2, 4, 5))
    params, y, dparams, dx = _run(L.affine(7), x)
    W, b = params["W"], params["b"]
    assert W.shape == (40, 7)
    np.testing.assert_allclose(y, x.reshape(3, 40) @ W + b, rtol=1e-6)
    np.testing.assert_allclose(dparams["W"], x.reshape(3, 40).T @ jnp.ones((3, 7)), rtol=1e-6)
    np.testing.assert_allclose(dparams["b"], jnp.full(7, 3.0))
    assert dx.shape == x.shape


def test_relu_derivative_is_zero_at_zero():
    x = jnp.array([[-1.0, 0.0, 2.0]])
    _, y, _, dx = _run(L.relu(), x)
    assert y.tolist() == [[0.0, 0.0, 2.0]]
    assert dx.tolist() == [[0.0, 0.0, 1.0]]


def test_relu_cache_is_a_mask_not_the_input():
    _, cache = L.relu().forward({}, jnp.ones((2, 3)))
    assert cache.dtype == jnp.bool_


@pytest.mark.parametrize("x", [1000.0, -1000.0, 88.8, -88.8, 0.0])
def test_sigmoid_does_not_overflow(x):
    xs = jnp.full((1, 2), x, jnp.float32)
    _, y, _, dx = _run(L.sigmoid(), xs)
    assert jnp.all(jnp.isfinite(y)) and jnp.all(jnp.isfinite(dx))
    np.testing.assert_allclose(y, 0.5 * (1 + np.tanh(np.float64(x) / 2)), rtol=1e-6, atol=1e-30)


def test_sigmoid_derivative():
    x = jnp.array([[0.0, 2.0, -3.0]])
    _, y, _, dx = _run(L.sigmoid(), x)
    np.testing.assert_allclose(dx, y * (1 - y), rtol=1e-6)
    assert float(dx[0, 0]) == pytest.approx(0.25)


def test_softmax_is_stable_and_normalised():
    x = jnp.array([[1000.0, 1000.0, -1000.0], [-1000.0, -1000.0, -1000.0]])
    _, y, _, dx = _run(L.softmax(), x, dout=jnp.array([[1.0, 0, 0], [0, 1.0, 0]]))
    np.testing.assert_allclose(y, [[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    assert jnp.all(jnp.isfinite(dx))
    np.testing.assert_allclose(dx.sum(axis=-1), 0.0, atol=1e-7)  # softmax outputs sum to a constant


def test_tanh_identity_flatten():
    x = jax.random.normal(jax.random.key(2), (2, 3, 4))
    _, y, _, dx = _run(L.tanh(), x)
    np.testing.assert_allclose(dx, 1 - jnp.tanh(x) ** 2, rtol=1e-6)
    _, y, _, dx = _run(L.identity(), x)
    assert jnp.array_equal(y, x) and jnp.array_equal(dx, jnp.ones_like(x))
    _, y, _, dx = _run(L.flatten(), x)
    assert y.shape == (2, 12) and dx.shape == (2, 3, 4)


def test_affine_wrong_feature_size():
    params, _ = L.affine(5).init(jax.random.key(0), (None, 784))
    with pytest.raises(ValueError, match=r"^affine: input of shape \(100, 28, 27\) has 756 features per "
                                         r"example, but W has shape \(784, 5\) and expects 784"):
        L.affine(5).forward(params, jnp.ones((100, 28, 27)))


def test_affine_wrong_rank_says_add_a_batch_axis():
    params, _ = L.affine(5).init(jax.random.key(0), (None, 784))
    with pytest.raises(ValueError, match=r"expected an input of shape \(N, features...\) .* got shape "
                                         r"\(784,\)\. Add a batch axis, e.g. x\[None\]"):
        L.affine(5).forward(params, jnp.ones(784))


@pytest.mark.parametrize("layer", [L.affine(5), L.relu(), L.sigmoid(), L.softmax(), L.flatten()],
                         ids=lambda layer: layer.name)
def test_integer_images_are_rejected(layer):
    params, _ = layer.init(jax.random.key(0), (None, 784))
    with pytest.raises(TypeError, match=r"input has dtype uint8, but layers compute in floating point.*"
                                        r"x.astype\(jnp.float32\) / 255.0"):
        layer.forward(params, jnp.ones((2, 784), jnp.uint8))


def test_affine_constructor_errors():
    with pytest.raises(ValueError, match="out_features must be a positive int, got 0"):
        L.affine(0)
    with pytest.raises(ValueError, match="unknown initializer 'glorot'"):
        L.affine(3, W_init="glorot")
    with pytest.raises(ValueError, match=r"built for 784 input features, but init got input shape "
                                         r"\(N, 28, 27\) with 756"):
        L.affine(3, in_features=784).init(jax.random.key(0), (None, 28, 27))


@pytest.mark.parametrize("spec,std", [(0.01, 0.01), ("he", np.sqrt(2 / 400)), ("xavier", np.sqrt(1 / 400))])
def test_weight_init_scale(spec, std):
    params, _ = L.affine(500, W_init=spec).init(jax.random.key(0), (None, 400))
    assert float(jnp.std(params["W"])) == pytest.approx(std, rel=0.02)
    assert jnp.all(params["b"] == 0)


def test_errors_are_value_and_type_errors():
    assert issubclass(fnet.ShapeError, ValueError) and issubclass(fnet.DTypeError, TypeError)
