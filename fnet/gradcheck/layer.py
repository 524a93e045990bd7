"""``check_layer``: a layer's handwritten backward against numerical differentiation.

For a user's own layer, the check fnet's test suite runs on every layer of its own,
without autodiff: random parameters, input and ``dout``; the scalar
``f(params, x) = sum(forward(params, x) * dout)``, whose gradient is exactly what
``backward(cache, dout)`` returns; and ``numerical_gradient`` of ``f`` for every
parameter entry and every input entry. In float64 by default, which it turns on
(``jax.enable_x64``) for the check only.
"""

from __future__ import annotations

import contextlib
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from fnet import _args
from fnet.core import Layer, apply, check_shape
from fnet.errors import ContextError
from fnet.gradcheck.numerical import default_eps, numerical_gradient
from fnet.gradcheck.report import GradReport, compare

DEFAULT_THRESHOLD = {"float64": 1e-6, "float32": 2e-2}
"""Largest ``max|backprop - numerical| / max|numerical|`` per leaf that passes. A correct rule
shows 1e-9 or less in float64; a wrong one is off by the size of the gradient (about 1)."""


class GradientCheckError(AssertionError):
    """A layer's backward disagrees with the numerical gradient (``raise_on_failure=True``)."""


@dataclasses.dataclass(frozen=True)
class LayerCheck:
    """What ``check_layer`` found. Truthy when every gradient passed.

    **Fields:** ``layer`` (its name); ``report`` (a ``GradReport``: one row per parameter
    leaf, ``params/...``, and one for the input, ``x``); ``errors``: per leaf, the largest
    difference relative to that gradient's scale, ``max|a-b| / max|b|``; ``zeros``: per
    leaf, how many backprop entries are exactly 0; ``numerical_trouble``: per leaf whose
    numerical gradient cannot be trusted (NaN or infinite, or 0 everywhere), why; ``threshold``;
    ``ok``.
    """

    layer: str
    input_shape: tuple
    dtype: str
    report: GradReport
    errors: dict[str, float]
    zeros: dict[str, tuple[int, int]]
    threshold: float
    ok: bool
    numerical_trouble: dict[str, str] = dataclasses.field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        lines = [f"check_layer: {self.layer} on input {self.input_shape}, {self.dtype}", "", str(self.report),
                 ""]
        for path, err in self.errors.items():
            if path in self.numerical_trouble:  # no verdict on backward: the other side cannot be trusted
                lines.append(f"{path}: NUMERICAL GRADIENT UNUSABLE: {self.numerical_trouble[path]}")
                continue
            verdict = "ok" if err <= self.threshold else "WRONG"
            lines.append(f"{path}: max|a-b| / max|b| = {err:.1e}  {verdict}")
        zeros = {p: z for p, z in self.zeros.items() if z[0]}
        if zeros:
            lines.append("")
            counts = ", ".join(f"{p} {z} of {n}" for p, (z, n) in zeros.items())
            lines.append(f"Exactly-zero gradients: {counts}. Where backprop gives exactly 0 (an inactive "
                         "ReLU unit, a zero input, a max-pool entry that is not the maximum) the numerical "
                         "gradient is rounding noise, so 'max rel' reads 1 there; the verdict uses max|a-b| "
                         "against the gradient's scale instead.")
        lines.append("")
        lines.append(("OK" if self.ok else "FAILED") + f": threshold {self.threshold:g}")
        return "\n".join(lines)


