"""The compiled programs of training: one epoch of minibatch updates, and evaluation.

``make_train_epoch`` builds the function ``fnet.train.fit`` jits once per epoch
shape; ``make_evaluate`` the chunked evaluation of loss and accuracy. Both are
plain (unjitted) functions, so ``scripts/bench.py`` can time the very epoch
``fit`` runs, with the handwritten backward or, for comparison, autodiff.

Per epoch, on the device and with no Python work per step:

1. shuffle: one ``fnet.shuffle.permutation`` of the training set (JAX's
   algorithm with a cheaper sort), reshaped into a ``(steps, batch)`` array of
   example indices (or, with ``sampling="replacement"``, the book's
   ``np.random.choice`` per step: ``steps x batch`` random indices);
2. ``lax.scan`` over those index rows: gather the minibatch, forward, loss,
   handwritten backward, optimizer update. (Gathering inside the scan rather
   than the whole epoch up front needs 1 MiB of scratch memory instead of a
   second copy of the data set; timings in ``docs/speed.md``.)

``steps = n_train // batch_size``: the final partial batch is **dropped**; since
every epoch draws a new permutation, a different remainder is left out each
time and no example is lost for good.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fnet import _args, distributed, shuffle
from fnet.augment import Augment
from fnet.core import Layer, apply
from fnet.fit_checks import check_batch_size
from fnet.losses import Loss
from fnet.metrics import resolve
from fnet.net import loss_and_grads

__all__ = [
    "PROGRESS_CHUNKS",
    "SAMPLING",
    "Plan",
    "chunk_lengths",
    "finite_leaves",
    "lower_in_pieces",
    "make_epoch_pieces",
    "make_evaluate",
    "make_train_epoch",
    "plan",
    "run_in_pieces",
    "shapes_like",
]

SAMPLING = ("shuffle", "replacement")


def _closures(net: Layer, loss: Loss, optimizer, n_steps: int, sampling: str, grad_fn: Callable | None,
              augment: Augment | None = None):
    """The pieces of an epoch: ``indices(key, n, rows)``, ``gather_step(x, t, axes)`` (a scan body)."""
    grad_fn = grad_fn or loss_and_grads(net, loss, train=True)
    stateful = "state" in net.uses
    uses_key = "key" in net.uses or augment is not None

    def step(carry, batch, axes=None):
        params, opt_state, state = carry
        xb, tb, step_key = batch
        if augment is not None:  # on the device, a fresh draw each step; the net's key is the other half
            aug_key, step_key = jax.random.split(step_key)
            xb = augment(aug_key, xb)
        kwargs = {"key": step_key if uses_key else None, "state": state}
        if stateful:
            value, grads, state = grad_fn(params, xb, tb, **kwargs)
        else:
            value, grads = grad_fn(params, xb, tb, **kwargs)
        if axes:  # data parallel: average the handwritten gradients over every device
            value, grads, state = jax.lax.pmean((value, grads, state), axes)
        params, opt_state = optimizer.update(grads, opt_state, params)
        return (params, opt_state, state), value

    def indices(key, n, rows):
        """``(n_steps, rows)`` example indices for one epoch."""
        if sampling == "shuffle":
            return shuffle.permutation(key, n)[: n_steps * rows].reshape(n_steps, rows)
        return jax.random.randint(key, (n_steps, rows), 0, n)  # the book's np.random.choice

    def gather_step(x, t, axes=None):
        def body(carry, inputs):
            rows, step_key = inputs
            # rows come from a permutation of range(n) or randint(0, n): no bounds clamping needed
            xb = x.at[rows].get(mode="promise_in_bounds")
            tb = t.at[rows].get(mode="promise_in_bounds")
            return step(carry, (xb, tb, step_key), axes)

        return body

    return indices, gather_step, uses_key


def make_epoch_pieces(net: Layer, loss: Loss, optimizer, *, batch_size: int, n_steps: int,
                      sampling: str = "shuffle", grad_fn: Callable | None = None,
                      augment: Augment | None = None) -> tuple:
    """The epoch of ``make_train_epoch`` in pieces, so that progress can be reported between them.

    **Returns:** ``(order, run)``: ``order(key, n) -> (idx, step_keys)`` draws the epoch's
    ``(n_steps, batch_size)`` example indices and per-step keys; ``run(params, opt_state,
    state, x, t, idx, step_keys) -> (carry, losses)`` trains on any run of those rows.
    ``run(*carry, x, t, *order(key, len(x)))`` computes exactly the epoch of
    ``make_train_epoch``; running its rows in a few chunks computes it too, step by step.
    One device only.
    """
    if sampling not in SAMPLING:
        raise ValueError(f"fit: sampling must be one of {SAMPLING}, got {sampling!r}")
    indices, gather_step, _ = _closures(net, loss, optimizer, n_steps, sampling, grad_fn, augment)

    def order(key, n: int):
        k_order, k_steps = jax.random.split(key)
        return indices(k_order, n, batch_size), jax.random.split(k_steps, n_steps)

    def run(params, opt_state, state, x, t, idx, step_keys):
        return jax.lax.scan(gather_step(x, t), (params, opt_state, state), (idx, step_keys))

    return order, run


def _scan(body: Callable, carry, rows, steps):
    """``lax.scan(body, carry, rows)``, or with ``steps``, a loop over only the first ``steps`` rows
    (a dynamic trip count: the same program for every count); the losses not computed are NaN."""
    if steps is None:
        return jax.lax.scan(body, carry, rows)
    n = jax.tree.leaves(rows)[0].shape[0]
    first = jax.tree.map(lambda r: r[0], rows)
    value = jax.eval_shape(body, carry, first)[1]

    def one(i, c):
        carry, values = c
        row = jax.tree.map(lambda r: jax.lax.dynamic_index_in_dim(r, i, keepdims=False), rows)
        carry, v = body(carry, row)
        return carry, jax.lax.dynamic_update_index_in_dim(values, v, i, 0)

    return jax.lax.fori_loop(0, jnp.minimum(steps, n), one,
                             (carry, jnp.full((n, *value.shape), jnp.nan, value.dtype)))


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a run is cut into epochs: ``steps_per_epoch``, ``total_epochs``, and the
    ``last_steps`` of the final epoch (fewer when ``iters`` does not fill it)."""

    steps_per_epoch: int
    total_epochs: int
    last_steps: int

    def steps(self, epoch: int) -> int:
        """The number of minibatch steps of epoch ``epoch`` (0-based)."""
        return self.steps_per_epoch if epoch < self.total_epochs - 1 else self.last_steps

    def step_counts(self, first_epoch: int = 0) -> list[int]:
        """The distinct step counts of the epochs from ``first_epoch`` on, the longest first."""
        return sorted({self.steps(e) for e in range(first_epoch, self.total_epochs)}, reverse=True)


