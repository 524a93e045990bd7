"""The gradient harness rejects wrong rules: a check that cannot fail proves nothing.

Each case plugs a plausible mistake into a real layer, loss or node and shows
that the same comparison the gradient tests use reports an error far above
the tolerance.
"""

import dataclasses

import jax.numpy as jnp
import pytest
from harness import compare_layer, compare_loss, compare_node
from test_gradients import TOL32, TOL64

from fnet import graph, losses
from fnet import layers as L


def seed000_sigmoid_backward(y, dout):
    # Seed 000's Sigmoid.backward: dout * (1.0 + self.out) * self.out. Right is (1.0 - y).
    return {}, dout * (1.0 + y) * y


def affine_db_mean(cache, dout):
    x, W = cache
    x2 = x.reshape(x.shape[0], -1)
    return {"W": x2.T @ dout, "b": dout.mean(axis=0)}, (dout @ W.T).reshape(x.shape)


def affine_dW_of_wrong_orientation(cache, dout):
    x, W = cache
    x2 = x.reshape(x.shape[0], -1)
    dW = (x2.T @ dout).T.reshape(W.shape)  # same shape when square, wrong values
    return {"W": dW, "b": dout.sum(axis=0)}, (dout @ W.T).reshape(x.shape)


def softmax_diagonal_only(y, dout):
    return {}, dout * y * (1 - y)


def relu_passes_everything(mask, dout):
    return {}, dout


def tanh_forgets_square(y, dout):
    return {}, dout * (1 - y)


WRONG_LAYERS = {
    "sigmoid_seed000": (L.sigmoid, seed000_sigmoid_backward, (4, 5)),
    "affine_db_mean": (lambda: L.affine(3), affine_db_mean, (4, 5)),
    "affine_dW_transposed": (lambda: L.affine(4), affine_dW_of_wrong_orientation, (3, 4)),
    "softmax_diagonal_only": (L.softmax, softmax_diagonal_only, (4, 5)),
    "relu_no_mask": (L.relu, relu_passes_everything, (4, 5)),
    "tanh_forgets_square": (L.tanh, tanh_forgets_square, (4, 5)),
}


@pytest.mark.parametrize("name", WRONG_LAYERS)
@pytest.mark.parametrize("dtype,tol", [(jnp.float64, TOL64), (jnp.float32, TOL32)], ids=["f64", "f32"])
def test_wrong_layer_rule_is_rejected(name, dtype, tol):
    make, wrong, shape = WRONG_LAYERS[name]
    broken = dataclasses.replace(make(), backward=wrong)
    errors = compare_layer(broken, shape, dtype=dtype)
    assert max(errors.values()) > 1e3 * tol, errors


def test_right_rule_passes_where_wrong_one_fails():
    # The same input, the same harness: only the rule differs.
    assert max(compare_layer(L.sigmoid(), (4, 5)).values()) <= TOL64
    broken = dataclasses.replace(L.sigmoid(), backward=seed000_sigmoid_backward)
    assert max(compare_layer(broken, (4, 5)).values()) > 1e-2


def test_wrong_loss_rules_are_rejected():
    ce_without_mean = dataclasses.replace(
        losses.softmax_cross_entropy,
        backward=lambda cache, dout=1.0: (cache[0] - jnp.eye(cache[0].shape[1])[cache[1]]) * dout)
    assert max(compare_loss(ce_without_mean, (5, 3), "labels").values()) > 0.1
    ignores_dout = dataclasses.replace(
        losses.mean_squared_error, backward=lambda diff, dout=1.0: diff / diff.shape[0])
    assert max(compare_loss(ignores_dout, (5, 3), "real").values()) > 0.1


def test_wrong_node_rules_are_rejected():
    mul_unswapped = dataclasses.replace(graph.mul, backward=lambda c, d: (d * c[0], d * c[1]))
    assert max(compare_node(mul_unswapped, ((3,), (3,))).values()) > 0.1
    log_wrong = dataclasses.replace(graph.log, backward=lambda x, d: d * x)
    assert max(compare_node(log_wrong, ((4,),), positive=True).values()) > 0.1
