"""The gradient-equivalence harness: handwritten backward vs ``jax.vjp`` of the same forward.

Each ``compare_*`` function returns a dict ``{name: relative error}``, one entry
per gradient (every parameter leaf and the input), so tests can assert a bound
and the "harness can fail" tests can assert that a wrong rule exceeds it.

Relative error of two arrays: ``max|a - b| / max(max|a|, max|b|)`` (0 when both
are exactly zero): the worst entry, measured against the gradient's scale.

A gradient that is zero in exact arithmetic (the bias of an affine layer in front
of batch norm in training, whose mean subtraction cancels it) comes out of both
rules as roundoff, ~1e-16 of the other gradients in float64; measured against its
own scale that is a relative error of about 1. So each gradient's scale is taken
as at least ``ZERO_FLOOR`` (1e-4) times the largest gradient entry of the same
comparison (parameters and input together): a gradient 10^4 times smaller than
the rest must agree to 1e-14 of the largest (float64 at 1e-10), while a wrong
rule is off by far more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import fnet

ZERO_FLOOR = 1e-4

# The tolerances, defined once for every gradient test. float32 has 24 bits; summing a few
# hundred products in a different order than autodiff's transposed graph costs a few ulps,
# ~1e-6 relative, so 1e-5 leaves a margin while still catching any wrong rule, whose error
# is O(1). WRONG: a wrong rule is off by this much or more (roundoff is 1e-16 in float64).
TOL64 = 1e-10
TOL32 = 1e-5
WRONG = 1e-3


def rel_err(a, b, floor: float = 0.0) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0), floor)
    diff = np.max(np.abs(a - b), initial=0.0)
    return 0.0 if diff == 0.0 else float(diff / scale) if scale > 0 else float("inf")


def _errors(prefix: str, got, want) -> dict[str, float]:
    got_leaves, _ = jax.tree_util.tree_flatten_with_path(got)
    want_leaves, _ = jax.tree_util.tree_flatten_with_path(want)
    assert jax.tree.structure(got) == jax.tree.structure(want), (
        f"{prefix}: handwritten structure {jax.tree.structure(got)} != autodiff {jax.tree.structure(want)}")
    floor = ZERO_FLOOR * max((float(np.max(np.abs(np.asarray(v, np.float64)), initial=0.0))
                              for _, v in got_leaves + want_leaves), default=0.0)
    out = {}
    for (path, g), (_, w) in zip(got_leaves, want_leaves, strict=True):
        name = prefix + jax.tree_util.keystr(path)
        assert jnp.shape(g) == jnp.shape(w), f"{name}: shape {jnp.shape(g)} != {jnp.shape(w)}"
        assert jnp.result_type(g) == jnp.result_type(w), (
            f"{name}: dtype {jnp.result_type(g)} != {jnp.result_type(w)}")
        out[name] = rel_err(g, w, floor)
    return out


def cast(tree, dtype):
    """Floating leaves of ``tree`` cast to ``dtype``; other leaves unchanged."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a,
                        tree)


def compare_layer(layer: fnet.Layer, x_shape: tuple, *, dtype=jnp.float64, seed: int = 0,
                  train: bool | None = True, x_fn: Callable | None = None,
                  state: Any = None) -> dict[str, float]:
    """Handwritten ``backward`` vs ``jax.vjp`` of ``forward`` on random params, input and dout.

    ``x_fn(key, shape, dtype)`` makes the input (default: standard normal);
    ``state``: the layer's state (default: ``layer.init_state``), e.g. running
    statistics that are not the initial zeros and ones, for evaluation mode.

    Everything, from the parameters to both backward passes, runs in one jitted
    function: one compilation per case rather than one per eager operation.
    The handwritten backward gets the cache of the very forward pass that
    ``jax.vjp`` differentiates (``has_aux``), so the forward is traced once.
    """
    pair = bool(x_shape) and isinstance(x_shape[0], tuple)  # two inputs: x = (first, second)
    x_fn = x_fn or (pair_of(jax.random.normal, jax.random.normal) if pair else jax.random.normal)
    init_shape = tuple((None, *s[1:]) for s in x_shape) if pair else (None, *x_shape[1:])

    @jax.jit
    def both(key, state):
        k_init, k_x, k_dout, k_fwd = jax.random.split(key, 4)
        params = cast(layer.init(k_init, init_shape)[0], dtype)
        x = x_fn(k_x, x_shape, dtype)
        if "state" in layer.uses:
            state = cast(layer.init_state(x_shape) if state is None else state, dtype)
        ctx = {"key": k_fwd, "train": train if "train" in layer.uses else None, "state": state}

        def f(params, x):
            y, cache, _ = fnet.apply(layer, params, x, **ctx)
            return y, cache

        if all(jnp.issubdtype(v.dtype, jnp.integer) for v in jax.tree.leaves(x)):
            # ids: not differentiable, only the params are compared (and dx must be zeros)
            y, vjp, cache = jax.vjp(lambda p: f(p, x), params, has_aux=True)
            dout = jax.random.normal(k_dout, y.shape, dtype)
            dparams, dx = layer.backward(cache, dout)
            return (dparams, dx), (vjp(dout)[0], jax.tree.map(lambda v: jnp.zeros(v.shape, dtype), x))
        y, vjp, cache = jax.vjp(f, params, x, has_aux=True)
        dout = jax.random.normal(k_dout, y.shape, dtype)
        return layer.backward(cache, dout), vjp(dout)

    # Philox keys: of the implementations JAX offers, the fastest to compile here (about half
    # of threefry's time); compilation, not running, is what these small cases spend time on
    (dparams, dx), (dparams_ref, dx_ref) = both(jax.random.key(seed, impl="philox4x32"), state)
    return {**_errors("dparams", dparams, dparams_ref), **_errors("dx", dx, dx_ref)}


