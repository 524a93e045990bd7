"""Pooling layers: the book's ``Pooling`` (chapter 7, max) and average pooling, channels-last.

Both slide a ``ph x pw`` window over ``x: (N, H, W, C)`` in steps of the stride,
per channel, giving ``y: (N, H_out, W_out, C)`` with
``H_out = (H + top + bottom - ph) // sh + 1``. Neither has parameters.

Both are written as a loop over the ``ph * pw`` offsets ``(a, b)`` of the window
(a few, e.g. 4 for 2x2): ``x_ab = xpad[:, a::sh, b::sw, :]`` (``H_out x W_out``
entries) is the element at offset ``(a, b)`` of every window. The backward pass
sends each window's gradient back to its elements, the same loop transposed:
``spread`` places a ``(N, H_out, W_out, C)`` array at rows ``a, a + sh, ...``
and sums the offsets, so overlapping windows (stride < pool) accumulate. For
non-overlapping windows (stride == pool, no padding, the common 2x2 case) the
offsets interleave and a reshape puts them in place without any sum.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from fnet.core import Layer, Static, check_shape
from fnet.layers import _spatial
from fnet.layers._checks import float_input


def _pool_setup(layer: str, pool_size, stride, padding):
    window = _spatial.pair(layer, "pool_size", pool_size)
    strides = window if stride is None else _spatial.pair(layer, "stride", stride)
    pad_spec = _spatial.padding_spec(layer, padding)
    if not isinstance(pad_spec, str) and any(p >= k for (lo, hi), k in zip(pad_spec, window, strict=True)
                                             for p in (lo, hi)):
        raise ValueError(f"{layer}: padding {padding!r} must be smaller than the pool size {pool_size!r}, "
                         "so that every window holds at least one input element")

    def geometry(shape):
        _spatial.image_rank(layer, shape)
        pads = _spatial.resolve_padding(pad_spec, shape[1:3], window, strides)
        _spatial.check_window_fits(layer, "pool window", shape, window, pads)
        outs = _spatial.out_hw(shape[1:3], window, strides, pads)
        # Non-overlapping windows: each input element is in at most one window.
        tiled = strides == window and pads == ((0, 0), (0, 0))
        return pads, outs, tiled

    def init(key, input_shape):
        shape = check_shape(input_shape, layer)
        _, (h_out, w_out), _ = geometry(shape)
        return {}, (shape[0], h_out, w_out, shape[3])

    return window, strides, geometry, init


def _spread(parts, x_shape, window, strides, pads, outs, tiled):
    """The transpose of ``_spatial.offsets``: ``dx`` with ``parts[a][b]`` summed into the rows and
    columns that offset ``(a, b)`` of each window read. Padding is cropped; rows that no
    window reached get zero."""
    (kh, kw), (sh, sw), ((top, _), (left, _)), (ho, wo) = window, strides, pads, outs
    n, h, w, c = x_shape
    if tiled:
        # rows i*kh + a for a in range(kh): interleave the offsets by stacking and reshaping
        d = jnp.stack([jnp.stack(row, axis=3) for row in parts], axis=2)  # (N, Ho, kh, Wo, kw, C)
        d = d.reshape(n, ho * kh, wo * kw, c)
        return jnp.pad(d, ((0, 0), (0, h - ho * kh), (0, w - wo * kw), (0, 0)))
    dx = jnp.zeros(x_shape, parts[0][0].dtype)
    for a in range(kh):
        for b in range(kw):
            # Put part[i, j] at padded row a + i*sh (interior padding sh - 1), then crop the padding
            # (negative edge padding crops): low a - top, high chosen so the result has H rows.
            lo_h, lo_w = a - top, b - left
            dx = dx + lax.pad(parts[a][b], jnp.zeros((), dx.dtype), (
                (0, 0, 0),
                (lo_h, h - lo_h - (ho - 1) * sh - 1, sh - 1),
                (lo_w, w - lo_w - (wo - 1) * sw - 1, sw - 1),
                (0, 0, 0)))
    return dx


def max_pool2d(pool_size: int | tuple[int, int] = 2, stride: int | tuple[int, int] | None = None,
               padding: int | tuple | str = 0) -> Layer:
    """Max pooling: ``y[n, i, j, c] = max over the window of xpad[n, i*sh + a, j*sw + b, c]``.

    **Shapes:** ``x: (N, H, W, C) -> y: (N, H_out, W_out, C)`` (see the module docstring).

    **Tie rule:** when several elements of a window share the maximum, the
    gradient goes to **one** of them, the first in row-major order within the
    window (smallest row offset ``a``, then smallest column offset ``b``), as
    JAX's own derivative of ``lax.reduce_window`` max and the book's ``np.argmax`` do.
    A NaN in a window is its maximum (it propagates, as in ``jnp.max``).

    **Cache:** ``arg_max``: for each output, the offset ``a * pw + b`` of its
    maximum in the window, ``(N, H_out, W_out, C)`` int8 (the book's ``arg_max``),
    and the static geometry.

    **Derivative:** ``dy/dx = 1`` for the chosen maximum of each window, 0 for
    the rest: ``dx`` receives ``dout`` at each window's ``arg_max``, summed
    where windows overlap (stride < pool).

    **Arguments:** ``pool_size``, ``stride`` (default: ``pool_size``,
    non-overlapping windows, as the book's ``Pooling(2, 2, stride=2)``): an int
    or ``(height, width)``; ``padding``: an int, ``(ph, pw)``,
    ``((top, bottom), (left, right))``, ``"VALID"`` or ``"SAME"``, smaller than
    the window. Padding is ``-inf``, so it never wins (the book pads with 0).
    """
    window, strides, geometry, init = _pool_setup("max_pool2d", pool_size, stride, padding)
    index_dtype = jnp.int8 if window[0] * window[1] <= 127 else jnp.int32

    def forward(params, x):
        x = float_input("max_pool2d", x)
        pads, outs, tiled = geometry(x.shape)
        xpad = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)
        best, arg_max = None, None
        for a, b, x_ab in _spatial.offsets(xpad, window, strides, outs):
            if best is None:
                best, arg_max = x_ab, jnp.zeros(x_ab.shape, index_dtype)
                continue
            # strictly greater: an equal value later in the window does not take over (tie rule)
            take = (x_ab > best) | jnp.isnan(x_ab)
            best = jnp.where(take, x_ab, best)
            arg_max = jnp.where(take, jnp.asarray(a * window[1] + b, index_dtype), arg_max)
        return best, (arg_max, Static((x.shape, pads, outs, tiled)))

    def backward(cache, dout):
        arg_max, geo = cache
        x_shape, pads, outs, tiled = geo.value
        kw = window[1]
        parts = [[jnp.where(arg_max == a * kw + b, dout, 0) for b in range(kw)] for a in range(window[0])]
        return {}, _spread(parts, x_shape, window, strides, pads, outs, tiled)

    return Layer("max_pool2d", init, forward, backward)


def avg_pool2d(pool_size: int | tuple[int, int] = 2, stride: int | tuple[int, int] | None = None,
               padding: int | tuple | str = 0) -> Layer:
    """Average pooling: ``y[n, i, j, c] = mean over the window of xpad[n, i*sh + a, j*sw + b, c]``.

    **Shapes:** ``x: (N, H, W, C) -> y: (N, H_out, W_out, C)`` (see the module docstring).
    Padding is zeros and counts in the mean: every window divides by ``ph * pw``
    (PyTorch's default ``count_include_pad=True``).

    **Cache:** only the static geometry (no array).

    **Derivative:** ``dy/dx = 1 / (ph * pw)`` for every element of the window:
    ``dx`` receives ``dout / (ph * pw)`` at every element of each window,
    summed where windows overlap.

    **Arguments:** as ``max_pool2d``.
    """
    window, strides, geometry, init = _pool_setup("avg_pool2d", pool_size, stride, padding)
    size = window[0] * window[1]

    def forward(params, x):
        x = float_input("avg_pool2d", x)
        pads, outs, tiled = geometry(x.shape)
        xpad = jnp.pad(x, ((0, 0), *pads, (0, 0)))
        total = sum(x_ab for _, _, x_ab in _spatial.offsets(xpad, window, strides, outs))
        return total / size, Static((x.shape, pads, outs, tiled))

    def backward(cache, dout):
        x_shape, pads, outs, tiled = cache.value
        part = dout / size
        parts = [[part] * window[1] for _ in range(window[0])]
        return {}, _spread(parts, x_shape, window, strides, pads, outs, tiled)

    return Layer("avg_pool2d", init, forward, backward)


def global_avg_pool2d() -> Layer:
    """Global average pooling: ``y[n, c] = mean over i, j of x[n, i, j, c]``.

    The head of a ResNet: one number per channel, whatever the image size.

    **Shapes:** ``x: (N, H, W, C) -> y: (N, C)``.

    **Cache:** only the input shape (no array).

    **Derivative:** every one of the ``H * W`` positions counts ``1 / (H * W)``
    in the mean, so ``dx[n, i, j, c] = dout[n, c] / (H * W)``: ``dout`` spread
    evenly over the image (a broadcast).
    """
    def init(key, input_shape):
        shape = check_shape(input_shape, "global_avg_pool2d")
        _spatial.image_rank("global_avg_pool2d", shape)
        return {}, (shape[0], shape[3])

    def forward(params, x):
        x = float_input("global_avg_pool2d", x)
        _spatial.image_rank("global_avg_pool2d", x.shape)
        return jnp.mean(x, axis=(1, 2)), Static(x.shape)

    def backward(cache, dout):
        n, h, w, c = cache.value
        return {}, jnp.broadcast_to((dout / (h * w))[:, None, None, :], (n, h, w, c))

    return Layer("global_avg_pool2d", init, forward, backward)
