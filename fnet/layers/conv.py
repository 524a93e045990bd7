"""The 2-D convolution layer: the book's ``Convolution`` (chapter 7), channels-last."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from fnet import _args, initializers
from fnet.core import Layer, Static, check_shape
from fnet.errors import DTypeError, ShapeError, shape_str
from fnet.layers import _spatial
from fnet.layers._checks import float_input

# (input, kernel, output) layouts for lax.conv_general_dilated: images NHWC, kernel HWIO.
_NHWC = ("NHWC", "HWIO", "NHWC")

# A stride-1 correlation with at most PAIR_MAX_CHANNELS input channels and at most
# PAIR_MAX_FILTERS output channels computes pairs of neighbouring output pixels as one
# (``_correlate``), on a CPU: XLA's CPU convolution (Eigen's) runs such narrow kernels faster
# that way, and no faster from 32 input or output channels up (docs/speed.md has the measurements).
PAIR_MAX_CHANNELS = 16
PAIR_MAX_FILTERS = 24

# dW sums over the batch in chunks of at most this many bytes of padded input, so that a
# chunk's per-offset copies stay in the CPU's cache instead of streaming the whole batch
# through memory once per kernel row or offset (docs/speed.md has the measurements).
DW_CHUNK_BYTES = 512 * 1024

# On a CPU, a stride-1 kernel's dW over images with at most this many pixels per input channel
# (H * W <= 4 * C_in: a ResNet's 7x7x64 stage, not its 14x14x32 or 28x28x16 ones) is one
# convolution of the transposed input with the transposed dout (``_weight_gradient_by_convolution``):
# Eigen's convolution runs those shapes faster than the chunked matmuls, and the small-channel,
# large-image shapes slower (docs/speed.md has the measurements).
DW_CONV_MAX_PIXELS_PER_CHANNEL = 4


def conv2d(filters: int, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] = 1,
           padding: int | tuple | str = 0, *, W_init: initializers.Initializer | float | str = "he",
           b_init: initializers.Initializer | float | str = 0.0, bias: bool = True,
           dtype=jnp.float32) -> Layer:
    """``y[n, i, j, o] = b[o] + sum_{a, b, c} xpad[n, i*sh + a, j*sw + b, c] * W[a, b, c, o]``
    (cross-correlation, as in the book and every framework).

    **Layout** (channels-last; the book is channels-first):

    - ``x: (N, H, W, C_in)`` (NHWC), ``W: (kh, kw, C_in, filters)`` (HWIO),
      ``b: (filters,)``;
    - ``y: (N, H_out, W_out, filters)`` with
      ``H_out = (H + top + bottom - kh) // sh + 1`` (likewise ``W_out``).

    **Cache:** ``(x, W, Static(padding), rows)``: the input (for ``dW``), the kernel
    (for ``dx``), the explicit padding, and for one input channel the im2col rows
    (below; otherwise ``None``).

    **One input channel** (a grayscale first layer): the forward is the book's im2col,
    every window as a row ``(N, H_out, W_out, kh * kw)`` times ``W`` as a ``(kh * kw,
    filters)`` matrix, with a last column of ones times ``b`` (the bias as the weight
    of an input 1); ``dW`` and ``db`` are then one matmul of the same rows with ``dout``.
    Otherwise ``lax.conv_general_dilated``; a narrow stride-1 kernel (16 channels or fewer in
    and 24 or fewer out, as a ResNet's first stage) computes neighbouring output pixels in
    pairs, as one kernel one column wider with twice the filters (``_correlate``), and so
    does its ``dx``.

    **Derivative:** ``db = sum of dout`` over ``N, H_out, W_out``; both other
    gradients are correlations again (``dW`` as matmuls, ``dx`` with
    ``lax.conv_general_dilated``):

    - ``dW[a, b, c, o] = sum_{n, i, j} xpad[n, i*sh + a, j*sw + b, c] dout[n, i, j, o]``:
      for each kernel offset ``(a, b)`` one matmul ``x_ab^T dout``, where
      ``x_ab = xpad[:, a::sh, b::sw, :]`` (``H_out x W_out`` rows per image) is
      the input element at that offset of every window (with stride 1 one matmul
      per kernel row, otherwise one matmul of all offsets' ``x_ab`` side by side,
      ``_offset_products``), summed over chunks of images that stay in the CPU's
      cache, each chunk padded on its own; for a single input channel the same sum as one
      matmul of the forward's rows with ``dout``, which gives ``db`` too; on a CPU, for a
      stride-1 kernel over images of few pixels per input channel (``H * W <= 4 * C_in``),
      one convolution of the input read as ``C_in`` images of ``N`` features with ``dout``
      read as a kernel (``_weight_gradient_by_convolution``);
    - ``dx``: ``dout`` spread out by the stride (``lhs_dilation``, ``stride - 1``
      zeros between rows), padded by ``kh - 1``, correlated with the kernel
      flipped in space and with in/out channels swapped, then cropped by the
      forward padding. When the stride does not divide ``H + top + bottom - kh``,
      the last rows are in no window and get zero gradient.

    **Arguments:** ``kernel_size``, ``stride``: an int or ``(height, width)``;
    ``padding``: an int or ``(ph, pw)`` (zeros on both sides, the book's ``pad``),
    ``((top, bottom), (left, right))``, ``"VALID"`` (none) or ``"SAME"``
    (TensorFlow's: ``ceil(H / sh)`` outputs); ``W_init``: ``"he"`` (default,
    std ``sqrt(2 / (kh * kw * C_in))``, for ReLU networks), ``"xavier"``, a float
    std (the book's ``weight_init_std``) or an initialiser; ``b_init`` (default
    zeros); ``bias=False``: no ``b`` (params ``{"W"}``), for a convolution followed by
    batch norm, which subtracts any per-channel shift (as in a ResNet); ``dtype``
    of the parameters. The input must have the kernel's dtype.
    """
    filters = _args.count("conv2d", "filters", filters, 1)
    dtype = _args.float_dtype("conv2d", dtype)
    window = _spatial.pair("conv2d", "kernel_size", kernel_size)
    strides = _spatial.pair("conv2d", "stride", stride)
    pad_spec = _spatial.padding_spec("conv2d", padding)
    W_init = initializers.resolve(W_init, "conv2d", "W_init")
    b_init = initializers.resolve(b_init, "conv2d", "b_init")
    if not isinstance(bias, bool):
        raise TypeError(f"conv2d: bias must be True or False, got {bias!r}")

    def geometry(shape):
        _spatial.image_rank("conv2d", shape)
        pads = _spatial.resolve_padding(pad_spec, shape[1:3], window, strides)
        _spatial.check_window_fits("conv2d", "kernel", shape, window, pads)
        return pads, _spatial.out_hw(shape[1:3], window, strides, pads)

    def init(key, input_shape):
        shape = check_shape(input_shape, "conv2d")
        _, (h_out, w_out) = geometry(shape)
        kW, kb = jax.random.split(key)
        params = {"W": W_init(kW, (*window, shape[3], filters), dtype)}
        if bias:
            params["b"] = b_init(kb, (filters,), dtype)
        return params, (shape[0], h_out, w_out, filters)

    def forward(params, x):
        W = params["W"]
        x = float_input("conv2d", x)
        pads, outs = geometry(x.shape)
        if W.shape[:3] != (*window, x.shape[3]):
            raise ShapeError("conv2d", f"input of shape {shape_str(x.shape)} has {x.shape[3]} channels "
                                       f"(last axis), but the kernel has shape {W.shape} (kh, kw, C_in, "
                                       f"filters) and expects {W.shape[2]}.{_spatial.nchw_hint(x.shape)}")
        if x.dtype != W.dtype:
            raise DTypeError("conv2d", f"input has dtype {x.dtype} but the kernel has {W.dtype}; "
                                       "convolution does not promote: cast one of them")
        if x.shape[-1] == 1:
            # One input channel (a grayscale first layer, as in SimpleConvNet): every window as
            # a row (the book's im2col: one strided slice per kernel offset, stacked) times the
            # kernel as a matrix, one matmul, which backward's dW reuses (docs/speed.md). With a
            # bias, a last column of ones: the bias is the weight of a constant input 1.
            rows = _spatial.im2col(jnp.pad(x, ((0, 0), *pads, (0, 0))), window, strides, outs)
            Wb = W.reshape(-1, filters)
            if bias:
                rows = jnp.concatenate([rows, jnp.ones_like(rows[..., :1])], axis=-1)
                Wb = jnp.concatenate([Wb, params["b"][None]])
            return rows @ Wb, (x, W, Static(pads), rows)  # rows: (N, H_out, W_out, kh * kw [+ 1])
        y = _correlate(x, W, strides, pads)
        return (y + params["b"] if bias else y), (x, W, Static(pads), None)

    def backward(cache, dout):
        x, W, pads, rows = cache
        pads = pads.value
        outs = dout.shape[1:3]
        cut = _spatial.unused(x.shape[1:3], window, strides, pads, outs)
        if rows is not None:  # one input channel: dW (and db, the ones column's row) in one matmul
            dWb = rows.reshape(-1, rows.shape[-1]).T @ dout.reshape(-1, dout.shape[-1])
            grads = {"W": dWb[:window[0] * window[1]].reshape(W.shape)}
            if bias:
                grads["b"] = dWb[-1]
        else:
            grads = {"W": _weight_gradient(x, pads, dout, window, strides)}
            if bias:
                grads["b"] = jnp.sum(dout, axis=(0, 1, 2))
        # dx: full correlation of the stride-dilated dout with the flipped kernel
        # ("HWOI": its filters are the input features, C_in the output features);
        # the padding k - 1 - lo crops the forward padding (negative pads crop) and
        # + c restores rows that no window reached.
        W_t = jnp.swapaxes(jnp.flip(W, axis=(0, 1)), 2, 3)
        dx_pads = [(k - 1 - lo, k - 1 - hi + c) for k, (lo, hi), c in zip(window, pads, cut, strict=True)]
        dx = _correlate(dout, W_t, (1, 1), dx_pads, lhs_dilation=strides)
        return grads, dx

    return Layer("conv2d", init, forward, backward)


def _correlate(x, W, strides, pads, lhs_dilation=(1, 1)):
    """``lax.conv_general_dilated(x, W, strides, pads, lhs_dilation)`` in NHWC / HWIO; a narrow
    stride-1 correlation (at most ``PAIR_MAX_CHANNELS`` input channels, at most
    ``PAIR_MAX_FILTERS`` filters) with an even output width as pairs of output pixels, the
    same values up to rounding. On a CPU only: the measurements are Eigen's (XLA's CPU
    convolutions); a GPU's convolutions get the plain form.

    **Pairs:** output pixels ``(i, 2j)`` and ``(i, 2j + 1)`` read the windows at columns ``2j``
    and ``2j + 1``, which lie in one window one column wider. So a kernel ``(kh, kw + 1, C,
    2K)`` whose first ``K`` filters are ``W`` with a zero column after it and whose last ``K``
    are ``W`` with a zero column before it, slid with stride 2 along the width, gives both
    pixels' ``K`` channels side by side: ``(N, H_out, W_out / 2, 2K)``, which is the output
    ``(N, H_out, W_out, K)`` reshaped (channels-last, no copy). ``(kw + 1) / kw`` times the
    products (the zeros), but twice the filters for the kernel's matrix tiles.
    """
    c, k = W.shape[2:]
    w_out = _spatial.out_hw(x.shape[1:3], W.shape[:2], (1, 1), pads)[1]  # read only with stride 1
    if (strides != (1, 1) or lhs_dilation != (1, 1) or c > PAIR_MAX_CHANNELS or k > PAIR_MAX_FILTERS
            or w_out < 2 or w_out % 2 or jax.default_backend() != "cpu"):
        return lax.conv_general_dilated(x, W, strides, pads, lhs_dilation=lhs_dilation,
                                        dimension_numbers=_NHWC)
    W2 = jnp.concatenate([jnp.pad(W, ((0, 0), (0, 1), (0, 0), (0, 0))),
                          jnp.pad(W, ((0, 0), (1, 0), (0, 0), (0, 0)))], axis=-1)
    y = lax.conv_general_dilated(x, W2, (1, 2), pads, dimension_numbers=_NHWC)
    return y.reshape(*y.shape[:2], w_out, k)


def _offset_products(xpad, dout, window, strides):
    """``dW`` of one chunk of images: ``x_ab^T dout`` for every kernel offset ``(a, b)``.

    With stride 1 the ``kw`` offsets of a kernel row share one slice ``x_a`` of the input
    rows: flattened, the input at ``(i, j + b)`` is ``b`` rows after ``(i, j)``, so dout,
    zero-padded to the padded width and shifted down by ``b``, pairs every input element
    with its output, and one matmul ``x_a^T [dout_0 | dout_1 | ...]`` gives the whole row
    of offsets (the pad columns multiply zeros). Otherwise the book's im2col: one strided
    slice per offset, side by side as rows ``(n * H_out * W_out, kh * kw * C)``, and one
    matmul ``rows^T dout``.
    """
    (kh, kw), c, k, outs = window, xpad.shape[-1], dout.shape[-1], dout.shape[1:3]
    if strides != (1, 1):
        rows = _spatial.im2col(xpad, window, strides, outs).reshape(-1, kh * kw * c)
        return (rows.T @ dout.reshape(-1, k)).reshape(kh, kw, c, k)
    (ho, wo), wp = outs, xpad.shape[2]
    d2 = jnp.pad(dout, ((0, 0), (0, 0), (0, wp - wo), (0, 0))).reshape(-1, k)
    shifted = jnp.concatenate([jnp.pad(d2, ((b, 0), (0, 0)))[:d2.shape[0]] for b in range(kw)], axis=1)
    rows = [lax.slice_in_dim(xpad, a, a + ho, axis=1).reshape(-1, c).T @ shifted for a in range(kh)]
    return jnp.stack([r.reshape(c, kw, k).transpose(1, 0, 2) for r in rows])


def _weight_gradient(x, pads, dout, window, strides, chunk_bytes: int | None = None):
    """``dW[a, b, c, o] = sum_{n, i, j} xpad[n, i*sh + a, j*sw + b, c] dout[n, i, j, o]``,
    summed over chunks of at most ``chunk_bytes`` (default ``DW_CHUNK_BYTES``) of padded images:
    the first chunk, then a ``fori_loop`` over the others, then a shorter last one. Each chunk
    is padded on its own (``xpad`` is never built whole). On a CPU, a stride-1 kernel over at
    most ``DW_CONV_MAX_PIXELS_PER_CHANNEL`` pixels per input channel is one convolution instead
    (``_weight_gradient_by_convolution``)."""
    if (strides == (1, 1) and x.shape[1] * x.shape[2] <= DW_CONV_MAX_PIXELS_PER_CHANNEL * x.shape[3]
            and jax.default_backend() == "cpu"):
        return _weight_gradient_by_convolution(x, pads, dout)
    n = x.shape[0]
    padded = (x.shape[1] + sum(pads[0]), x.shape[2] + sum(pads[1]), x.shape[3])
    per_image = math.prod(padded) * x.dtype.itemsize
    size = max(1, min(n, (chunk_bytes or DW_CHUNK_BYTES) // per_image))
    full, rest = divmod(n, size)

    def products(x_i, dout_i):
        return _offset_products(jnp.pad(x_i, ((0, 0), *pads, (0, 0))), dout_i, window, strides)

    if full <= 1 and not rest:  # one chunk, or no images
        return products(x, dout)

    def chunk(i):
        return products(*(lax.dynamic_slice_in_dim(t, i * size, size) for t in (x, dout)))

    # The first chunk starts the sum (not zeros): inside shard_map it is then already
    # per-device, as the loop's carry must be.
    dW = lax.fori_loop(1, full, lambda i, dW: dW + chunk(i), chunk(0))
    if rest:
        dW = dW + products(x[full * size:], dout[full * size:])
    return dW


def _weight_gradient_by_convolution(x, pads, dout):
    """A stride-1 ``dW`` as one convolution: ``dW[a, b, c, o] = sum_{n, i, j} xpad[n, i + a, j + b, c]
    dout[n, i, j, o]`` is the correlation of the input, read as ``C_in`` images ``(C_in, H, W, N)``
    whose features are the batch, with ``dout`` read as a kernel ``(H_out, W_out, N, filters)``: the
    output ``(C_in, kh, kw, filters)`` is ``dW`` with its first two axes moved. Both operands are
    transposed first, into the layouts XLA's CPU convolution (Eigen's) takes: untransposed, inside
    a training epoch's loop, XLA computed it far more slowly (docs/speed.md)."""
    xT = jnp.transpose(x, (3, 1, 2, 0))  # (C_in, H, W, N): C_in as the batch, N as the features
    dT = jnp.transpose(dout, (1, 2, 0, 3))  # (H_out, W_out, N, filters): a kernel over N features
    return jnp.transpose(lax.conv_general_dilated(xT, dT, (1, 1), pads, dimension_numbers=_NHWC),
                         (1, 2, 0, 3))
