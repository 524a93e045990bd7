"""One epoch of training: minibatch updates over a shuffle of the training set, on the device.

``make_train_epoch`` builds the function ``fit`` compiles once for every epoch of a
run; ``make_epoch_pieces`` the same epoch in pieces, run by ``run_in_pieces`` with a
progress report between them. Both are plain (unjitted) functions, so
``scripts/bench.py`` can time the very epoch ``fit`` runs, with the handwritten
backward or, for comparison, autodiff.

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

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from fnet import distributed, shuffle
from fnet.core import Layer
from fnet.losses import Loss
from fnet.net import loss_and_grads
from fnet.train.augment import Augment
from fnet.train.settings import SAMPLING

__all__ = ["PROGRESS_CHUNKS", "chunk_lengths", "finite_leaves", "make_epoch_pieces", "make_train_epoch",
           "run_in_pieces"]


class EpochParts(NamedTuple):
    """What an epoch is made of (``epoch_parts``).

    - ``indices(key, n, rows) -> (n_steps, rows)``: the example indices of every step;
    - ``gather_step(x, t, axes=None)``: a ``lax.scan`` body ``(carry, (rows, step_key)) ->
      (carry, loss)`` that gathers one minibatch and updates on it (``axes``: average the
      gradients over these mesh axes);
    - ``uses_key``: whether a step draws random numbers (dropout, augmentation).
    """

    indices: Callable
    gather_step: Callable
    uses_key: bool


def epoch_parts(net: Layer, loss: Loss, optimizer, n_steps: int, sampling: str, grad_fn: Callable | None,
                augment: Augment | None = None) -> EpochParts:
    """The parts of an epoch of ``n_steps``: the sampling of minibatches and one training step."""
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

    return EpochParts(indices, gather_step, uses_key)


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
    indices, gather_step, _ = epoch_parts(net, loss, optimizer, n_steps, sampling, grad_fn, augment)

    def order(key, n: int):
        k_order, k_steps = jax.random.split(key)
        return indices(k_order, n, batch_size), jax.random.split(k_steps, n_steps)

    def run(params, opt_state, state, x, t, idx, step_keys):
        return jax.lax.scan(gather_step(x, t), (params, opt_state, state), (idx, step_keys))

    return order, run


def scan_steps(body: Callable, carry, rows, steps):
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


def run_in_pieces(programs: dict, carry, x, t, key, *, n_steps: int, report: Callable[[int], Any]):
    """One epoch from the compiled pieces (``programs.lower_in_pieces``), ``report(steps done)`` between.

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
    and every minibatch is split over the devices. ``augment`` (``fnet.train.augment.parse``)
    transforms every minibatch after the gather, with a key split from the step's.
    """
    if sampling not in SAMPLING:
        raise ValueError(f"fit: sampling must be one of {SAMPLING}, got {sampling!r}")
    indices, gather_step, uses_key = epoch_parts(net, loss, optimizer, n_steps, sampling, grad_fn, augment)

    def epoch(params, opt_state, state, x, t, key, steps=None):
        k_order, k_steps = jax.random.split(key)
        idx = indices(k_order, x.shape[0], batch_size)
        step_keys = jax.random.split(k_steps, n_steps)
        return scan_steps(gather_step(x, t), (params, opt_state, state), (idx, step_keys), steps)

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
        carry = (params, opt_state, state)
        return scan_steps(gather_step(x, t, distributed.AXES), carry, (idx, step_keys), steps)

    def sharded_epoch(params, opt_state, state, x, t, key, steps=None):
        extra = () if steps is None else (steps,)
        specs = (P(), P(), P(), P("hosts"), P("hosts"), P(), *(P() for _ in extra))
        return jax.shard_map(local_epoch, mesh=mesh, out_specs=(P(), P()), in_specs=specs)(
            params, opt_state, state, x, t, key, *extra)

    return sharded_epoch


