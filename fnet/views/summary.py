"""``summary(net, input_shape)``: a tree of layers, output shapes and parameter counts.

It walks a network as ``draw_network`` does, through each combinator's ``Layer.wiring``.

With ``batch_size``, the table also shows what each layer's cache holds: the
memory that backprop pays for, kept from the forward pass until backward.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from fnet import _args
from fnet._text import table
from fnet._trees import path_str
from fnet.core import (
    Layer,
    Shape,
    apply,
    check_shape,
    concat_shape,
    fold_time,
    param_shapes,
    reads_ids,
    unfold_time,
    wired_child,
)
from fnet.errors import shape_str


def summary(net: Layer, input_shape: Shape, batch_size: int | None = None, *, dtype=None) -> str:
    """A printable tree: each layer's key path, kind, output shape and parameter count.

    Combinators (``sequential``, ``residual``, ``parallel``, ``time_distributed``, nested in any way)
    are expanded into an indented tree: a combinator's row shows its output
    shape and the parameters of everything beneath it, its children's rows
    follow, indented (``stage_1/block_1/body/conv2d_0``). The total is the
    network's real parameter count. Nothing is allocated: shapes come from
    ``jax.eval_shape``.

    **How a combinator is broken down.** Through its ``Layer.wiring`` (see
    ``fnet.core.Wiring``): which child reads which value, where branches add
    or concatenate. A combinator written by a user that lists ``children`` but
    gives no ``wiring`` is shown as one row, with a note that it could not be
    broken down; its count, shape and cache are still right.

    **Arguments:** ``input_shape`` as for ``init``, e.g. ``(None, 784)``;
    ``batch_size``: if given, two more columns show, per layer, the arrays its
    cache holds for a batch of that size (``f32[100,784]``) and their bytes,
    and the total row adds them up: what backward needs kept from forward.
    ``dtype``: the dtype of the input batch for those columns (default: ``int32`` ids for a
    network that starts with an ``embedding``, ``float32`` otherwise).

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
    if dtype is None:
        dtype = jnp.int32 if reads_ids(net) else jnp.float32
    dtype = jax.dtypes.canonicalize_dtype(dtype)  # float64 is float32 unless x64 is enabled
    if batch_size is not None:
        batch_size = _args.count("summary", "batch_size", batch_size, 1)
    rows: list[_Row] = []
    notes: list[str] = []
    params, out = param_shapes(net, shape)
    total = _count(params)
    if _expands(net):
        _check_wiring(net, net.name, net.wiring(_ShapeWalk(net, "", 0, rows, notes), shape), out, notes)
    else:
        _visit(net, net.name, 0, shape, rows, notes)
    header = ["layer", "kind", "output shape", "params"]
    lines = [["  " * r.depth + r.path, r.layer.name, shape_str(r.out), f"{r.count:,}"] for r in rows]
    footer = ["total", "", "", f"{total:,}"]
    if batch_size is not None:
        cached = _caches(net, rows, shape, batch_size, dtype)
        header += [f"cache (batch {batch_size})", "cache bytes"]
        for line, row in zip(lines, rows, strict=True):
            text, nbytes = cached.get(id(row), ("", None))
            line += [text, "" if nbytes is None else f"{nbytes:,}"]
        cache_total = sum(n for _, n in cached.values())
        footer += ["", f"{cache_total:,} ({_readable(cache_total)})"]
        notes += [f"cache bytes: what backward needs kept from forward, for a batch of {batch_size} "
                  f"{jnp.dtype(dtype).name} inputs.",
                  "Listed, not counted: parameters (=W (param)), the input batch (=input), arrays "
                  "an earlier cache holds."]
    return table(header, lines, footer, right={3, 5}) + "".join("\n" + n for n in notes)


@dataclasses.dataclass(frozen=True)
class _Row:
    path: str
    layer: Layer
    depth: int
    shape: Shape  # input
    out: Shape
    count: int
    leaf: bool  # a row whose cache is reported (not broken down further)


def _count(params) -> int:
    return sum(math.prod(p.shape) for p in jax.tree.leaves(params))


def _expands(layer: Layer) -> bool:
    return bool(layer.children) and layer.wiring is not None