def ids(vocab_size: int) -> Callable:
    """An ``x_fn`` for layers that read integer ids: uniform in ``[0, vocab_size)``."""
    return lambda key, shape, dtype: jax.random.randint(key, shape, 0, vocab_size)


def pair_of(first: Callable, second: Callable) -> Callable:
    """An ``x_fn`` for layers that take two inputs ``x = (a, b)``: ``shape`` is the pair of shapes."""
    def make(key, shapes, dtype):
        k1, k2 = jax.random.split(key)
        return first(k1, shapes[0], dtype), second(k2, shapes[1], dtype)

    return make


def compare_loss(loss: fnet.Loss, y_shape: tuple, t_kind: str, *, dtype=jnp.float64,
                 seed: int = 0, scale: float = 1.0) -> dict[str, float]:
    """Handwritten loss ``backward`` vs ``jax.vjp`` of its ``forward`` w.r.t. ``y``.

    ``t_kind``: ``"labels"`` (int indices), ``"one_hot"`` or ``"probs"``, optionally
    with ``+mask`` (a random mask of positions, as padding), ``+ignore`` (the
    positions labelled 0 do not count: ``ignore_index=0``) and ``+smooth``
    (``label_smoothing=0.1``), in any combination. ``y_shape`` may be
    ``(N, C)`` or a sequence ``(N, T, C)``.
    """
    k_y, k_t, k_m = jax.random.split(jax.random.key(seed), 3)
    y = scale * jax.random.normal(k_y, y_shape, dtype)
    t_kind, *extras = t_kind.split("+")
    t = make_targets(k_t, y_shape, t_kind, dtype)
    options = {}
    unknown = set(extras) - {"mask", "ignore", "smooth"}
    if unknown:
        raise ValueError(f"unknown target options {sorted(unknown)}")
    if "mask" in extras:
        options["mask"] = jax.random.bernoulli(k_m, 0.6, y_shape[:-1])
    if "ignore" in extras:
        options["ignore_index"] = 0
    if "smooth" in extras:
        options["label_smoothing"] = 0.1
    dout = 0.7  # not 1, so a rule that ignores dout fails
    _, cache = loss.forward(y, t, **options)
    dy = loss.backward(cache, dout)
    _, vjp = jax.vjp(lambda y: loss.forward(y, t, **options)[0], y)
    (dy_ref,) = vjp(jnp.asarray(dout, dtype))
    return _errors("dy", dy, dy_ref)


def make_targets(key, y_shape, kind, dtype):
    c = y_shape[-1]
    labels = jax.random.randint(key, y_shape[:-1], 0, c)
    if kind == "labels":
        return labels
    if kind == "one_hot":
        return jax.nn.one_hot(labels, c, dtype=dtype)
    if kind == "probs":
        return jax.nn.softmax(jax.random.normal(key, y_shape, dtype))
    if kind == "real":
        return jax.random.normal(key, y_shape, dtype)
    raise ValueError(kind)


def compare_node(node: fnet.graph.Node, shapes: tuple, *, static: tuple = (), dtype=jnp.float64,
                 seed: int = 0, positive: bool = False) -> dict[str, float]:
    """Handwritten node ``backward`` vs ``jax.vjp`` of its ``forward`` w.r.t. every input."""
    keys = jax.random.split(jax.random.key(seed), len(shapes) + 1)
    xs = [jax.random.normal(k, s, dtype) for k, s in zip(keys, shapes, strict=False)]
    if positive:
        xs = [0.5 + jnp.abs(x) for x in xs]
    out, cache = node.forward(*xs, *static)
    dout = jax.random.normal(keys[-1], jnp.shape(out), dtype)
    grads = node.backward(cache, dout)
    grads = grads if node.arity > 1 else (grads,)
    _, vjp = jax.vjp(lambda *xs: node.forward(*xs, *static)[0], *xs)
    return _errors("dinputs", tuple(grads), tuple(vjp(dout)))


