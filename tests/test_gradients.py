"""Gradient equivalence: every handwritten backward rule equals ``jax.vjp`` of its own forward.

THE LIST below names every layer, loss and graph node once, with the shapes it is
checked on. Adding a layer to fnet means adding one line here (test_every_*
fails until you do). Checks run in float64 with relative error <= 1e-10, and in
float32 at typical sizes with relative error <= 1e-5 (float32 has 24 bits;
summing a few hundred products in a different order than autodiff's
transposed graph costs a few ulps, ~1e-6 relative, so 1e-5 leaves a margin
while still catching any wrong rule, whose error is O(1)).
"""

import jax
import jax.numpy as jnp
import pytest
from harness import compare_layer, compare_loss, compare_node

import fnet
from fnet import graph, losses
from fnet import layers as L
from fnet.models import multi_layer_net, simple_convnet

TOL64 = 1e-10
TOL32 = 1e-5

# ----------------------------------------------------------------------------- THE LIST
# layer name -> (constructor, input shapes). Shapes include batch 1 and an N-D input.
LAYERS = {
    "affine": (lambda: L.affine(7), [(1, 5), (4, 3), (3, 2, 4, 5)]),
    "relu": (L.relu, [(1, 6), (4, 5), (2, 3, 4, 5)]),
    "sigmoid": (L.sigmoid, [(1, 6), (4, 5), (2, 3, 4, 5)]),
    "tanh": (L.tanh, [(1, 6), (4, 5), (2, 3, 4, 5)]),
    "identity": (L.identity, [(1, 6), (4, 5), (2, 3, 4)]),
    "softmax": (L.softmax, [(1, 4), (5, 3), (2, 3, 7)]),
    "flatten": (L.flatten, [(1, 3), (2, 3, 4), (2, 3, 4, 5)]),
    # dropout and batch norm in training mode (the harness passes train=True and a fixed key);
    # batch norm on (N, C) and per channel on NHWC images. Evaluation mode: test_*_eval_mode below.
    "dropout": (lambda: L.dropout(0.3), [(1, 6), (4, 5), (2, 3, 4, 5)]),
    "batch_norm": (L.batch_norm, [(1, 3, 3, 2), (4, 5), (2, 3, 4, 3), (3, 2, 5)]),
    "layer_norm": (L.layer_norm, [(1, 5), (4, 6), (2, 3, 4)]),
    # convolution and pooling: odd sizes, strides that do not divide (rows in no window),
    # padding larger than the kernel (negative padding in dx), asymmetric "SAME" padding
    "conv2d": (lambda: L.conv2d(4, 3), [(1, 5, 5, 1), (2, 6, 7, 3), (3, 4, 4, 2)]),
    "conv2d stride 2 pad 1": (lambda: L.conv2d(3, (3, 2), stride=2, padding=1), [(1, 8, 9, 2), (2, 7, 6, 1)]),
    "conv2d stride 3 pad 3": (lambda: L.conv2d(2, 2, stride=3, padding=(3, 1)), [(1, 5, 5, 2), (2, 4, 8, 3)]),
    "conv2d SAME": (lambda: L.conv2d(5, 4, stride=(2, 3), padding="SAME"), [(2, 5, 7, 2)]),
    "max_pool2d": (L.max_pool2d, [(1, 4, 4, 1), (2, 6, 4, 3), (2, 7, 5, 2)]),
    "max_pool2d overlap pad 1": (lambda: L.max_pool2d(3, stride=2, padding=1), [(1, 5, 5, 2), (2, 8, 7, 3)]),
    "max_pool2d gaps": (lambda: L.max_pool2d((2, 3), stride=(3, 2)), [(1, 7, 8, 2), (2, 5, 5, 1)]),
    "max_pool2d SAME": (lambda: L.max_pool2d(3, stride=2, padding="SAME"), [(2, 4, 5, 2)]),
    "avg_pool2d": (L.avg_pool2d, [(1, 4, 4, 1), (2, 6, 4, 3), (2, 7, 5, 2)]),
    "avg_pool2d overlap pad 1": (lambda: L.avg_pool2d(3, stride=2, padding=1), [(1, 5, 5, 2), (2, 8, 7, 3)]),
    "avg_pool2d gaps": (lambda: L.avg_pool2d((2, 3), stride=(3, 2)), [(2, 7, 8, 1)]),
    # combinators and models: the chain rule across layers, nested keys
    "sequential": (lambda: fnet.sequential(L.affine(6), L.tanh(),
                                           fnet.sequential(L.affine(5), L.sigmoid()),
                                           L.affine(4), L.relu(), L.affine(3), L.softmax()),
                   [(1, 8), (6, 8), (2, 2, 2, 2)]),
    "two_layer_net": (lambda: fnet.two_layer_net(12, 6, 3, weight_init_std=0.5),
                      [(1, 12), (5, 12), (2, 3, 4)]),
    # whole networks take seconds each to compile: one or two shapes apiece
    "multi_layer_net": (lambda: multi_layer_net(6, [5, 4], 3), [(1, 6), (2, 2, 3)]),
    # batch norm on (N, C) cannot train on a batch of 1 (it raises); on a batch of 2 its
    # output is +-1 whatever the input, and the gradient before it vanishes: batch >= 3
    "multi_layer_net batchnorm dropout": (
        lambda: multi_layer_net(6, [5], 3, activation="tanh", use_batchnorm=True, use_dropout=True,
                                dropout_rate=0.3),
        [(3, 6), (4, 2, 3)]),
    "simple_convnet": (lambda: simple_convnet((10, 10, 1), dict(filters=3, kernel_size=3), hidden_size=5,
                                              output_size=4, weight_init_std=0.3),
                       [(1, 10, 10, 1), (3, 10, 10, 1)]),
    # batch norm per channel on NHWC; layer norm over 4 features (over 2 it is degenerate: +-1)
    "convnet batchnorm dropout": (lambda: fnet.sequential(L.conv2d(3, 3, padding=1), L.batch_norm(), L.relu(),
                                                          L.max_pool2d(2), L.dropout(0.25), L.conv2d(4, 2),
                                                          L.avg_pool2d(2, stride=1), L.layer_norm(),
                                                          L.affine(3)),
                                  [(1, 6, 6, 2)]),
}

