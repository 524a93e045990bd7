"""fnet.models: two_layer_net's names, initialisation and the book's gradient check; multi_layer_net
and simple_convnet as the book builds them."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import init_params

import fnet
from fnet import gradcheck, losses
from fnet.models import multi_layer_net, simple_convnet


def test_two_layer_net_has_the_books_parameters():
    net = fnet.two_layer_net(784, 50, 10)
    params, out = net.init(jax.random.key(0), (None, 784))
    named = fnet.book_names(params)
    assert {k: v.shape for k, v in named.items()} == {"W1": (784, 50), "b1": (50,), "W2": (50, 10),
                                                      "b2": (10,)}
    assert float(jnp.std(named["W1"])) == pytest.approx(0.01, rel=0.05)
    assert jnp.all(named["b1"] == 0) and out == (None, 10)
    with pytest.raises(ValueError, match="built for 784 input features"):
        net.init(jax.random.key(0), (None, 100))


def test_book_names_of_a_multi_layer_net():
    net = fnet.multi_layer_net(20, [8, 6], 4, use_batchnorm=True)
    params, _ = net.init(jax.random.key(0), (None, 20))
    named = fnet.book_names(params)
    assert sorted(named) == sorted(["W1", "b1", "W2", "b2", "W3", "b3", "gamma1", "beta1", "gamma2", "beta2"])
    assert named["W3"].shape == (6, 4) and named["gamma2"].shape == (6,)
    with pytest.raises(KeyError, match="no Affine<i> or BatchNorm<i> entries"):
        fnet.book_names({"affine_0": {}})


def test_gradient_check_numerical_vs_backprop():
    # The book's ch05/gradient_check.py: a few samples, numerical vs backprop, per parameter.
    net = fnet.two_layer_net(12, 6, 3, weight_init_std=0.3)
    params, _ = net.init(jax.random.key(0), (None, 12))
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    x = jax.random.uniform(jax.random.key(1), (3, 12), jnp.float64)
    t = jnp.array([0, 2, 1])
    # move the biases off zero so that every entry of the gradient is non-trivial
    params = jax.tree.map(lambda a: a + 0.1 if a.ndim == 1 else a, params)

    _, grad_backprop = fnet.loss_and_grads(net, losses.softmax_cross_entropy)(params, x, t)
    grad_numerical = gradcheck.numerical_gradient(
        lambda p: losses.softmax_cross_entropy.forward(net.forward(p, x)[0], t)[0], params)
    for name, (a, b) in {k: (fnet.book_names(grad_backprop)[k], fnet.book_names(grad_numerical)[k])
                         for k in ("W1", "b1", "W2", "b2")}.items():
        diff = float(jnp.mean(jnp.abs(a - b)))  # the book prints this average
        assert diff < 1e-9, f"{name}: {diff:.3g}"
        assert float(jnp.max(jnp.abs(a))) > 1e-4, f"{name}: gradient trivially zero"
    # and a wrong backward is caught by the same check
    wrong = jax.tree.map(lambda g: g * 1.01, grad_backprop)
    assert not np.allclose(wrong["Affine1"]["W"], grad_numerical["Affine1"]["W"], rtol=1e-4, atol=1e-9)


def test_multi_layer_net_keys_and_default_init():
    net = multi_layer_net(784, [100, 50], 10, use_batchnorm=True, use_dropout=True)
    assert [k for k, _ in net.children] == ["Affine1", "BatchNorm1", "Relu1", "Dropout1", "Affine2",
                                            "BatchNorm2", "Relu2", "Dropout2", "Affine3"]
    assert net.uses == {"key", "train", "state"}
    assert fnet.output_shape(net, (None, 784)) == (None, 10)
    assert set(net.init_state((None, 784))) == {"BatchNorm1", "BatchNorm2"}
    params = init_params(net, (None, 784), jnp.float32)
    np.testing.assert_allclose(float(jnp.std(params["Affine1"]["W"])), np.sqrt(2 / 784), rtol=0.05)  # He
    sig = multi_layer_net(784, [100], 10, activation="sigmoid")
    assert [k for k, _ in sig.children] == ["Affine1", "Sigmoid1", "Affine2"] and sig.uses == frozenset()
    p = init_params(sig, (None, 784), jnp.float32)
    np.testing.assert_allclose(float(jnp.std(p["Affine1"]["W"])), np.sqrt(1 / 784), rtol=0.05)  # Xavier
    with pytest.raises(ValueError, match="activation must be one of"):
        multi_layer_net(4, [3], 2, activation="gelu")


def test_simple_convnet_matches_the_book():
    net = simple_convnet()
    assert [k for k, _ in net.children] == ["Conv1", "Relu1", "Pool1", "Affine1", "Relu2", "Affine2"]
    assert fnet.output_shape(net, (None, 28, 28, 1)) == (None, 10)
    params = init_params(net, (None, 28, 28, 1), jnp.float32)
    assert params["Conv1"]["W"].shape == (5, 5, 1, 30)
    assert params["Affine1"]["W"].shape == (12 * 12 * 30, 100)
    np.testing.assert_allclose(float(jnp.std(params["Conv1"]["W"])), np.sqrt(2 / 25), rtol=0.15)  # He
    np.testing.assert_allclose(float(jnp.std(params["Affine1"]["W"])), np.sqrt(2 / 4320), rtol=0.05)
    book = init_params(simple_convnet(weight_init_std=0.01), (None, 28, 28, 1), jnp.float32)
    np.testing.assert_allclose(float(jnp.std(book["Affine1"]["W"])), 0.01, rtol=0.05)
    with pytest.raises(ValueError, match=r"'filter_num' is 'filters' here"):
        simple_convnet(conv=dict(filter_num=30))
