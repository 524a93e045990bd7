"""fnet.layers.pooling: the max-pool tie rule, overlapping windows, padding, shapes, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import ties
from jax import lax

import fnet
from fnet import layers as L
from fnet.errors import ShapeError


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
    x = ties(jax.random.key(3), (2, 7, 7, 3), jnp.float64)
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
