"""Evaluation after each epoch: the loss and the metrics over a whole set, in compiled chunks.

``make_evaluate`` builds the function ``fit`` compiles once for every set it evaluates
(the training set, the test set): fixed chunks under ``lax.map`` and the tail as one
more static shape, so no padding and no recompilation, and one host sync per epoch
for the printed metrics. With a mesh each device evaluates its share and ``psum``
adds them up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from fnet import distributed
from fnet.core import Layer, apply
from fnet.losses import Loss
from fnet.metrics import resolve

__all__ = ["make_evaluate"]


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
