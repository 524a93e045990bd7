"""``summary(net, input_shape)``: a table of layers, output shapes and parameter counts."""

from __future__ import annotations

import math

import jax

from fnet.core import Layer, Shape, check_shape, param_shapes
from fnet.errors import shape_str


def summary(net: Layer, input_shape: Shape) -> str:
    """A printable table: each layer's key path, kind, output shape and parameter count.

    Nested ``sequential`` layers are expanded (``block_0/affine_1``). Nothing is
    allocated: shapes come from ``jax.eval_shape``.
    """
    shape = check_shape(input_shape, "summary")
    rows = [("layer", "kind", "output shape", "params")]
    total, _ = _walk(net, "", shape, rows)
    rows.append(("total", "", "", f"{total:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for i, r in enumerate(rows):
        if i == len(rows) - 1 or i == 1:
            lines.append("  ".join("-" * w for w in widths))
        cells = [c.ljust(w) if j < 3 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _walk(layer: Layer, prefix: str, shape: Shape, rows: list) -> tuple[int, Shape]:
    """Append rows for ``layer``; return its parameter count and output shape."""
    if layer.children:
        total = 0
        for k, child in layer.children:
            count, shape = _walk(child, f"{prefix}{k}/" if child.children else f"{prefix}{k}", shape, rows)
            total += count
        return total, shape
    params, out = param_shapes(layer, shape)
    count = sum(math.prod(p.shape) for p in jax.tree.leaves(params))
    rows.append((prefix or layer.name, layer.name, shape_str(out), f"{count:,}"))
    return count, out
