"""The layer protocol, and the helpers every combinator shares.

A layer is an immutable record of pure functions::

    init(key, input_shape)  -> (params, output_shape)
    forward(params, x)      -> (y, cache)
    backward(cache, dout)   -> (dparams, dx)

``dparams`` has exactly the pytree structure of ``params`` (``{}`` for a layer
without parameters). Shapes are tuples whose batch dimension may be ``None``.

A few layers need more than ``params`` and ``x``: dropout needs a random key and
to know whether it is training; batch norm needs the mode and non-trained
running statistics. Such a layer lists what it needs in ``uses`` and receives
exactly those as keyword arguments; every other layer keeps the plain
signature. See ``docs/design.md`` for the decision and its reasons::

    uses        forward signature                               returns
    {}          forward(params, x)                              (y, cache)
    {"key"}     forward(params, x, *, key)                      (y, cache)
    {"train"}   forward(params, x, *, train)                    (y, cache)
    {"state"}   forward(params, x, *, state)                    (y, cache, new_state)

(any combination; "state" is the only one that changes what comes back).
``apply`` calls any layer uniformly and always returns ``(y, cache, new_state)``.

The combinators (``sequential``, ``residual``, ``parallel``, ``time_distributed``)
live in ``fnet.combinators``; what they share is here: keying children
(``keyed_children``), routing ``key``/``train``/``state`` to a child and checking its
backward (``run_child``, ``back_child``), the checks of their params and state, and
the shape rules of ``Wiring``'s operations (``concat_shape``, ``fold_time``), which
the views (``fnet.views``) use too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import jax

from fnet._trees import Static, check_like
from fnet.errors import LayerError, ProtocolError, ShapeError, shape_str

__all__ = ["Layer", "Static", "Wiring", "apply", "check_dout", "check_shape", "concat_shape", "fold_time",
           "output_shape", "param_shapes", "reads_ids", "unfold_time", "wired_child"]

Shape = tuple  # tuple[int | None, ...]: the batch dimension may be None
Params = Any  # a pytree of arrays
Cache = Any  # a pytree: whatever backward needs, and nothing more
State = Any  # a pytree of non-trained arrays (batch norm's running statistics)

USES = frozenset({"key", "train", "state"})


class Wiring(Protocol):
    """What a combinator's ``wiring(ops, x)`` may do with the values flowing through it.

    ``x`` and the results are opaque values (shapes for ``summary``, traced
    arrays for its cache report, boxes for ``draw_network``): a wiring only
    passes them to these operations, never computes with them itself.
    """

    def call(self, key: str, x: Any) -> Any:
        """The output of the child keyed ``key`` on input ``x``."""

    def add(self, *xs: Any) -> Any:
        """The elementwise sum of branches (the book's add node)."""

    def concat(self, *xs: Any) -> Any:
        """Branches joined along the last axis (features, or NHWC channels)."""

    def each_step(self, key: str, x: Any) -> Any:
        """The child keyed ``key`` applied to every time step of ``x: (N, T, ...)`` (``time_distributed``)."""

    def transposed(self, key: str, x: Any) -> Any:
        """``x`` times the transpose of the table of child ``key``, an ``embedding``: the output layer
        of a language model whose weights are tied to its input embedding (``tied_embedding``)."""


@dataclasses.dataclass(frozen=True)
class Layer:
    """A layer: a name and a set of pure functions (see the module docstring).

    **Fields:**

    - ``name``: the layer kind, e.g. ``"affine"``; ``sequential`` derives
      parameter keys from it (``affine_0``, ``affine_1``).
    - ``init(key, input_shape) -> (params, output_shape)``.
    - ``forward(params, x, **ctx) -> (y, cache)`` (``(y, cache, new_state)`` if
      ``"state"`` is in ``uses``).
    - ``backward(cache, dout) -> (dparams, dx)``.
    - ``uses``: which of ``"key"``, ``"train"``, ``"state"`` forward takes.
    - ``init_state(input_shape) -> state``: required when ``"state"`` is used.
    - ``children``: ``(key, layer)`` pairs of a combinator, for introspection.
    - ``wiring(ops, x) -> y``: how a combinator connects its children, for
      introspection (``fnet.views.summary``, ``fnet.views.draw_network``). It is the
      forward pass told in the operations of ``ops`` (see ``Wiring``):
      ``ops.call(key, x)`` runs the child ``key``, ``ops.add(*xs)`` sums
      branches, ``ops.concat(*xs)`` joins them along the last axis,
      ``ops.each_step(key, x)`` runs a child on every time step,
      ``ops.transposed(key, x)`` applies an embedding child's table transposed;
      using a value twice is a fan-out. ``sequential``'s is ``for k in keys: x =
      ops.call(k, x)``. A combinator that lists ``children`` without a wiring
      is shown as one box: summary says it cannot break it down.
    """

    name: str
    init: Callable[[jax.Array, Shape], tuple[Params, Shape]]
    forward: Callable[..., tuple]
    backward: Callable[[Cache, jax.Array], tuple[Params, jax.Array]]
    uses: frozenset[str] = frozenset()
    init_state: Callable[[Shape], State] | None = None
    children: tuple[tuple[str, Layer], ...] = ()
    wiring: Callable[[Wiring, Any], Any] | None = None

    def __post_init__(self):
        object.__setattr__(self, "uses", frozenset(self.uses))
        unknown = self.uses - USES
        if unknown:
            raise ValueError(f"layer {self.name!r}: unknown entries in uses: {sorted(unknown)}; "
                             f"allowed are {sorted(USES)}")
        if ("state" in self.uses) != (self.init_state is not None):
            raise ValueError(f"layer {self.name!r}: a layer that uses 'state' must give init_state, "
                             "and only such a layer may")

    def __repr__(self) -> str:
        if self.children:
            inner = ", ".join(f"{k}={c!r}" for k, c in self.children)
            return f"{self.name}({inner})"
        return f"{self.name}()"


def check_shape(shape: Any, layer: str) -> Shape:
    """Validate an ``input_shape`` argument: a tuple of ints, the first may be None."""
    ok = isinstance(shape, (tuple, list)) and all(
        (d is None and i == 0) or (isinstance(d, int) and not isinstance(d, bool) and d >= 0)
        for i, d in enumerate(shape))
    if not ok:
        raise ShapeError(layer, f"input_shape must be a tuple of non-negative ints whose first "
                                f"(batch) entry may be None, e.g. (None, 784); got {shape!r}")
    return tuple(shape)


def apply(layer: Layer, params: Params, x: jax.Array, *, key: jax.Array | None = None,
          train: bool | None = None, state: State | None = None) -> tuple[jax.Array, Cache, State]:
    """Run any layer's forward with a uniform signature.

    **Arguments:** ``key`` for layers that draw random numbers (dropout in
    training), ``train`` (required when the layer behaves differently in
    training and evaluation), ``state`` (required when the layer keeps
    non-trained state; start from ``layer.init_state(input_shape)``).

    **Returns:** ``(y, cache, new_state)``; ``new_state`` is ``None`` for a layer
    without state.
    """
    if "train" in layer.uses and train is None:
        raise ValueError(f"{layer.name}: this network behaves differently in training and in "
                         "evaluation (it holds dropout or batch norm); pass train=True or train=False")
    if "state" in layer.uses and state is None:
        raise ValueError(f"{layer.name}: this network keeps non-trained state (batch norm running "
                         "statistics); pass state=..., starting from net.init_state(input_shape)")
    return _call(layer, params, x, {"key": key, "train": train, "state": state})


def _call(layer: Layer, params: Params, x: jax.Array, ctx: Mapping[str, Any]):
    kwargs = {k: ctx[k] for k in layer.uses}
    try:
        out = layer.forward(params, x, **kwargs)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        if isinstance(e, LayerError):
            raise
        _check_params_fit(layer, params, x, e)  # params of another layer: say so; else the error as it was
        raise
    stateful = "state" in layer.uses
    if not isinstance(out, tuple) or len(out) != (3 if stateful else 2):
        want = "(y, cache, new_state) (it uses 'state')" if stateful else "(y, cache)"
        raise ProtocolError(layer.name, f"forward must return {want}; it returned {_describe(out)}")
    return out if stateful else (*out, None)


def _check_params_fit(layer: Layer, params: Params, x, error: Exception) -> None:
    """After ``layer``'s forward failed with a plain error: when ``params`` are not the structure and
    shapes ``layer.init`` makes for ``x``, raise a ``ShapeError`` naming the first key path that differs
    and both structures (the usual cause: params made by another layer, or edited)."""
    try:
        expected, _ = param_shapes(layer, (None, *jax.numpy.shape(x)[1:]))
    except Exception:  # the input itself does not fit: the original error says more
        return
    try:
        check_like("forward", "params", params, expected, against=f"the parameters {layer.name} makes")
    except ValueError as mismatch:
        got = jax.tree.map(lambda a: tuple(jax.numpy.shape(a)), params)
        want = jax.tree.map(lambda a: tuple(a.shape), expected)
        why = str(mismatch).removeprefix("forward: ")
        raise ShapeError(layer.name, f"{why}. The layer's parameters are {want}; got {got}. Were they made "
                                     "by init of another layer?") from error


def _describe(value) -> str:
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__}" + (f" of shape {shape_str(shape)}" if shape is not None else "")


