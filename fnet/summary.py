"""``summary(net, input_shape)``: a table of layers, output shapes and parameter counts.

With ``batch_size``, the table also shows what each layer's cache holds: the
memory that backprop pays for, kept from the forward pass until backward.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from fnet import _args
from fnet._text import table
from fnet._trees import path_str
from fnet.core import Layer, Shape, apply, check_shape, param_shapes
from fnet.errors import shape_str


def summary(net: Layer, input_shape: Shape, batch_size: int | None = None, *,
            dtype=jnp.float32) -> str:
    """A printable table: each layer's key path, kind, output shape and parameter count.

    Nested ``sequential`` layers are expanded (``block_0/affine_1``). Nothing is
    allocated: shapes come from ``jax.eval_shape``.

    **Arguments:** ``input_shape`` as for ``init``, e.g. ``(None, 784)``;
    ``batch_size``: if given, two more columns show, per layer, the arrays its
    cache holds for a batch of that size (``f32[100,784]``) and their bytes,
    and the total row adds them up: what backward needs kept from forward.
    ``dtype``: the dtype of the input batch for those columns (default float32).

    **What is counted.** A cache may hold an array that exists anyway: an
    affine layer keeps its ``W`` (the parameter itself, not a copy) and the
    first layer keeps the input batch. Such entries are listed, marked
    ``=W (param)`` or ``=input``, and not counted; so is an array already
    held by an earlier layer's cache (``=<layer> cache``). Layers that behave
    differently in training are traced in training mode (``train=True``).
    The bytes are those of the arrays as the layers hold them; under ``jit``
    XLA may share more (a flattened input is a free reshape of the input).
    """
    shape = check_shape(input_shape, "summary")
    dtype = jax.dtypes.canonicalize_dtype(dtype)  # float64 is float32 unless x64 is enabled
    if batch_size is not None:
        batch_size = _args.count("summary", "batch_size", batch_size, 1)
    leaves: list[tuple[str, Layer, Shape]] = []
    total, _ = _walk(net, "", shape, leaves)
    header = ["layer", "kind", "output shape", "params"]
    rows = [[path, layer.name, shape_str(out), f"{count:,}"] for path, layer, _, out, count in leaves]
    footer = ["total", "", "", f"{total:,}"]
    notes = []
    if batch_size is not None:
        cached = _caches(leaves, shape, batch_size, dtype)
        header += [f"cache (batch {batch_size})", "cache bytes"]
        for row, (text, nbytes) in zip(rows, cached, strict=True):
            row += [text, f"{nbytes:,}"]
        cache_total = sum(n for _, n in cached)
        footer += ["", f"{cache_total:,} ({_readable(cache_total)})"]
        notes += [f"cache bytes: what backward needs kept from forward, for a batch of {batch_size} "
                  f"{jnp.dtype(dtype).name} inputs.",
                  "Listed, not counted: parameters (=W (param)), the input batch (=input), arrays "
                  "an earlier cache holds."]
    return table(header, rows, footer, right={3, 5}) + "".join("\n" + n for n in notes)


def _walk(layer: Layer, prefix: str, shape: Shape, leaves: list) -> tuple[int, Shape]:
    """Append ``(path, layer, input_shape, output_shape, count)`` for every leaf layer."""
    if layer.children:
        total = 0
        for k, child in layer.children:
            count, shape = _walk(child, f"{prefix}{k}/" if child.children else f"{prefix}{k}", shape, leaves)
            total += count
        return total, shape
    params, out = param_shapes(layer, shape)
    count = sum(math.prod(p.shape) for p in jax.tree.leaves(params))
    leaves.append((prefix or layer.name, layer, shape, out, count))
    return count, out


def _caches(leaves: list, input_shape: Shape, batch_size: int, dtype) -> list[tuple[str, int]]:
    """Per leaf layer: (description of its cache leaves, bytes counted), by tracing only."""
    params = {path: param_shapes(layer, shape)[0] for path, layer, shape, _, _ in leaves}
    x = jax.ShapeDtypeStruct((batch_size, *input_shape[1:]), dtype)
    out: list[tuple[str, int]] = []

    def run(params, x):
        # Where each traced array is already held: identity of tracers, so W in a cache is
        # recognised as the parameter itself. keep holds them, so no id() is reused.
        held: dict[int, str] = {id(x): "input"}
        keep = [x]
        for path in params:
            for key, p in jax.tree_util.tree_flatten_with_path(params[path])[0]:
                held[id(p)] = f"{path_str(key)} (param)"
                keep.append(p)
        for i, (path, layer, shape, _, _) in enumerate(leaves):
            state = layer.init_state(shape) if "state" in layer.uses else None
            x, cache, _ = apply(layer, params[path], x, key=jax.random.key(i), train=True, state=state)
            parts, nbytes = [], 0
            for c in jax.tree.leaves(cache):
                text = _array(c)
                if id(c) in held:
                    text += f"={held[id(c)]}"
                else:
                    nbytes += math.prod(c.shape) * c.dtype.itemsize
                    held[id(c)] = f"{path} cache"
                    keep.append(c)
                parts.append(text)
            out.append((" ".join(parts) or "-", nbytes))
        return x

    jax.eval_shape(run, params, x)
    return out


_SHORT = {"float64": "f64", "float32": "f32", "float16": "f16", "bfloat16": "bf16", "int64": "i64",
          "int32": "i32", "int8": "i8", "uint8": "u8", "bool": "bool"}


def _array(a) -> str:
    name = jnp.dtype(a.dtype).name
    return f"{_SHORT.get(name, name)}[{','.join(map(str, a.shape))}]"


def _readable(n: int) -> str:
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
