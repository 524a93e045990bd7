"""The matmul roof: the machine's float32 matmul throughput, and the model's own matmul shapes timed alone."""

from __future__ import annotations

import math
import time

import numpy as np

from benchmarks.config import ROOF_N
from benchmarks.contenders import Runner


def prepare_roof(n: int = ROOF_N) -> Runner:
    """A jitted float32 ``jnp.dot`` of two ``n x n`` matrices; ``run`` returns no losses."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    a = jax.device_put(rng.standard_normal((n, n), np.float32))
    b = jax.device_put(rng.standard_normal((n, n), np.float32))
    f = jax.jit(jnp.dot).lower(a, b).compile()

    def run(rep: int) -> np.ndarray:
        f(a, b).block_until_ready()
        return np.empty(0, np.float32)

    run(0)
    return Runner("roof", run, None, None, None, {"n": n, "flops": 2 * n ** 3})


def shape_roofs(ops: list[dict], batch: int, reps: int = 5, k: int = 8) -> list[dict]:
    """GFLOP/s of jitted ``jnp.dot`` at the model's matmul shapes (forward, dW and dx of each affine).

    Each shape runs ``k`` times inside one jitted ``lax.scan`` over distinct inputs,
    accumulating the products (so nothing is hoisted and dispatch is amortised).
    """
    import jax
    import jax.numpy as jnp

    shapes = []
    for i, op in enumerate(ops):
        if op["op"] != "dot":
            continue
        _, d_in = op["lhs"][0], math.prod(op["lhs"][1:])
        d_out = op["rhs"][1]
        shapes.append(("forward x@W", (batch, d_in), (d_in, d_out), False))
        shapes.append(("backward x.T@dout", (batch, d_in), (batch, d_out), True))
        if i > 0:
            shapes.append(("backward dout@W.T", (batch, d_out), (d_in, d_out), "rhs_t"))
    rng = np.random.default_rng(0)
    out = []
    for what, lshape, rshape, mode in shapes:
        xs = jax.device_put(rng.standard_normal((k, *lshape), np.float32))
        w = jax.device_put(rng.standard_normal(rshape, np.float32))
        if mode is True:
            def prod(a, w):
                return a.T @ w
        elif mode == "rhs_t":
            def prod(a, w):
                return a @ w.T
        else:
            def prod(a, w):
                return a @ w
        res_shape = jax.eval_shape(prod, xs[0], w).shape

        def body(acc, a, w=w, prod=prod):
            return acc + prod(a, w), None

        f = jax.jit(lambda xs, w, body=body, res_shape=res_shape:
                    jax.lax.scan(lambda c, a: body(c, a, w), jnp.zeros(res_shape, jnp.float32), xs)[0])
        f = f.lower(xs, w).compile()
        f(xs, w).block_until_ready()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f(xs, w).block_until_ready()
            times.append(time.perf_counter() - t0)
        flops = 2 * math.prod(res_shape) * (lshape[0] if mode is True else lshape[1])
        med = float(np.median(times)) / k
        out.append({"matmul": what, "lhs": list(lshape), "rhs": list(rshape), "flops": flops,
                    "ms": med * 1e3, "gflops": flops / med / 1e9})
    return out