def check_layer(layer: Layer, input_shape: tuple, *, key: jax.Array | None = None, train: bool | None = None,
                state=None, dtype=jnp.float64, batch_size: int = 3, eps: float | None = None,
                threshold: float | None = None, raise_on_failure: bool = False) -> LayerCheck:
    """Check ``layer.backward`` numerically, for every parameter and for the input.

    **Arguments:**

    - ``input_shape``: as for ``init``, e.g. ``(None, 5)``; a ``None`` batch becomes
      ``batch_size`` (default 3).
    - ``key``: the random key for the parameters, input, ``dout`` and the forward pass's
      own key (dropout); default ``jax.random.key(0)``.
    - ``train``: required for a layer that uses ``"train"``; ``state``: for a layer that
      uses ``"state"`` (default ``layer.init_state``).
    - ``dtype``: float64 (default; x64 is enabled for the check and restored after) or
      float32, where the numerical gradient is far less precise.
    - ``eps``: the central difference's step (``gradcheck.DEFAULT_EPS`` for the dtype);
      ``threshold``: largest ``max|a-b| / max|b|`` per leaf (``DEFAULT_THRESHOLD``).
    - ``raise_on_failure``: raise ``GradientCheckError`` with the report instead of
      returning a falsy result.

    **Returns:** a ``LayerCheck``: truthy when every gradient passes; ``print`` it for
    the per-parameter table. No automatic differentiation is used.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"check_layer: layer must be an fnet Layer, got {layer!r}")
    shape = check_shape(input_shape, "check_layer")
    batch_size = _args.count("check_layer", "batch_size", batch_size, 1)
    shape = (batch_size if shape[0] is None else shape[0], *shape[1:]) if shape else shape
    if "train" in layer.uses and not isinstance(train, bool):
        raise ContextError(layer.name, "behaves differently in training and in evaluation; pass "
                                       "check_layer(..., train=True) or train=False")
    name = jnp.dtype(dtype).name
    with jax.enable_x64(True) if name == "float64" else contextlib.nullcontext():
        dtype = jnp.dtype(dtype)
        eps = default_eps(dtype) if eps is None else _args.positive("check_layer", "eps", eps)
        limit = DEFAULT_THRESHOLD.get(name, 2e-2) if threshold is None else \
            _args.positive("check_layer", "threshold", threshold)
        k_init, k_x, k_dout, k_fwd = jax.random.split(jax.random.key(0) if key is None else key, 4)
        params, _ = layer.init(k_init, (None, *shape[1:]))
        params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
        x = jax.random.normal(k_x, shape, dtype)
        if "state" in layer.uses and state is None:
            state = layer.init_state(shape)  # with the batch: a stateful RNN's state has one row each
        ctx = {"key": k_fwd, "train": train, "state": state}
        y, cache, _ = apply(layer, params, x, **ctx)
        dout = jax.random.normal(k_dout, jnp.shape(y), dtype)
        dparams, dx = layer.backward(cache, dout)

        def f(both):
            out, _, _ = apply(layer, both["params"], both["x"], **ctx)
            return jnp.sum(out * dout)

        numerical = numerical_gradient(f, {"params": params, "x": x}, eps)
        backprop = {"params": dparams, "x": dx}
        report = compare(backprop, numerical)
        errors, zeros, trouble = {}, {}, {}
        finite_forward = bool(jnp.all(jnp.isfinite(y)))
        for d, a, b in zip(report, jax.tree.leaves(backprop), jax.tree.leaves(numerical), strict=True):
            errors[d.path] = d.max_abs / d.scale if d.scale > 0 else (0.0 if d.max_abs == 0 else float("inf"))
            a = np.asarray(a)
            zeros[d.path] = (int(np.sum(a == 0)), int(a.size))
            why = _numerical_trouble(np.asarray(b), a, eps, name, finite_forward)
            if why:
                trouble[d.path] = why
    ok = not trouble and all(e <= limit for e in errors.values())
    result = LayerCheck(layer.name, shape, name, report, errors, zeros, limit, ok, trouble)
    if raise_on_failure and not ok:
        raise GradientCheckError(str(result))
    return result


def _numerical_trouble(numerical: np.ndarray, backprop: np.ndarray, eps: float, dtype: str,
                       finite_forward: bool) -> str | None:
    """Why a leaf's numerical gradient cannot judge backprop's, or ``None``: NaN or infinite entries
    (the forward is not finite there), or zeros everywhere where backprop has a gradient (``eps``
    too small to change the loss at the dtype's precision)."""
    bad = ~np.isfinite(numerical)
    if bad.any():
        cause = ("the forward pass is not finite at these inputs" if not finite_forward else
                 f"eps={eps:g} is too small to change these inputs in {dtype} (a perturbed copy equals the "
                 "input, so the quotient is 0/0: leave eps to its default), or the loss is not finite a step "
                 "away from them")
        return (f"{int(bad.sum())} of its {numerical.size} entries are NaN or infinite: {cause}. This "
                "says nothing about the backward rule; check the layer's forward on these inputs")
    if not numerical.any() and np.abs(backprop).max(initial=0) > 0:
        return (f"it is 0 everywhere while backprop's is not: eps={eps:g} is too small to change the loss "
                f"in {dtype} (the two losses it subtracts are equal to all their digits); leave eps to its "
                "default")
    return None