def backward_pair(layer: Layer, cache: Cache, dout: jax.Array) -> tuple[Params, jax.Array]:
    """``layer.backward(cache, dout)``, checked to return the pair ``(dparams, dx)``."""
    out = layer.backward(cache, dout)
    if not isinstance(out, tuple) or len(out) != 2:
        raise ProtocolError(layer.name, f"backward must return (dparams, dx), with dparams = {{}} for a "
                                        f"layer without parameters; it returned {_describe(out)}")
    return out


def param_shapes(layer: Layer, input_shape: Shape) -> tuple[Any, Shape]:
    """``(params as ShapeDtypeStructs, output_shape)``, without allocating anything."""
    box = []

    def run(key):
        params, shape = layer.init(key, input_shape)
        box.append(shape)
        return params

    shapes = jax.eval_shape(lambda: run(jax.random.key(0)))  # the key traced too: nothing runs
    return shapes, box[0]


def output_shape(layer: Layer, input_shape: Shape) -> Shape:
    """The output shape of ``layer`` for ``input_shape``, without allocating parameters."""
    return param_shapes(layer, input_shape)[1]


def wired_child(layer: Layer, key: str, where: str = "") -> Layer:
    """The child ``key`` of a combinator, as its ``wiring`` names it (``Wiring.call(key, x)``).

    **Raises:** ``ShapeError`` naming the combinator (``where``: its key path) and its children
    when it has none of that key: a wiring may only name the keys of ``Layer.children``.
    """
    for k, child in layer.children:
        if k == key:
            return child
    keys = [k for k, _ in layer.children]
    named = f"{where} ({layer.name})" if where and where != layer.name else layer.name
    raise ShapeError(named, f"its wiring calls a child {key!r}, but its children are {keys}; a wiring may "
                            "only name the keys of Layer.children")


