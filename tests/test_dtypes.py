"""float32 by default: with x64 enabled (as in these tests), nothing leaks into float64."""


import jax
import jax.numpy as jnp
from harness import init_params, rand

import fnet
from fnet import layers as L
from fnet import losses


def test_float32_end_to_end_with_x64_enabled():
    assert jax.config.jax_enable_x64
    net = fnet.sequential(L.affine(8), L.sigmoid(), L.affine(6), L.tanh(), L.affine(5), L.relu(),
                          L.flatten(), L.affine(3), L.softmax())
    params, _ = net.init(jax.random.key(0), (None, 4, 2))
    assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    x = jnp.ones((3, 4, 2), jnp.float32)
    y, cache = net.forward(params, x)
    assert y.dtype == jnp.float32
    loss, grads = jax.jit(fnet.loss_and_grads(net, losses.softmax_cross_entropy))(
        params, x, jnp.array([0, 1, 2]))
    assert loss.dtype == jnp.float32
    assert {a.dtype for a in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
    mse = fnet.loss_and_grads(net, losses.mean_squared_error)
    loss, grads = mse(params, x, jnp.ones((3, 3), jnp.float32))
    assert loss.dtype == jnp.float32


def test_graph_nodes_keep_float32():
    from fnet import graph

    out, cache = graph.mul.forward(jnp.float32(2.0), jnp.float32(3.0))
    dx, dy = graph.mul.backward(cache, jnp.float32(1.0))
    assert out.dtype == dx.dtype == jnp.float32


def test_float32_stays_float32():
    x = rand((2, 6, 6, 3), dtype=jnp.float32)
    net = fnet.sequential(L.conv2d(4, 3), L.batch_norm(), L.max_pool2d(2), L.avg_pool2d(2), L.layer_norm(),
                          L.dropout(0.5), L.affine(2))
    params = init_params(net, x.shape, jnp.float32)

    @jax.jit
    def run(params, x, state):
        y, cache, state = fnet.apply(net, params, x, key=jax.random.key(1), train=True, state=state)
        return y, state, net.backward(cache, jnp.ones_like(y))

    dtypes = {a.dtype for a in jax.tree.leaves(run(params, x, net.init_state(x.shape)))}
    assert dtypes == {jnp.dtype(jnp.float32)}
