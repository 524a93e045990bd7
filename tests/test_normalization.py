"""fnet.layers.normalization: batch norm's batch and running statistics, its errors,
and layer norm.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import init_params, rand

import fnet
from fnet import layers as L
from fnet.errors import ContextError, ShapeError


def test_batch_norm_training_normalizes_per_channel_and_updates_running_stats():
    layer = L.batch_norm(momentum=0.8)
    x = 3.0 + 2.0 * rand((4, 3, 5, 2))  # NHWC: statistics over N, H, W per channel
    params = {"gamma": jnp.array([1.0, 2.0]), "beta": jnp.array([0.0, -1.0])}
    state = {"mean": jnp.array([0.5, -0.5]), "var": jnp.array([2.0, 0.5])}
    y, _, new_state = fnet.apply(layer, params, x, train=True, state=state)

    xn = np.asarray(x).reshape(-1, 2)
    mean, var = xn.mean(axis=0), xn.var(axis=0)  # biased variance, as the book
    want = (xn - mean) / np.sqrt(var + 1e-5) * [1.0, 2.0] + [0.0, -1.0]
    np.testing.assert_allclose(np.asarray(y).reshape(-1, 2), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(new_state["mean"], 0.8 * np.array([0.5, -0.5]) + 0.2 * mean, rtol=1e-12)
    np.testing.assert_allclose(new_state["var"], 0.8 * np.array([2.0, 0.5]) + 0.2 * var, rtol=1e-12)
    np.testing.assert_array_equal(state["mean"], [0.5, -0.5])  # purely: the input state is unchanged


def test_batch_norm_eval_uses_running_stats_and_keeps_them():
    layer = L.batch_norm()
    x = rand((3, 4))
    params = {"gamma": jnp.array([1.0, 2.0, 0.5, 1.0]), "beta": jnp.array([0.0, 1.0, 0.0, -2.0])}
    state = {"mean": jnp.array([0.1, -0.2, 0.3, 0.0]), "var": jnp.array([1.0, 4.0, 0.25, 2.0])}
    y, _, new_state = fnet.apply(layer, params, x, train=False, state=state)
    want = ((np.asarray(x) - state["mean"]) / np.sqrt(np.asarray(state["var"]) + 1e-5)
            * np.asarray(params["gamma"]) + np.asarray(params["beta"]))
    np.testing.assert_allclose(y, want, rtol=1e-12)
    assert new_state is state
    # evaluation on one example works (training on one value per channel does not)
    y1, _, _ = fnet.apply(layer, params, x[:1], train=False, state=state)
    np.testing.assert_allclose(y1, want[:1], rtol=1e-12)


def test_batch_norm_initial_state_and_params():
    layer = L.batch_norm()
    params, out = layer.init(jax.random.key(0), (None, 6, 6, 3))
    state = layer.init_state((None, 6, 6, 3))
    assert out == (None, 6, 6, 3)
    np.testing.assert_array_equal(params["gamma"], np.ones(3))
    np.testing.assert_array_equal(params["beta"], np.zeros(3))
    np.testing.assert_array_equal(state["mean"], np.zeros(3))
    np.testing.assert_array_equal(state["var"], np.ones(3))
    assert {a.dtype for a in jax.tree.leaves((params, state))} == {jnp.dtype(jnp.float32)}


def test_batch_norm_errors():
    layer = L.batch_norm()
    params = init_params(layer, (4, 3), jnp.float32)
    state = layer.init_state((None, 3))
    with pytest.raises(ShapeError, match=r"^batch_norm: training needs more than one value per feature"
                                         r".*\(1, 3\)"):
        fnet.apply(layer, params, jnp.ones((1, 3)), train=True, state=state)
    with pytest.raises(ShapeError, match=r"^batch_norm: input of shape \(2, 5\) has 5 features.*\(3,\)"):
        fnet.apply(layer, params, jnp.ones((2, 5)), train=True, state=state)
    with pytest.raises(ShapeError, match=r"^batch_norm: state must be"):
        fnet.apply(layer, params, jnp.ones((2, 3)), train=True, state={"mean": jnp.zeros(3)})
    with pytest.raises(ContextError, match=r"^batch_norm: needs its running statistics"):
        layer.forward(params, jnp.ones((2, 3)), train=True, state=None)
    with pytest.raises(ValueError, match=r"batch_norm: momentum must be in \[0, 1\]"):
        L.batch_norm(momentum=1.5)
    with pytest.raises(ValueError, match=r"batch_norm: eps must be a positive number"):
        L.batch_norm(eps=0)


def test_layer_norm_normalizes_each_example():
    layer = L.layer_norm()
    x = 5.0 + 3.0 * rand((2, 3, 6))
    y, _, _ = fnet.apply(layer, init_params(layer, x.shape), x)
    xn = np.asarray(x)
    want = (xn - xn.mean(-1, keepdims=True)) / np.sqrt(xn.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


def test_layer_norm_needs_a_known_feature_axis():
    # (None,) is the batch axis alone: the layer's gamma would have no size to take
    with pytest.raises(ShapeError, match=r"^layer_norm: normalises the last axis D, which input_shape \(N"):
        L.layer_norm().init(jax.random.key(0), (None,))
    params, shape = L.layer_norm().init(jax.random.key(0), (6,))  # one example of D = 6 is fine
    assert params["gamma"].shape == (6,) and shape == (6,)