def plan(n_train: int, batch_size: int, *, epochs: int | None, iters: int | None,
         mesh: Mesh | None = None) -> Plan:
    """Cut ``epochs`` passes, or ``iters`` minibatch updates, into epochs of ``n_train // batch`` steps."""
    if (epochs is None) == (iters is None):
        raise ValueError("fit: give exactly one of epochs= or iters=")
    try:
        steps_per_epoch = n_train // check_batch_size(batch_size, n_train, mesh)
    except ValueError as e:
        raise ValueError(f"fit: {e}") from None
    if iters is not None:
        iters = _args.count("fit", "iters", iters, 1)
        total = math.ceil(iters / steps_per_epoch)
        return Plan(steps_per_epoch, total, iters - (total - 1) * steps_per_epoch)
    epochs = _args.count("fit", "epochs", epochs, 1)
    return Plan(steps_per_epoch, epochs, steps_per_epoch)


def finite_leaves(params) -> list:
    """Whether each leaf of ``params`` (in ``jax.tree.leaves`` order) holds only finite values.

    ``fit``'s epoch programs return these beside the losses, so that the divergence check
    (``stopping.check_divergence``) needs no eager pass over the parameters and every reason
    to stop is known as soon as the epoch is.
    """
    return [jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(params)]


PROGRESS_CHUNKS = 10
"""With ``fit(progress=)``, each epoch runs as this many compiled pieces, reporting between them."""