def reads_ids(net: Layer) -> bool:
    """Whether ``net``'s first layer is an ``embedding``: its inputs are integer ids, not floats."""
    while net.children:
        net = net.children[0][1]
    return net.name == "embedding"


# ------------------------------------------------------------------- the shapes of Wiring's operations


def concat_shape(shapes) -> Shape:
    """The shape of ``Wiring.concat``: branches joined along the last axis, ``(..., F1), (..., F2) ->
    (..., F1 + F2)``."""
    return (*tuple(shapes[0])[:-1], sum(s[-1] for s in shapes))


def fold_time(shape: Shape) -> Shape:
    """``(N, T, ...) -> (N * T, ...)``: every time step one more example (``Wiring.each_step``).

    ``N * T`` is ``None`` when either is unknown. The caller checks that ``shape`` has a time axis.
    """
    n, t = shape[:2]
    return (None if n is None or t is None else n * t, *shape[2:])


def unfold_time(shape: Shape, folded_out: Shape) -> Shape:
    """``fold_time`` undone for an output: ``(N, T, ...)``, ``(N * T, *rest)`` -> ``(N, T, *rest)``."""
    return (*shape[:2], *folded_out[1:])


# --------------------------------------------------------------------------- what combinators share


def keyed_children(who: str, items: tuple) -> tuple[tuple[str, Layer], ...]:
    """``(key, layer)`` pairs for a combinator's arguments, keyed as ``sequential`` keys them.

    A layer is keyed by its name and a per-name counter (``affine_0``, ``relu_0``,
    ``affine_1``); a ``(key, layer)`` pair names it explicitly. Duplicate keys raise.
    """
    children: list[tuple[str, Layer]] = []
    counts: dict[str, int] = {}
    for item in items:
        if isinstance(item, Layer):
            n = counts.get(item.name, 0)
            counts[item.name] = n + 1
            children.append((f"{item.name}_{n}", item))
        elif (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
              and isinstance(item[1], Layer)):
            children.append(item)
        else:
            raise TypeError(f"{who}: every argument must be a Layer or a (key, Layer) pair; "
                            f"got {item!r}. Did you forget to call a constructor, e.g. relu() "
                            "rather than relu?")
    keys = [k for k, _ in children]
    dups = sorted({k for k in keys if keys.count(k) > 1})
    if dups:
        raise ValueError(f"{who}: duplicate parameter keys {dups}; give explicit keys with "
                         "(key, layer) pairs")
    return tuple(children)


def guard(key: str, fn: Callable, *args):
    """``fn(*args)``; a ``LayerError`` raised inside gets ``key`` prepended to its path."""
    try:
        return fn(*args)
    except LayerError as e:
        e.add_key(key)
        raise