def worst(errors: dict[str, float]) -> float:
    """The largest relative error of a comparison."""
    return max(errors.values())


# Inputs for the layer tests. Compilation dominates small tests: inputs come from NumPy
# (nothing to compile), and parameters from one jitted init with a Philox key (about half
# of threefry's compile time).

def rand(shape, seed=0, dtype=jnp.float64):
    """Standard normal values of ``shape`` from NumPy (no compilation)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def init_params(layer, shape, dtype=jnp.float64):
    """``layer``'s parameters for inputs of ``shape``, cast to ``dtype``, from one jitted init."""
    init = jax.jit(lambda key: layer.init(key, (None, *shape[1:]))[0])
    return jax.tree.map(lambda a: a.astype(dtype), init(jax.random.key(0, impl="philox4x32")))


def run_layer(layer, x, dout=None):
    """Init, forward and backward of a plain layer on ``x`` (``dout`` defaults to ones).

    **Returns:** ``(params, y, dparams, dx)``.
    """
    params, _ = layer.init(jax.random.key(0), (None, *x.shape[1:]))
    y, cache = layer.forward(params, x)
    dparams, dx = layer.backward(cache, jnp.ones_like(y) if dout is None else dout)
    return params, y, dparams, dx


def ties(key, shape, dtype):
    """Small integers: most pooling windows hold several equal maxima."""
    return jnp.round(jax.random.normal(key, shape, dtype))


def running_stats(layer, shape, seed=1):
    """A state as after some training: means around 0, variances between 0.5 and 2."""
    key = jax.random.key(seed)

    def fill(path, v):
        k = jax.random.fold_in(key, hash(jax.tree_util.keystr(path)) % 2**31)
        if jax.tree_util.keystr(path).endswith("['var']"):
            return jax.random.uniform(k, v.shape, minval=0.5, maxval=2.0)
        return jax.random.normal(k, v.shape)

    return jax.tree_util.tree_map_with_path(fill, layer.init_state(shape))


# ----------------------------------------------------------------------------- the list's records

KINDS = ("layer", "loss", "node")


@dataclasses.dataclass(frozen=True)
class Case:
    """One entry of the gradient-equivalence list: something with a handwritten backward.

    ``build()`` makes it: a ``Layer`` (``kind="layer"``), a ``Loss`` or a graph
    ``Node``. Each column is a tuple of checks, each check the arguments of one
    comparison:

    - ``shapes``: checked in float64 (tolerance ``TOL64``). For a layer, input
      shapes; for a loss, ``(outputs shape, targets kind)``; for a node,
      ``(input shapes, static arguments, positive inputs only)``.
    - ``float32``: the same in float32 at the sizes the book trains with (``TOL32``).
    - ``eval_mode``: layer input shapes checked with ``train=False`` (dropout is the
      identity, batch norm uses running statistics that are not the initial ones).

    ``x_fn(key, shape, dtype)`` makes a layer's input (default standard normal;
    ``ids(V)`` for integer ids); ``random_state``: start every check from a
    random state rather than ``init_state`` (a stateful RNN's carried-over
    hidden state, which must enter the first step's gradients).
    """

    name: str
    build: Callable[[], Any]
    shapes: tuple = ()
    float32: tuple = ()
    eval_mode: tuple = ()
    kind: str = "layer"
    x_fn: Callable | None = None
    random_state: bool = False

    def __post_init__(self):
        assert self.kind in KINDS, self.kind
        assert self.shapes or self.float32, f"{self.name}: a case checks at least one shape"

    def check(self, arg, column: str) -> dict[str, float]:
        """The relative errors of one check of ``column`` (``"shapes"``, ``"float32"``, ``"eval_mode"``)."""
        dtype = jnp.float32 if column == "float32" else jnp.float64
        thing = self.build()
        if self.kind == "loss":
            y_shape, t_kind = arg
            return compare_loss(thing, y_shape, t_kind, dtype=dtype)
        if self.kind == "node":
            shapes, static, positive = arg
            return compare_node(thing, shapes, static=static, positive=positive, dtype=dtype)
        random_state = "state" in thing.uses and (column == "eval_mode" or self.random_state)
        state = running_stats(thing, arg) if random_state else None
        train = column != "eval_mode"
        return compare_layer(thing, arg, dtype=dtype, train=train, x_fn=self.x_fn, state=state)