def chunk_lengths(n_steps: int, chunks: int = PROGRESS_CHUNKS) -> list[int]:
    """The steps of each piece of an epoch of ``n_steps``: equal runs, the last one shorter."""
    size = math.ceil(n_steps / chunks)
    return [size] * (n_steps // size) + ([n_steps % size] if n_steps % size else [])


def lower_in_pieces(net: Layer, loss: Loss, optimizer, carry, x, t, key, *, batch_size: int, n_steps: int,
                    sampling: str, augment: Augment | None = None) -> dict:
    """The traced pieces of an epoch of ``n_steps``: its ``order`` and a ``run`` per chunk length
    (each returning ``(carry, losses, finite_leaves(params))``)."""
    order, run = make_epoch_pieces(net, loss, optimizer, batch_size=batch_size, n_steps=n_steps,
                                   sampling=sampling, augment=augment)
    lowered = {("order", n_steps): jax.jit(lambda k: order(k, x.shape[0])).lower(key)}
    idx, keys = jnp.zeros((n_steps, batch_size), jnp.int32), jax.random.split(key, n_steps)

    def piece(length):  # rows start..start+length of the epoch's order, cut inside the program
        def run_piece(params, opt_state, state, x, t, idx, keys, start):
            cut = functools.partial(jax.lax.dynamic_slice_in_dim, start_index=start, slice_size=length)
            carry, losses = run(params, opt_state, state, x, t, cut(idx), cut(keys))
            return carry, losses, finite_leaves(carry[0])
        return run_piece

    for length in set(chunk_lengths(n_steps)):
        lowered[("run", n_steps, length)] = jax.jit(piece(length)).lower(*carry, x, t, idx, keys, 0)
    return lowered


def run_in_pieces(programs: dict, carry, x, t, key, *, n_steps: int, report: Callable[[int], Any]):
    """One epoch from the compiled pieces of ``lower_in_pieces``; ``report(steps done)`` between them.

    **Returns:** ``(carry, losses, finite)``: the carry and losses as the whole epoch's program
    gives them (the same steps), and ``finite_leaves`` of the final parameters.
    """
    idx, keys = programs[("order", n_steps)](key)
    parts, ends, done = [], [], 0
    for length in chunk_lengths(n_steps):
        # dispatched before the previous piece is waited for, so the device never idles for the report
        carry, part, finite = programs[("run", n_steps, length)](*carry, x, t, idx, keys, done)
        done += length
        parts.append(part)
        ends.append(done)
        if len(parts) > 1:
            parts[-2] = np.asarray(parts[-2])  # waits for the previous piece
            report(ends[-2])
    parts[-1] = np.asarray(parts[-1])
    report(done)
    return carry, np.concatenate(parts), finite


def make_train_epoch(net: Layer, loss: Loss, optimizer, *, batch_size: int, n_steps: int,
                     sampling: str = "shuffle", grad_fn: Callable | None = None,
                     mesh: Mesh | None = None, augment: Augment | None = None) -> Callable:
    """The (unjitted) epoch function ``(params, opt_state, state, x, t, key, steps=None) -> (carry, losses)``.

    ``carry = (params, opt_state, state)``; ``losses: (n_steps,)`` minibatch losses.
    ``steps`` (an int32 scalar, traced): run only the first ``steps`` of the ``n_steps``
    updates (the rest of ``losses`` is NaN), so one compiled program also runs a short
    final epoch; the steps it runs are exactly those of an epoch of ``steps``.
    ``grad_fn`` defaults to ``loss_and_grads(net, loss)`` (the handwritten
    backward); ``scripts/bench.py`` passes an autodiff one to compare the two
    inside the identical loop. With a ``mesh`` (see ``fnet.distributed``), ``x`` and
    ``t`` are the global ``(hosts, n_per_host, ...)`` arrays of ``distributed.put_data``
    and every minibatch is split over the devices. ``augment`` (``fnet.augment.parse``)
    transforms every minibatch after the gather, with a key split from the step's.
    """
    if sampling not in SAMPLING:
        raise ValueError(f"fit: sampling must be one of {SAMPLING}, got {sampling!r}")
    indices, gather_step, uses_key = _closures(net, loss, optimizer, n_steps, sampling, grad_fn, augment)

    def epoch(params, opt_state, state, x, t, key, steps=None):
        k_order, k_steps = jax.random.split(key)
        idx = indices(k_order, x.shape[0], batch_size)
        return _scan(gather_step(x, t), (params, opt_state, state), (idx, jax.random.split(k_steps, n_steps)),
                     steps)

    if mesh is None:
        return epoch

    hosts, devices = mesh.shape["hosts"], mesh.shape["devices"]
    per_device = distributed.check_batch(mesh, batch_size)
    per_host = batch_size // hosts

    def local_epoch(params, opt_state, state, x, t, key, steps=None):
        x, t = x[0], t[0]  # this host's examples
        h, d = jax.lax.axis_index("hosts"), jax.lax.axis_index("devices")
        k_order, k_steps = jax.random.split(key)
        if hosts > 1:  # each host shuffles its own shard
            k_order = jax.random.fold_in(k_order, h)
        # the host's minibatches, as on one device; this device takes its columns
        idx = jax.lax.dynamic_slice_in_dim(indices(k_order, x.shape[0], per_host), d * per_device,
                                           per_device, axis=1)
        step_keys = jax.random.split(k_steps, n_steps)
        if uses_key:  # different dropout masks (and augmentations) on different devices
            step_keys = jax.vmap(jax.random.fold_in, (0, None))(step_keys, h * devices + d)
        return _scan(gather_step(x, t, distributed.AXES), (params, opt_state, state), (idx, step_keys), steps)

    def sharded_epoch(params, opt_state, state, x, t, key, steps=None):
        extra = () if steps is None else (steps,)
        specs = (P(), P(), P(), P("hosts"), P("hosts"), P(), *(P() for _ in extra))
        return jax.shard_map(local_epoch, mesh=mesh, out_specs=(P(), P()), in_specs=specs)(
            params, opt_state, state, x, t, key, *extra)

    return sharded_epoch


def shapes_like(where: Mesh | jax.Device | None, tree):
    """Shapes and dtypes of ``tree`` (arrays or ``ShapeDtypeStruct``), placed as ``fit`` places the
    carry (replicated over a mesh; on one device, the default one or ``where``), to trace the
    programs before the carry exists."""
    if isinstance(where, Mesh):
        sharding = NamedSharding(where, P())
    else:
        sharding = None if where is None else jax.sharding.SingleDeviceSharding(where)
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)