def check_context(who: str, uses: frozenset, ctx: Mapping[str, Any]) -> None:
    """A combinator's forward must get exactly what its children use (``key``, ``train``, ``state``)."""
    if set(ctx) != uses:
        needs = ", ".join(f"{u}=..." for u in sorted(uses)) or "nothing beyond params and x"
        raise TypeError(f"{who}.forward takes {needs} (its layers use {sorted(uses)}); "
                        f"got {sorted(ctx)}. fnet.apply(net, params, x, key=..., train=..., "
                        "state=...) calls any layer uniformly")


def run_child(k: str, i: int, child: Layer, params: Params, x: jax.Array, ctx: Mapping[str, Any]):
    """Child ``k`` (position ``i``) of a combinator on ``x``: ``(y, cache, new_state, spec)``.

    The child gets only what it uses: the mode as given, the key
    ``fold_in(key, i)`` (different for every child, deterministic) and its own
    entry ``state[k]``. ``spec`` records the shapes that ``back_child`` checks.
    """
    sub = {}
    if "train" in child.uses:
        sub["train"] = ctx["train"]
    if "key" in child.uses:
        sub["key"] = None if ctx["key"] is None else jax.random.fold_in(ctx["key"], i)
    if "state" in child.uses:
        sub["state"] = ctx["state"][k]
    x_shape = jax.numpy.shape(x)
    y, cache, new_state = guard(k, _call, child, params, x, sub)
    leaves, treedef = jax.tree.flatten(params)
    return y, cache, new_state, (treedef, tuple(jax.numpy.shape(p) for p in leaves), x_shape)


def back_child(k: str, child: Layer, cache: Cache, dout: jax.Array, spec) -> tuple[Params, jax.Array]:
    """Child ``k``'s backward, checked: ``dparams`` mirrors its params, ``dx`` has its input's shape."""
    dp, dx = guard(k, backward_pair, child, cache, dout)
    _check_grads(k, child.name, dp, dx, spec)
    return dp, dx


def check_dout(who: str, dout: jax.Array, y_shape: Shape) -> None:
    """The one check of a backward's ``dout``: it is ``dL/dy`` and must have the shape of forward's ``y``.

    Every layer that checks its ``dout`` calls this (the combinators, ``affine``,
    ``embedding``, the recurrent layers), so the message is the same everywhere.
    """
    if jax.numpy.shape(dout) != tuple(y_shape):
        got = shape_str(jax.numpy.shape(dout))
        raise ShapeError(who, f"backward got dout of shape {got}, but the output y had shape "
                              f"{shape_str(y_shape)}; dout is dL/dy and must have y's shape")


def check_child_params(who: str, params: Params, keys: list[str]) -> None:
    """A combinator's ``params`` must be a dict with exactly its children's keys."""
    if not isinstance(params, Mapping):
        raise ShapeError(who, f"params must be the dict that init returned (keys {keys}); "
                                       f"got {type(params).__name__}")
    missing = [k for k in keys if k not in params]
    extra = [k for k in params if k not in keys]
    if missing or extra:
        raise ShapeError(who, f"params do not match this network: missing {missing}, "
                                       f"unexpected {extra}. Were they made by init of a different net?")


def check_child_state(who: str, state: State, keys: list[str]) -> None:
    """A combinator's ``state`` must be a dict with exactly the keys of its children that keep state."""
    if not isinstance(state, Mapping) or sorted(state) != sorted(keys):
        got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
        raise ShapeError(who, f"state must have entries {keys} (from net.init_state); got {got}")


def _check_grads(key: str, kind: str, dparams, dx, spec) -> None:
    treedef, leaf_shapes, x_shape = spec
    leaves, got_def = jax.tree.flatten(dparams)
    if got_def != treedef:
        e = ShapeError(kind, f"backward returned dparams with structure {got_def}, but the params have "
                             f"structure {treedef}; dparams must mirror params exactly ({{}} for a "
                             "layer without parameters)")
        e.add_key(key)
        raise e
    for i, (g, shape) in enumerate(zip(leaves, leaf_shapes, strict=True)):
        if jax.numpy.shape(g) != shape:
            e = ShapeError(kind, f"backward returned a gradient of shape {jax.numpy.shape(g)} for a "
                                 f"parameter of shape {shape} (leaf {i}); they must match")
            e.add_key(key)
            raise e
    if jax.numpy.shape(dx) != x_shape:
        e = ShapeError(kind, f"backward returned dx of shape {shape_str(jax.numpy.shape(dx))}, but the "
                             f"layer's input had shape {shape_str(x_shape)}; they must match")
        e.add_key(key)
        raise e
