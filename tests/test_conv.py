"""fnet.layers.conv: conv2d against a loop, rows in no window, dW in chunks, shapes, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import init_params, rand

import fnet
from fnet import layers as L
from fnet import losses, optim, train
from fnet.errors import DTypeError, ShapeError
from fnet.layers import conv
from fnet.models import simple_convnet


def conv_loop(x, W, b, stride, pad):
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


@pytest.mark.parametrize("channels", [3, 1])  # one input channel: the im2col rows times the kernel
@pytest.mark.parametrize("stride,pad", [(1, 0), (2, 1), (3, 2)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("width", [6, 7])  # stride 1: 5 output columns, or 6 computed in pairs
def test_conv2d_forward_equals_a_loop(stride, pad, channels, bias, width):
    layer = L.conv2d(4, (3, 2), stride=stride, padding=pad, b_init=0.5, bias=bias)
    x = rand((2, 7, width, channels))
    params = init_params(layer, x.shape)
    y, _, _ = jax.jit(lambda params, x: fnet.apply(layer, params, x))(params, x)
    want = conv_loop(x, params["W"], params["b"] if bias else 0.0, stride, pad)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    assert y.shape == fnet.output_shape(layer, x.shape)


def _conv_strides(f, *args):
    """The window strides of every convolution in ``f``'s program."""
    return [e.params["window_strides"] for e in jax.make_jaxpr(f)(*args).eqns
            if e.primitive.name == "conv_general_dilated"]


@pytest.mark.parametrize("shape,filters,pads,pairs", [
    ((3, 6, 8, 5), 4, ((1, 1), (1, 1)), True),
    ((2, 5, 9, 16), 16, ((1, 1), (0, 0)), True),  # 7 output columns are odd: one at a time
    ((2, 5, 10, 16), 16, ((1, 1), (1, 1)), True),
    ((2, 7, 8, 3), 6, ((-1, 2), (2, 0)), True),  # negative pads crop, as dx's can
    ((2, 6, 8, 17), 8, ((1, 1), (1, 1)), False),  # more than PAIR_MAX_CHANNELS inputs
    ((2, 6, 8, 8), 32, ((1, 1), (1, 1)), False),  # more than PAIR_MAX_FILTERS outputs
])
def test_correlate_in_pairs_equals_the_convolution(shape, filters, pads, pairs):
    x, W = rand(shape), rand((3, 3, shape[-1], filters))
    want = jax.lax.conv_general_dilated(x, W, (1, 1), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    got = conv._correlate(x, W, (1, 1), pads)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    w_out = shape[2] + sum(pads[1]) - 2
    in_pairs = pairs and w_out % 2 == 0
    strides = _conv_strides(lambda x, W: conv._correlate(x, W, (1, 1), pads), x, W)
    assert strides == [(1, 2) if in_pairs else (1, 1)]


def test_conv2d_narrow_layer_computes_pairs_forward_and_backward():
    # the ResNet's 16-channel 3x3 convolutions: forward and dx in pairs; a strided one the plain way
    layer, x = L.conv2d(16, 3, padding=1, bias=False), rand((2, 10, 10, 16))
    params = init_params(layer, x.shape)

    def both(params, x):
        y, cache, _ = fnet.apply(layer, params, x)
        return layer.backward(cache, y)

    assert _conv_strides(both, params, x) == [(1, 2), (1, 2)]
    strided = L.conv2d(16, 3, stride=2, padding=1, bias=False)
    forward = lambda p, x: fnet.apply(strided, p, x)[0]  # noqa: E731
    assert _conv_strides(forward, init_params(strided, x.shape), x) == [(2, 2)]


def test_conv2d_rows_in_no_window_get_zero_gradient():
    # H + 2p - k = 7 - 3 = 4 is not a multiple of 3: rows 6 (and columns 6) are in no window
    layer = L.conv2d(2, 3, stride=3)
    x = rand((1, 7, 7, 1))
    y, cache, _ = fnet.apply(layer, init_params(layer, x.shape), x)
    assert y.shape == (1, 2, 2, 2)
    _, dx = layer.backward(cache, jnp.ones_like(y))
    assert np.all(np.asarray(dx[:, 6, :, :]) == 0) and np.all(np.asarray(dx[:, :, 6, :]) == 0)
    assert np.all(np.asarray(dx[:, :6, :6, :]) != 0)


@pytest.mark.parametrize("strides", [(1, 1), (2, 1), (2, 2)])
@pytest.mark.parametrize("chunk_images", [1, 2, 5])
def test_conv2d_dW_summed_in_chunks_equals_the_definition(strides, chunk_images):
    # 5 images: chunks of 1 (a loop of 5), of 2 (a loop of 2 and a last chunk of 1), of 5 (no
    # loop); each chunk padded on its own, with uneven padding
    x, pads, (kh, kw) = rand((5, 7, 5, 3)), ((1, 0), (0, 2)), (3, 2)
    xpad = np.pad(np.asarray(x), ((0, 0), *pads, (0, 0)))
    ho, wo = (8 - kh) // strides[0] + 1, (7 - kw) // strides[1] + 1
    dout = rand((5, ho, wo, 4), seed=1)
    per_image = 8 * 7 * 3 * x.dtype.itemsize
    dW = conv._weight_gradient(x, pads, dout, (kh, kw), strides, chunk_bytes=chunk_images * per_image)
    g, (sh, sw) = np.asarray(dout), strides
    want = np.zeros((kh, kw, 3, 4))
    for a in range(kh):
        for b in range(kw):
            x_ab = xpad[:, a:a + (ho - 1) * sh + 1:sh, b:b + (wo - 1) * sw + 1:sw]
            want[a, b] = np.einsum("nijc,nijo->co", x_ab, g)
    np.testing.assert_allclose(dW, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape, pads, window", [
    ((2, 3, 4, 4), ((1, 1), (1, 1)), (3, 3)),  # 12 pixels <= 4 * 4 channels
    ((3, 2, 3, 2), ((1, 0), (0, 2)), (3, 2)),  # uneven padding, a rectangular kernel
    ((1, 4, 4, 5), ((0, 0), (0, 0)), (2, 2)),  # no padding
])
def test_conv2d_dW_of_few_pixels_per_channel_is_one_convolution_equal_to_the_definition(
        shape, pads, window, monkeypatch):
    x = rand(shape)
    (kh, kw), (h, w) = window, (shape[1] + sum(pads[0]), shape[2] + sum(pads[1]))
    dout = rand((shape[0], h - kh + 1, w - kw + 1, 3), seed=1)
    taken = []
    by_convolution = conv._weight_gradient_by_convolution
    monkeypatch.setattr(conv, "_weight_gradient_by_convolution",
                        lambda *a: taken.append(True) or by_convolution(*a))
    dW = conv._weight_gradient(x, pads, dout, window, (1, 1))
    assert taken == ([True] if jax.default_backend() == "cpu" else [])
    xpad, g = np.pad(np.asarray(x), ((0, 0), *pads, (0, 0))), np.asarray(dout)
    want = np.array([[np.einsum("nijc,nijo->co", xpad[:, a:a + g.shape[1], b:b + g.shape[2]], g)
                      for b in range(kw)] for a in range(kh)])
    np.testing.assert_allclose(dW, want, rtol=1e-12, atol=1e-12)