def make_evaluate(net: Layer, loss: Loss, *, batch_size: int = 1000, mesh: Mesh | None = None,
                  metrics: Sequence[str] | None = None) -> Callable:
    """The (unjitted) ``(params, state, x, t) -> (mean loss, *metrics)``, in chunks of ``batch_size``.

    ``metrics``: names for ``fnet.metrics.resolve``; by default what the loss calls for
    (accuracy for ``softmax_cross_entropy``: ``(mean loss, accuracy)``). With a ``mesh``,
    ``x`` and ``t`` are global ``(hosts, n_per_host, ...)`` arrays and every device
    evaluates its share of its host's examples.
    """
    stateful = "state" in net.uses
    fns = [fn for _, fn in resolve(metrics, loss)]

    def chunk(params, state, xb, tb):
        y, _, _ = apply(net, params, xb, train=False, state=state if stateful else None)
        value, _ = loss.forward(y, tb)
        return jnp.stack([value, *(fn(y, tb) for fn in fns)]).astype(jnp.float32) * xb.shape[0]

    def sums(params, state, x, t):
        """The loss and every metric, summed over the examples of ``x``."""
        n = x.shape[0]
        b = min(batch_size, n)
        m = n // b * b
        xs = x[:m].reshape(n // b, b, *x.shape[1:])
        ts = t[:m].reshape(n // b, b, *t.shape[1:])
        total = jnp.sum(jax.lax.map(lambda xt: chunk(params, state, *xt), (xs, ts)), axis=0)
        if m < n:  # the tail has a static shape too: no padding, no recompilation
            total = total + chunk(params, state, x[m:], t[m:])
        return total

    def evaluate(params, state, x, t):
        return tuple(sums(params, state, x, t) / x.shape[0])

    if mesh is None:
        return evaluate

    hosts, devices = mesh.shape["hosts"], mesh.shape["devices"]

    def local_evaluate(params, state, x, t):
        x, t = x[0], t[0]
        m = x.shape[0] // devices
        d = jax.lax.axis_index("devices")
        total = jnp.zeros(1 + len(fns), jnp.float32)
        if m:
            total = total + sums(params, state, jax.lax.dynamic_slice_in_dim(x, d * m, m),
                                 jax.lax.dynamic_slice_in_dim(t, d * m, m))
        if devices * m < x.shape[0]:  # the few left over: every device computes them, each counts 1/devices
            total = total + sums(params, state, x[devices * m:], t[devices * m:]) / devices
        total = jax.lax.psum(total, distributed.AXES)
        return tuple(total / (hosts * x.shape[0]))

    return jax.shard_map(local_evaluate, mesh=mesh, out_specs=tuple(P() for _ in range(1 + len(fns))),
                         in_specs=(P(), P(), P("hosts"), P("hosts")))