# loss name -> list of (outputs shape, targets kind)
LOSSES = {
    "softmax_cross_entropy": [((1, 4), "labels"), ((5, 3), "labels"), ((6, 10), "one_hot"),
                              ((4, 5), "probs")],
    "mean_squared_error": [((1, 4), "one_hot"), ((5, 3), "real"), ((7, 10), "probs")],
}

# node name -> list of (input shapes, static args, positive inputs only)
NODES = {
    "mul": [(((), ()), (), False), (((3,), (3,)), (), False), (((2, 3), (3,)), (), False),
            (((4, 1), (1, 5)), (), False)],
    "add": [(((), ()), (), False), (((3,), (3,)), (), False), (((2, 3), (3,)), (), False),
            (((4, 1), (1, 5)), (), False)],
    "inverse": [(((),), (), True), (((4,),), (), True), (((2, 3),), (), True)],
    "exp": [(((),), (), False), (((4,),), (), False), (((2, 3),), (), False)],
    "log": [(((),), (), True), (((4,),), (), True), (((2, 3),), (), True)],
    "repeat": [(((),), (3,), False), (((4,),), (1,), False), (((2, 3),), (5,), False)],
    "sum": [(((1,),), (), False), (((4,),), (), False), (((5, 2, 3),), (), False)],
}
# ----------------------------------------------------------------------------- end of THE LIST


def _ids(shape):
    return "x".join(map(str, shape)) or "scalar"


LAYER_PARAMS = [pytest.param(name, shape, id=f"{name}-{_ids(shape)}")
                for name, (_, shapes) in LAYERS.items() for shape in shapes]
LOSS_PARAMS = [pytest.param(name, shape, kind, id=f"{name}-{_ids(shape)}-{kind}")
               for name, cases in LOSSES.items() for shape, kind in cases]
NODE_PARAMS = [pytest.param(name, shapes, static, pos, id=f"{name}-{'-'.join(map(_ids, shapes))}")
               for name, cases in NODES.items() for shapes, static, pos in cases]


def _assert_close(errors, tol):
    assert errors, "nothing was compared"
    bad = {k: v for k, v in errors.items() if not v <= tol}
    assert not bad, f"handwritten backward differs from autodiff (tol {tol:g}): {bad}"