def _visit(layer: Layer, path: str, depth: int, shape: Shape, rows: list, notes: list) -> Shape:
    """Add the rows of ``layer`` (and, for a combinator, of its children) read on input ``shape``."""
    params, out = param_shapes(layer, shape)
    row = _Row(path, layer, depth, shape, out, _count(params), leaf=not _expands(layer))
    rows.append(row)
    if not row.leaf:
        got = layer.wiring(_ShapeWalk(layer, f"{path}/", depth + 1, rows, notes), shape)
        _check_wiring(layer, path, got, out, notes)
    elif layer.children:
        notes.append(f"note: {path} ({layer.name}) lists children but gives no wiring (Layer.wiring), so "
                     "summary cannot break it down; it is shown as one layer")
    return out


def _check_wiring(layer: Layer, path: str, got: Shape, out: Shape, notes: list) -> None:
    if tuple(got) != tuple(out):
        notes.append(f"note: {path} ({layer.name}): its wiring gives shape {shape_str(got)}, but its "
                     f"init gives {shape_str(out)}; the wiring does not describe its forward pass")


class _ShapeWalk:
    """``Wiring`` over shapes: each ``call`` adds the child's rows and returns its output shape."""

    def __init__(self, layer: Layer, prefix: str, depth: int, rows: list, notes: list):
        self.layer, self.prefix, self.depth, self.rows, self.notes = layer, prefix, depth, rows, notes
        self.inputs: dict[str, Shape] = {}

    def call(self, key, shape):
        self.inputs[key] = shape
        child = wired_child(self.layer, key, self.prefix.rstrip("/"))
        return _visit(child, self.prefix + key, self.depth, shape, self.rows, self.notes)

    def transposed(self, key, shape):
        params, _ = param_shapes(wired_child(self.layer, key, self.prefix.rstrip("/")), self.inputs[key])
        return (*shape[:-1], params["W"].shape[0])

    def add(self, *shapes):
        return shapes[0]

    def concat(self, *shapes):
        return concat_shape(shapes)

    def each_step(self, key, shape):
        return unfold_time(shape, self.call(key, fold_time(shape)))


def _caches(net: Layer, rows: list, input_shape: Shape, batch_size: int, dtype) -> dict:
    """``{id(row): (description of its cache leaves, bytes counted)}`` for every leaf row,
    by tracing the network's wiring once, so arrays shared between caches are seen."""
    leaves = {r.path: r for r in rows if r.leaf}  # full key paths: unique
    params = {k: param_shapes(r.layer, r.shape)[0] for k, r in leaves.items()}
    x = jax.ShapeDtypeStruct((batch_size, *input_shape[1:]), dtype)
    out: dict[int, tuple[str, int]] = {}

    def run(params, x):
        # Where each traced array is already held: identity of tracers, so W in a cache is
        # recognised as the parameter itself. keep holds them, so no id() is reused.
        held: dict[int, str] = {id(x): "input"}
        keep = [x]
        for tree in params.values():
            for key, p in jax.tree_util.tree_flatten_with_path(tree)[0]:
                held[id(p)] = f"{path_str(key)} (param)"
                keep.append(p)

        def leaf(path, x):
            row = leaves[path]
            state = row.layer.init_state(row.shape) if "state" in row.layer.uses else None
            y, cache, _ = apply(row.layer, params[path], x, key=jax.random.key(len(out)), train=True,
                                state=state)
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
            out[id(row)] = (" ".join(parts) or "-", nbytes)
            return y

        if _expands(net):
            return net.wiring(_TraceWalk(net, "", leaf, params), x)
        return leaf(net.name, x)

    jax.eval_shape(run, params, x)
    return out


class _TraceWalk:
    """``Wiring`` over traced arrays: a leaf ``call`` runs the layer and records its cache."""

    def __init__(self, layer: Layer, prefix: str, leaf, params: dict):
        self.layer, self.prefix, self.leaf, self.params = layer, prefix, leaf, params

    def call(self, key, x):
        child, path = wired_child(self.layer, key, self.prefix.rstrip("/")), self.prefix + key
        if _expands(child):
            return child.wiring(_TraceWalk(child, f"{path}/", self.leaf, self.params), x)
        return self.leaf(path, x)

    def transposed(self, key, x):
        return x @ self.params[self.prefix + key]["W"].T

    def add(self, *xs):
        return sum(xs[1:], xs[0])

    def concat(self, *xs):
        return jnp.concatenate(xs, axis=-1)

    def each_step(self, key, x):
        y = self.call(key, jnp.reshape(x, fold_time(x.shape)))
        return jnp.reshape(y, unfold_time(x.shape, y.shape))


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
