"""fnet.layers.affine: values, N-D inputs, shape errors, constructor errors, initialisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import run_layer

from fnet import layers as L


def test_affine_values_and_nd_input():
    x = jax.random.normal(jax.random.key(1), (3, 2, 4, 5))
    params, y, dparams, dx = run_layer(L.affine(7), x)
    W, b = params["W"], params["b"]
    assert W.shape == (40, 7)
    np.testing.assert_allclose(y, x.reshape(3, 40) @ W + b, rtol=1e-6)
    np.testing.assert_allclose(dparams["W"], x.reshape(3, 40).T @ jnp.ones((3, 7)), rtol=1e-6)
    np.testing.assert_allclose(dparams["b"], jnp.full(7, 3.0))
    assert dx.shape == x.shape


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