@pytest.mark.parametrize("name,shape", LAYER_PARAMS)
def test_layer_backward_equals_vjp_float64(name, shape):
    make, _ = LAYERS[name]
    _assert_close(compare_layer(make(), shape, dtype=jnp.float64), TOL64)


@pytest.mark.parametrize("name,shape,kind", LOSS_PARAMS)
def test_loss_backward_equals_vjp_float64(name, shape, kind):
    _assert_close(compare_loss(getattr(losses, name), shape, kind, dtype=jnp.float64), TOL64)


@pytest.mark.parametrize("name,shapes,static,positive", NODE_PARAMS)
def test_node_backward_equals_vjp_float64(name, shapes, static, positive):
    node = getattr(graph, name)
    _assert_close(compare_node(node, shapes, static=static, positive=positive), TOL64)


# float32 at the sizes the book trains with
@pytest.mark.parametrize("make,shape", [
    (lambda: L.affine(50), (100, 784)),
    (L.relu, (100, 50)),
    (L.sigmoid, (100, 50)),
    (L.tanh, (100, 50)),
    (L.softmax, (100, 10)),
    (lambda: fnet.two_layer_net(784, 50, 10), (100, 784)),
    (L.batch_norm, (100, 24, 24, 30)),
    (lambda: L.conv2d(30, 5), (100, 28, 28, 1)),
    (lambda: L.conv2d(16, 3, stride=2, padding=1), (32, 14, 14, 8)),
    (L.max_pool2d, (100, 24, 24, 30)),
    (lambda: L.max_pool2d(3, stride=2, padding=1), (32, 14, 14, 16)),
    (L.avg_pool2d, (100, 24, 24, 30)),
    (simple_convnet, (100, 28, 28, 1)),
], ids=["affine", "relu", "sigmoid", "tanh", "softmax", "two_layer_net", "batch_norm", "conv2d",
        "conv2d-stride2", "max_pool2d", "max_pool2d-3s2p1", "avg_pool2d", "simple_convnet"])
def test_layer_backward_equals_vjp_float32(make, shape):
    _assert_close(compare_layer(make(), shape, dtype=jnp.float32), TOL32)


def _running_stats(layer, shape, seed=1):
    """A state as after some training: means around 0, variances between 0.5 and 2."""
    key = jax.random.key(seed)

    def fill(path, v):
        k = jax.random.fold_in(key, hash(jax.tree_util.keystr(path)) % 2**31)
        if jax.tree_util.keystr(path).endswith("['var']"):
            return jax.random.uniform(k, v.shape, minval=0.5, maxval=2.0)
        return jax.random.normal(k, v.shape)

    return jax.tree_util.tree_map_with_path(fill, layer.init_state(shape))


# evaluation mode: dropout is the identity, batch norm uses (non-trivial) running statistics
@pytest.mark.parametrize("name,shape", [
    ("dropout", (4, 5)),
    ("batch_norm", (1, 5)),
    ("batch_norm", (2, 3, 4, 3)),
    ("multi_layer_net batchnorm dropout", (1, 6)),
])
def test_layer_backward_equals_vjp_eval_mode(name, shape):
    layer = LAYERS[name][0]()
    state = _running_stats(layer, shape) if "state" in layer.uses else None
    _assert_close(compare_layer(layer, shape, train=False, state=state), TOL64)


@pytest.mark.parametrize("name,kind", [("softmax_cross_entropy", "labels"),
                                       ("softmax_cross_entropy", "one_hot"),
                                       ("mean_squared_error", "one_hot")])
def test_loss_backward_equals_vjp_float32(name, kind):
    _assert_close(compare_loss(getattr(losses, name), (100, 10), kind, dtype=jnp.float32), TOL32)


# ----------------------------------------------------------------------------- the list is complete


def test_every_layer_is_listed():
    missing = set(L.__all__) - set(LAYERS)
    assert not missing, f"add these layers to LAYERS in {__file__}: {sorted(missing)}"


def test_every_loss_is_listed():
    public = {n for n in dir(losses) if isinstance(getattr(losses, n), fnet.Loss)}
    assert public == set(LOSSES), f"LOSSES must list exactly {sorted(public)}"


def test_every_node_is_listed():
    assert {n.name for n in graph.NODES} == set(NODES)