def test_conv2d_dW_of_many_pixels_per_channel_or_strided_keeps_the_chunked_rows(monkeypatch):
    def refuse(*a):
        raise AssertionError("the convolution form was taken")
    monkeypatch.setattr(conv, "_weight_gradient_by_convolution", refuse)
    x, pads = rand((2, 5, 5, 3)), ((1, 1), (1, 1))  # 25 pixels > 4 * 3 channels
    conv._weight_gradient(x, pads, rand((2, 5, 5, 2), seed=1), (3, 3), (1, 1))
    x = rand((2, 3, 4, 4))  # few pixels, but stride 2
    conv._weight_gradient(x, pads, rand((2, 2, 2, 2), seed=1), (3, 3), (2, 2))


def test_conv2d_dW_in_chunks_trains_inside_the_compiled_epoch(monkeypatch):
    # fit's compiled epoch (shard_map, lax.scan) with the chunk loop gives the one-chunk
    # result: 15 images a batch, chunks of 2 for the 4-channel convolutions (a loop of 7
    # and a last chunk of 1)
    net = fnet.sequential(L.conv2d(4, 3, padding=1), L.relu(), L.conv2d(4, 3, padding=1), L.relu(),
                          L.conv2d(4, 3, stride=2, padding=1), L.flatten(), L.affine(3))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((45, 8, 8, 1)).astype(np.float32)
    t = rng.integers(0, 3, 45)

    def fit():
        return train.fit(net, losses.softmax_cross_entropy, optim.sgd(0.1), (x, t), (x, t), epochs=1,
                         batch_size=15, log=None).params
    one_chunk = fit()
    monkeypatch.setattr(conv, "DW_CHUNK_BYTES", 2 * 10 * 10 * 4 * 4)
    chunked = fit()
    for a, b in zip(jax.tree.leaves(one_chunk), jax.tree.leaves(chunked), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


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
        fnet.apply(layer, init_params(layer, (2, 28, 28, 1), jnp.float32), jnp.ones((2, 28, 28)))
    params = init_params(layer, (2, 8, 8, 1), jnp.float32)
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
