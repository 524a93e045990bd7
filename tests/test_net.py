"""fnet.net: loss_and_grads equals jax.grad of the composed loss (also with dropout and batch norm
under jit); predict and accuracy."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import init_params, rand, rel_err
from test_conv import conv_loop

import fnet
from fnet import layers as L
from fnet import losses
from fnet.errors import ContextError

NETS = {
    "two_layer_net": lambda: fnet.two_layer_net(20, 8, 4, weight_init_std=0.3),
    "deep_mixed": lambda: fnet.sequential(L.affine(9), L.sigmoid(), L.affine(7), L.tanh(),
                                          L.affine(6), L.relu(), L.affine(4)),
    "softmax_then_mse": lambda: fnet.sequential(L.affine(6), L.relu(), L.affine(4), L.softmax()),
}


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("targets", ["labels", "one_hot"])
def test_loss_and_grads_equals_jax_grad_of_composed_loss(name, targets):
    net = NETS[name]()
    loss = losses.mean_squared_error if name == "softmax_then_mse" else losses.softmax_cross_entropy
    params, _ = net.init(jax.random.key(0), (None, 20))
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    x = jax.random.normal(jax.random.key(1), (16, 20), jnp.float64)
    t = jax.random.randint(jax.random.key(2), (16,), 0, 4)
    if targets == "one_hot" or loss is losses.mean_squared_error:
        t = jax.nn.one_hot(t, 4, dtype=jnp.float64)

    value, grads = jax.jit(fnet.loss_and_grads(net, loss))(params, x, t)

    def composed(p):
        return loss.forward(net.forward(p, x)[0], t)[0]

    ref_value, ref_grads = jax.value_and_grad(composed)(params)
    assert float(value) == pytest.approx(float(ref_value), rel=1e-12)
    errors = jax.tree.leaves(jax.tree.map(rel_err, grads, ref_grads))
    assert max(errors) <= 1e-10, errors


def test_predict_and_accuracy_with_labels_and_one_hot():
    net = fnet.sequential(L.affine(3))
    params = {"affine_0": {"W": jnp.eye(3), "b": jnp.zeros(3)}}
    x = jnp.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 0, 0]])
    labels = jnp.array([0, 1, 1, 0])
    np.testing.assert_allclose(fnet.predict(net, params, x), x)
    assert float(fnet.accuracy(net, params, x, labels)) == 0.75
    assert float(fnet.accuracy(net, params, x, jax.nn.one_hot(labels, 3))) == 0.75
    assert float(jax.jit(fnet.accuracy, static_argnums=0)(net, params, x, labels)) == 0.75
    with pytest.raises(ValueError, match=r"accuracy: labels of shape \(4, 1\) do not fit outputs"):
        fnet.accuracy(net, params, x, labels[:, None])


def test_training_with_handwritten_gradients_reduces_the_loss():
    net = fnet.two_layer_net(2, 16, 2, weight_init_std=0.5)
    params, _ = net.init(jax.random.key(0), (None, 2))
    x = jax.random.normal(jax.random.key(1), (200, 2))
    t = (x[:, 0] * x[:, 1] > 0).astype(jnp.int32)  # XOR-like: needs the hidden layer
    f = jax.jit(fnet.loss_and_grads(net, losses.softmax_cross_entropy))
    first, _ = f(params, x, t)
    for _ in range(300):
        loss, grads = f(params, x, t)
        params = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
    assert float(loss) < 0.5 * float(first)
    assert float(fnet.accuracy(net, params, x, t)) > 0.9


def test_network_with_dropout_and_batch_norm_under_jit():
    net = fnet.sequential(("Conv1", L.conv2d(4, 3, padding=1)), ("BatchNorm1", L.batch_norm(momentum=0.5)),
                          ("Relu1", L.relu()), ("Pool1", L.max_pool2d(2)), ("Dropout1", L.dropout(0.5)),
                          ("Affine1", L.affine(3)))
    x = rand((8, 6, 6, 1), dtype=jnp.float32)
    t = jnp.arange(8) % 3
    params = init_params(net, x.shape, jnp.float32)
    state = net.init_state((None, 6, 6, 1))
    step = jax.jit(fnet.loss_and_grads(net, losses.softmax_cross_entropy))
    loss, grads, new_state = step(params, x, t, key=jax.random.key(1), state=state)

    assert jax.tree.structure(grads) == jax.tree.structure(params)  # running statistics are not trained
    assert set(new_state) == {"BatchNorm1"} and "mean" not in params["BatchNorm1"]
    conv = conv_loop(x, params["Conv1"]["W"], params["Conv1"]["b"], 1, 1)
    np.testing.assert_allclose(new_state["BatchNorm1"]["mean"], 0.5 * conv.mean(axis=(0, 1, 2)),
                               rtol=1e-5, atol=1e-6)
    assert new_state["BatchNorm1"]["var"].dtype == jnp.float32
    # the key reaches dropout: the same key repeats the step, another key changes it
    again = step(params, x, t, key=jax.random.key(1), state=state)
    other = step(params, x, t, key=jax.random.key(2), state=state)
    assert float(again[0]) == float(loss) and float(other[0]) != float(loss)
    assert np.all(np.isfinite(np.asarray(loss)))
    # evaluation: no key, running statistics, deterministic
    predict = jax.jit(lambda params, x, state: fnet.predict(net, params, x, state=state))
    np.testing.assert_array_equal(predict(params, x, new_state), predict(params, x, new_state))
    with pytest.raises(ContextError, match=r"^Dropout1 \(dropout\): needs a random key"):
        step(params, x, t, state=state)
