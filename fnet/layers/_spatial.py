"""Window geometry shared by convolution and pooling on NHWC images.

A window of size ``k`` slides over ``n`` positions padded with ``lo`` before and
``hi`` after, in steps of ``s``; it fits ``out = (n + lo + hi - k) // s + 1``
times (the book's ``(H + 2 * pad - FH) / stride + 1``). When ``s`` does not divide
``n + lo + hi - k``, the last ``unused`` padded rows are in no window: they do
not reach the output and get no gradient.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax

from fnet.errors import ShapeError, shape_str

Pads = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


def pair(layer: str, name: str, value, *, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints, each ``>= minimum``, as ``(height, width)``."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum
                                   for v in values):
        raise ValueError(f"{layer}: {name} must be an int >= {minimum} or a pair of them "
                         f"(height, width); got {value!r}")
    return values


def padding_spec(layer: str, padding):
    """Validate ``padding``: ``"SAME"``, ``"VALID"``, an int, ``(ph, pw)``, or
    ``((top, bottom), (left, right))``. Returns ``"SAME"``/``"VALID"`` or explicit ``Pads``."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f"{layer}: padding must be 'SAME', 'VALID', an int or pairs of ints; "
                             f"got {padding!r}")
        return padding.upper()
    if (isinstance(padding, (tuple, list)) and len(padding) == 2
            and all(isinstance(p, (tuple, list)) for p in padding)):
        pads = tuple(pair(layer, "padding", p, minimum=0) for p in padding)
        return pads
    ph, pw = pair(layer, "padding", padding, minimum=0)
    return ((ph, ph), (pw, pw))


def resolve_padding(spec, in_hw, window, strides) -> Pads:
    """Explicit ``((top, bottom), (left, right))`` for an input of spatial size ``in_hw``.

    ``"SAME"`` as in TensorFlow: ``ceil(n / s)`` outputs, the extra row (if the
    total is odd) at the bottom/right. ``"VALID"``: no padding.
    """
    if spec == "VALID":
        return ((0, 0), (0, 0))
    if spec == "SAME":
        pads = []
        for n, k, s in zip(in_hw, window, strides, strict=True):
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    return spec


def out_hw(in_hw, window, strides, pads: Pads) -> tuple[int, int]:
    """Output spatial size ``(n + lo + hi - k) // s + 1`` per axis."""
    return tuple((n + lo + hi - k) // s + 1
                 for n, k, s, (lo, hi) in zip(in_hw, window, strides, pads, strict=True))


def unused(in_hw, window, strides, pads: Pads, outs) -> tuple[int, int]:
    """Padded rows/columns after the last window, per axis (they get no gradient)."""
    return tuple(n + lo + hi - ((o - 1) * s + k)
                 for n, k, s, (lo, hi), o in zip(in_hw, window, strides, pads, outs, strict=True))


def image_rank(layer: str, shape) -> None:
    """Raise a ``ShapeError`` unless ``shape`` is ``(N, H, W, C)``, with a hint for the usual mistakes."""
    if len(shape) == 4:
        return
    hint = ""
    if len(shape) == 2:
        side = math.isqrt(shape[1])
        if side * side == shape[1]:
            hint = (f" If these are flattened images, reshape them: x.reshape(-1, {side}, {side}, 1), "
                    "or load them with flatten=False.")
        else:
            hint = " If these are flattened images, reshape them to (N, H, W, C)."
    elif len(shape) == 3:
        hint = (" For a batch of one-channel images (N, H, W), add the channel axis: x[..., None]; "
                "for a single image (H, W, C), add the batch axis: x[None].")
    raise ShapeError(layer, f"expected images of shape (N, H, W, C) (channels last, 4 axes), got "
                            f"shape {shape_str(shape)}.{hint}")


def nchw_hint(shape) -> str:
    """A hint when ``shape`` looks channels-first ``(N, C, H, W)`` (the book's layout)."""
    if len(shape) == 4 and shape[1] in (1, 3) and shape[2] > 3 and shape[3] > 3:
        return (f" The input {shape_str(shape)} looks channels-first (N, C, H, W), the book's layout; "
                "fnet is channels-last: use x.transpose(0, 2, 3, 1).")
    return ""


def check_window_fits(layer: str, what: str, shape, window, pads: Pads) -> None:
    """Raise a ``ShapeError`` if the window is larger than the padded input."""
    for axis, n, k, (lo, hi) in zip(("height", "width"), shape[1:3], window, pads, strict=True):
        if n + lo + hi < k:
            raise ShapeError(layer, f"the {what} {window[0]}x{window[1]} is larger than the padded "
                                    f"input: {axis} {n} + padding {lo}+{hi} < {k} (input shape "
                                    f"{shape_str(shape)}).{nchw_hint(shape)}")


def offsets(xpad, window, strides, outs):
    """Yield ``(a, b, x_ab)``: the element at offset ``(a, b)`` of every window, in row-major order.

    Windows that tile the input (stride = window) are read through a reshape, ``(N, H_out, kh,
    W_out, kw * C)``, whose offsets are plain slices: XLA's CPU loops run them faster than
    strided ones (docs/speed.md)."""
    (kh, kw), (sh, sw), (ho, wo) = window, strides, outs
    n, _, _, c = xpad.shape
    if (sh, sw) == (kh, kw):
        tiles = xpad[:, :ho * kh, :wo * kw, :].reshape(n, ho, kh, wo, kw * c)
        for a in range(kh):
            for b in range(kw):
                yield a, b, tiles[:, :, a, :, b * c:(b + 1) * c]
        return
    for a in range(kh):
        for b in range(kw):
            yield a, b, lax.slice(xpad, (0, a, b, 0), (n, a + (ho - 1) * sh + 1, b + (wo - 1) * sw + 1, c),
                                  (1, sh, sw, 1))


def im2col(xpad, window, strides, outs):
    """The book's ``im2col``: every window as a row, ``(N, H_out, W_out, kh * kw * C)``, the
    window's elements in the order of ``offsets`` (kernel row, kernel column, channel)."""
    return jnp.concatenate([x_ab for _, _, x_ab in offsets(xpad, window, strides, outs)], axis=-1)
