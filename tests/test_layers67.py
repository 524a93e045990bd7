"""Chapters 6 and 7: dropout, batch norm, layer norm, convolution, pooling, and their models.

Gradients are checked against autodiff in ``test_gradients.py`` (THE LIST). Here:
values against NumPy, the train/eval modes, running statistics, the max-pool tie
rule, error messages, a network run through ``loss_and_grads`` under ``jit``,
and proof that the harness rejects plausible wrong backward rules for these layers.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import compare_layer
from jax import lax

import fnet
from fnet import layers as L
from fnet import losses
from fnet.errors import ContextError, DTypeError, ShapeError
from fnet.layers.pooling import _offsets, _spread
from fnet.models import multi_layer_net, simple_convnet

TOL64 = 1e-10
WRONG = 1e-3  # a wrong rule is off by this much or more; roundoff is 1e-16


# Compilation dominates these small tests: inputs come from NumPy (nothing to compile), and
# parameters from one jitted init with a Philox key (about half of threefry's compile time).


def _rand(shape, seed=0, dtype=jnp.float64):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def _params(layer, shape, dtype=jnp.float64):
    init = jax.jit(lambda key: layer.init(key, (None, *shape[1:]))[0])
    return jax.tree.map(lambda a: a.astype(dtype), init(jax.random.key(0, impl="philox4x32")))


def _ties(key, shape, dtype):
    """Small integers: most pooling windows hold several equal maxima."""
    return jnp.round(jax.random.normal(key, shape, dtype))


def _worst(errors):
    return max(errors.values())


# ----------------------------------------------------------------------------- the harness can fail


def test_harness_rejects_max_pool_that_routes_to_all_tied_maxima():
    layer = L.max_pool2d(2)

    def forward(params, x):  # also caches x and y, so that the wrong rule can find every maximum
        y, (_, geo) = layer.forward(params, x)
        return y, (x, y, geo)

    def backward(cache, dout):
        x, y, geo = cache
        x_shape, pads, outs, tiled = geo.value
        parts = [[None, None], [None, None]]
        for a, b, x_ab in _offsets(x, (2, 2), (2, 2), outs):
            parts[a][b] = jnp.where(x_ab == y, dout, 0)
        return {}, _spread(parts, x_shape, (2, 2), (2, 2), pads, outs, tiled)

    wrong = dataclasses.replace(layer, forward=forward, backward=backward)
    assert _worst(compare_layer(layer, (2, 6, 6, 3), x_fn=_ties)) <= TOL64
    assert _worst(compare_layer(wrong, (2, 6, 6, 3), x_fn=_ties)) > WRONG
    # without ties the two rules agree: inputs with ties are what exposes it
    assert _worst(compare_layer(wrong, (2, 6, 6, 3))) <= TOL64


def test_harness_rejects_overlapping_pool_that_does_not_accumulate():
    layer = L.avg_pool2d(3, stride=1)

    def backward(cache, dout):  # each input keeps only the last window's share, not the sum
        x_shape, _, outs, _ = cache.value
        dx = jnp.zeros(x_shape, dout.dtype)
        for a in range(3):
            for b in range(3):
                dx = dx.at[:, a:a + outs[0], b:b + outs[1], :].set(dout / 9)
        return {}, dx

    assert _worst(compare_layer(dataclasses.replace(layer, backward=backward), (2, 5, 5, 2))) > WRONG


def _bn_backward_without_mean_term(cache, dout):
    xhat, gamma, inv_std, _ = cache
    axes = tuple(range(dout.ndim - 1))
    dgamma = jnp.sum(dout * xhat, axis=axes)
    m = dout.size // dout.shape[-1]
    dx = (gamma * inv_std / m) * (m * dout - xhat * dgamma)  # "- sum(dout)" forgotten
    return {"gamma": dgamma, "beta": jnp.sum(dout, axis=axes)}, dx


def _bn_backward_always_eval(cache, dout):
    xhat, gamma, inv_std, _ = cache
    axes = tuple(range(dout.ndim - 1))
    return ({"gamma": jnp.sum(dout * xhat, axis=axes), "beta": jnp.sum(dout, axis=axes)},
            gamma * inv_std * dout)  # treats the batch statistics as constants


@pytest.mark.parametrize("wrong", [_bn_backward_without_mean_term, _bn_backward_always_eval])
def test_harness_rejects_wrong_batch_norm_backward(wrong):
    layer = dataclasses.replace(L.batch_norm(), backward=wrong)
    assert _worst(compare_layer(layer, (4, 5))) > WRONG
    assert _worst(compare_layer(layer, (2, 3, 3, 2))) > WRONG


def test_harness_rejects_dropout_backward_without_the_scale():
    layer = L.dropout(0.4)
    wrong = dataclasses.replace(layer, backward=lambda mask, dout: ({}, dout * (mask > 0)))
    assert _worst(compare_layer(wrong, (4, 5))) > WRONG


def test_harness_rejects_conv_backward_with_unflipped_kernel():
    layer = L.conv2d(3, 3, stride=2, padding=1)

    def backward(cache, dout):
        x, W, _ = cache
        dparams, _ = layer.backward(cache, dout)
        dx = lax.conv_general_dilated(dout, W, (1, 1), [(1, 2), (1, 2)], lhs_dilation=(2, 2),
                                      dimension_numbers=("NHWC", "HWOI", "NHWC"))
        return dparams, dx[:, :x.shape[1], :x.shape[2]]

    assert _worst(compare_layer(dataclasses.replace(layer, backward=backward), (2, 7, 7, 2))) > WRONG


def test_harness_rejects_layer_norm_backward_without_mean_term():
    layer = L.layer_norm()

    def backward(cache, dout):
        xhat, gamma, inv_std = cache
        d = dout.shape[-1]
        dxhat = dout * gamma
        dx = (inv_std / d) * (d * dxhat - xhat * jnp.sum(dxhat * xhat, axis=-1, keepdims=True))
        return {"gamma": jnp.sum(dout * xhat, axis=0), "beta": jnp.sum(dout, axis=0)}, dx

    assert _worst(compare_layer(dataclasses.replace(layer, backward=backward), (4, 6))) > WRONG


# ----------------------------------------------------------------------------- dropout


def test_dropout_eval_is_identity_and_needs_no_key():
    layer = L.dropout(0.5)
    x = _rand((3, 4))
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


# ----------------------------------------------------------------------------- batch norm


def test_batch_norm_training_normalizes_per_channel_and_updates_running_stats():
    layer = L.batch_norm(momentum=0.8)
    x = 3.0 + 2.0 * _rand((4, 3, 5, 2))  # NHWC: statistics over N, H, W per channel
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
    x = _rand((3, 4))
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
    params = _params(layer, (4, 3), jnp.float32)
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
    x = 5.0 + 3.0 * _rand((2, 3, 6))
    y, _, _ = fnet.apply(layer, _params(layer, x.shape), x)
    xn = np.asarray(x)
    want = (xn - xn.mean(-1, keepdims=True)) / np.sqrt(xn.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- convolution


def _conv_loop(x, W, b, stride, pad):
    """The definition, one output element at a time (NHWC, HWIO)."""
    x = np.pad(np.asarray(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    W = np.asarray(W)
    kh, kw, _, f = W.shape
    n, h, w, _ = x.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    y = np.zeros((n, ho, wo, f))
    for i in range(ho):
        for j in range(wo):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            y[:, i, j, :] = np.tensordot(patch, W, axes=([1, 2, 3], [0, 1, 2])) + np.asarray(b)
    return y


@pytest.mark.parametrize("stride,pad", [(1, 0), (2, 1), (3, 2)])
def test_conv2d_forward_equals_a_loop(stride, pad):
    layer = L.conv2d(4, (3, 2), stride=stride, padding=pad, b_init=0.5)
    x = _rand((2, 7, 6, 3))
    params = _params(layer, x.shape)
    y, _, _ = jax.jit(lambda params, x: fnet.apply(layer, params, x))(params, x)
    want = _conv_loop(x, params["W"], params["b"], stride, pad)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    assert y.shape == fnet.output_shape(layer, (2, 7, 6, 3))


def test_conv2d_rows_in_no_window_get_zero_gradient():
    # H + 2p - k = 7 - 3 = 4 is not a multiple of 3: rows 6 (and columns 6) are in no window
    layer = L.conv2d(2, 3, stride=3)
    x = _rand((1, 7, 7, 1))
    y, cache, _ = fnet.apply(layer, _params(layer, x.shape), x)
    assert y.shape == (1, 2, 2, 2)
    _, dx = layer.backward(cache, jnp.ones_like(y))
    assert np.all(np.asarray(dx[:, 6, :, :]) == 0) and np.all(np.asarray(dx[:, :, 6, :]) == 0)
    assert np.all(np.asarray(dx[:, :6, :6, :]) != 0)


def test_conv2d_init_and_same_padding_shapes():
    layer = L.conv2d(8, 5)
    params, out = layer.init(jax.random.key(0), (None, 28, 28, 1))
    assert out == (None, 24, 24, 8)
    assert params["W"].shape == (5, 5, 1, 8) and params["W"].dtype == jnp.float32
    np.testing.assert_allclose(float(jnp.std(params["W"])), np.sqrt(2 / 25), rtol=0.15)  # He
    assert fnet.output_shape(L.conv2d(3, 4, stride=2, padding="SAME"), (None, 9, 8, 2)) == (None, 5, 4, 3)
    assert fnet.output_shape(L.conv2d(3, 3, padding=((0, 2), (1, 0))), (None, 5, 5, 2)) == (None, 5, 4, 3)


def test_conv2d_errors_name_the_layer_and_shapes():
    layer = L.conv2d(4, 3)
    with pytest.raises(ShapeError, match=r"^conv2d: expected images of shape \(N, H, W, C\).*got shape "
                                         r"\(N, 784\).*x\.reshape\(-1, 28, 28, 1\).*flatten=False"):
        layer.init(jax.random.key(0), (None, 784))
    with pytest.raises(ShapeError, match=r"\(2, 28, 28\).*add the channel axis: x\[\.\.\., None\]"):
        fnet.apply(layer, _params(layer, (2, 28, 28, 1), jnp.float32), jnp.ones((2, 28, 28)))
    params = _params(layer, (2, 8, 8, 1), jnp.float32)
    with pytest.raises(ShapeError, match=r"^conv2d: input of shape \(2, 8, 8, 3\) has 3 channels.*"
                                         r"\(3, 3, 1, 4\).*expects 1"):
        fnet.apply(layer, params, jnp.ones((2, 8, 8, 3)))
    with pytest.raises(ShapeError, match=r"kernel 3x3 is larger than the padded input: height 2 \+ "
                                         r"padding 0\+0 < 3"):
        layer.init(jax.random.key(0), (None, 2, 8, 1))
    with pytest.raises(ShapeError, match=r"looks channels-first.*transpose\(0, 2, 3, 1\)"):
        fnet.apply(layer, params, jnp.ones((2, 1, 8, 8)))
    with pytest.raises(DTypeError, match=r"^conv2d: input has dtype float64 but the kernel has float32"):
        fnet.apply(layer, params, jnp.ones((2, 8, 8, 1), jnp.float64))
    with pytest.raises(ValueError, match=r"conv2d: stride must be an int >= 1"):
        L.conv2d(4, 3, stride=0)
    with pytest.raises(ValueError, match=r"conv2d: padding must be 'SAME', 'VALID'"):
        L.conv2d(4, 3, padding="FULL")
    net = simple_convnet()
    with pytest.raises(ShapeError, match=r"^Conv1 \(conv2d\): expected images"):
        net.init(jax.random.key(0), (None, 784))


# ----------------------------------------------------------------------------- pooling


def test_max_pool_tie_rule_first_maximum_in_row_major_order():
    # one 3x3 window per channel; channel 0: the 5s at (0, 2), (1, 0), (2, 2); channel 1: all equal
    x = np.zeros((1, 3, 3, 2))
    x[0, :, :, 0] = [[1, 2, 5], [5, 0, 1], [3, 4, 5]]
    x[0, :, :, 1] = 7.0
    layer = L.max_pool2d(3)
    y, cache, _ = fnet.apply(layer, {}, jnp.asarray(x))
    np.testing.assert_array_equal(y, [[[[5.0, 7.0]]]])
    _, dx = layer.backward(cache, jnp.array([[[[10.0, 20.0]]]]))
    want = np.zeros((1, 3, 3, 2))
    want[0, 0, 2, 0] = 10.0  # row 0 comes before row 1: (0, 2), not (1, 0)
    want[0, 0, 0, 1] = 20.0  # all equal: the top-left element
    np.testing.assert_array_equal(dx, want)


def test_max_pool_tie_rule_agrees_with_jax_reduce_window_gradient():
    x = _ties(jax.random.key(3), (2, 7, 7, 3), jnp.float64)
    for window, stride, pad in [(2, 2, 0), (3, 2, 1)]:
        layer = L.max_pool2d(window, stride=stride, padding=pad)
        dims, strides = (1, window, window, 1), (1, stride, stride, 1)
        pads = ((0, 0), (pad, pad), (pad, pad), (0, 0))

        @jax.jit
        def both(x, layer=layer, d=dims, s=strides, p=pads):
            y, cache, _ = fnet.apply(layer, {}, x)
            y_ref, vjp = jax.vjp(lambda x: lax.reduce_window(x, -jnp.inf, lax.max, d, s, p), x)
            dout = jax.random.normal(jax.random.key(4), y.shape, y.dtype)
            return y, y_ref, layer.backward(cache, dout)[1], vjp(dout)[0]

        y, y_ref, dx, dx_ref = both(x)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(dx, dx_ref)


def test_overlapping_max_pool_accumulates():
    # stride 1, 2x2 windows over a single peak: the peak is the maximum of all four windows
    x = np.zeros((1, 3, 3, 1))
    x[0, 1, 1, 0] = 1.0
    layer = L.max_pool2d(2, stride=1)
    _, cache, _ = fnet.apply(layer, {}, jnp.asarray(x))
    _, dx = layer.backward(cache, jnp.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 2, 1))
    assert float(dx[0, 1, 1, 0]) == 10.0 and float(jnp.sum(dx)) == 10.0


def test_avg_pool_counts_padding_in_the_mean():
    x = jnp.ones((1, 4, 4, 1))
    y, _, _ = fnet.apply(L.avg_pool2d(3, stride=1, padding=1), {}, x)
    assert float(y[0, 0, 0, 0]) == pytest.approx(4 / 9) and float(y[0, 1, 1, 0]) == pytest.approx(1.0)


def test_max_pool_pads_with_minus_infinity_and_propagates_nan():
    x = -jnp.ones((1, 2, 2, 1))
    y, _, _ = fnet.apply(L.max_pool2d(2, stride=1, padding=1), {}, x)
    np.testing.assert_array_equal(y, -np.ones((1, 3, 3, 1)))  # the book pads with 0 and would give 0
    y, _, _ = fnet.apply(L.max_pool2d(2), {}, x.at[0, 1, 0, 0].set(jnp.nan))
    assert np.isnan(float(y[0, 0, 0, 0]))


def test_pooling_shapes_and_errors():
    assert fnet.output_shape(L.max_pool2d(2), (None, 7, 5, 3)) == (None, 3, 2, 3)
    assert fnet.output_shape(L.avg_pool2d(3, stride=2, padding="SAME"), (None, 7, 5, 3)) == (None, 4, 3, 3)
    with pytest.raises(ShapeError, match=r"^max_pool2d: the pool window 2x2 is larger than the padded input"):
        fnet.output_shape(L.max_pool2d(2), (None, 1, 5, 3))
    with pytest.raises(ShapeError, match=r"^avg_pool2d: expected images of shape \(N, H, W, C\)"):
        fnet.apply(L.avg_pool2d(2), {}, jnp.ones((2, 16)))
    with pytest.raises(ValueError, match=r"max_pool2d: padding 2 must be smaller than the pool size 2"):
        L.max_pool2d(2, padding=2)


# ----------------------------------------------------------------------------- models and the protocol


def test_multi_layer_net_keys_and_default_init():
    net = multi_layer_net(784, [100, 50], 10, use_batchnorm=True, use_dropout=True)
    assert [k for k, _ in net.children] == ["Affine1", "BatchNorm1", "Relu1", "Dropout1", "Affine2",
                                            "BatchNorm2", "Relu2", "Dropout2", "Affine3"]
    assert net.uses == {"key", "train", "state"}
    assert fnet.output_shape(net, (None, 784)) == (None, 10)
    assert set(net.init_state((None, 784))) == {"BatchNorm1", "BatchNorm2"}
    params = _params(net, (None, 784), jnp.float32)
    np.testing.assert_allclose(float(jnp.std(params["Affine1"]["W"])), np.sqrt(2 / 784), rtol=0.05)  # He
    sig = multi_layer_net(784, [100], 10, activation="sigmoid")
    assert [k for k, _ in sig.children] == ["Affine1", "Sigmoid1", "Affine2"] and sig.uses == frozenset()
    p = _params(sig, (None, 784), jnp.float32)
    np.testing.assert_allclose(float(jnp.std(p["Affine1"]["W"])), np.sqrt(1 / 784), rtol=0.05)  # Xavier
    with pytest.raises(ValueError, match="activation must be one of"):
        multi_layer_net(4, [3], 2, activation="gelu")


def test_simple_convnet_matches_the_book():
    net = simple_convnet()
    assert [k for k, _ in net.children] == ["Conv1", "Relu1", "Pool1", "Affine1", "Relu2", "Affine2"]
    assert fnet.output_shape(net, (None, 28, 28, 1)) == (None, 10)
    params = _params(net, (None, 28, 28, 1), jnp.float32)
    assert params["Conv1"]["W"].shape == (5, 5, 1, 30)
    assert params["Affine1"]["W"].shape == (12 * 12 * 30, 100)
    np.testing.assert_allclose(float(jnp.std(params["Conv1"]["W"])), np.sqrt(2 / 25), rtol=0.15)  # He
    np.testing.assert_allclose(float(jnp.std(params["Affine1"]["W"])), np.sqrt(2 / 4320), rtol=0.05)
    book = _params(simple_convnet(weight_init_std=0.01), (None, 28, 28, 1), jnp.float32)
    np.testing.assert_allclose(float(jnp.std(book["Affine1"]["W"])), 0.01, rtol=0.05)
    with pytest.raises(ValueError, match=r"'filter_num' is 'filters' here"):
        simple_convnet(conv=dict(filter_num=30))


def test_network_with_dropout_and_batch_norm_under_jit():
    net = fnet.sequential(("Conv1", L.conv2d(4, 3, padding=1)), ("BatchNorm1", L.batch_norm(momentum=0.5)),
                          ("Relu1", L.relu()), ("Pool1", L.max_pool2d(2)), ("Dropout1", L.dropout(0.5)),
                          ("Affine1", L.affine(3)))
    x = _rand((8, 6, 6, 1), dtype=jnp.float32)
    t = jnp.arange(8) % 3
    params = _params(net, x.shape, jnp.float32)
    state = net.init_state((None, 6, 6, 1))
    step = jax.jit(fnet.loss_and_grads(net, losses.softmax_cross_entropy))
    loss, grads, new_state = step(params, x, t, key=jax.random.key(1), state=state)

    assert jax.tree.structure(grads) == jax.tree.structure(params)  # running statistics are not trained
    assert set(new_state) == {"BatchNorm1"} and "mean" not in params["BatchNorm1"]
    conv = _conv_loop(x, params["Conv1"]["W"], params["Conv1"]["b"], 1, 1)
    np.testing.assert_allclose(new_state["BatchNorm1"]["mean"], 0.5 * conv.mean(axis=(0, 1, 2)),
                               rtol=1e-5, atol=1e-6)
    assert new_state["BatchNorm1"]["var"].dtype == jnp.float32
    # the key reaches dropout: the same key repeats the step, another key changes it
    again = step(params, x, t, key=jax.random.key(1), state=state)
    other = step(params, x, t, key=jax.random.key(2), state=state)
    assert float(again[0]) == float(loss) and float(other[0]) != float(loss)
    assert np.all(np.isfinite(np.asarray(loss)))
    # evaluation: no key, running statistics, deterministic
    predict = jax.jit(lambda params, x, state: fnet.predict(net, params, x, state=state))
    np.testing.assert_array_equal(predict(params, x, new_state), predict(params, x, new_state))
    with pytest.raises(ContextError, match=r"^Dropout1 \(dropout\): needs a random key"):
        step(params, x, t, state=state)


def test_float32_stays_float32():
    x = _rand((2, 6, 6, 3), dtype=jnp.float32)
    net = fnet.sequential(L.conv2d(4, 3), L.batch_norm(), L.max_pool2d(2), L.avg_pool2d(2), L.layer_norm(),
                          L.dropout(0.5), L.affine(2))
    params = _params(net, x.shape, jnp.float32)

    @jax.jit
    def run(params, x, state):
        y, cache, state = fnet.apply(net, params, x, key=jax.random.key(1), train=True, state=state)
        return y, state, net.backward(cache, jnp.ones_like(y))

    dtypes = {a.dtype for a in jax.tree.leaves(run(params, x, net.init_state(x.shape)))}
    assert dtypes == {jnp.dtype(jnp.float32)}
