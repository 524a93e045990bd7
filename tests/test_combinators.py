"""residual and parallel: parameters, shapes, errors, and how keys, modes and state reach the branches.

Their gradients are in the one list of tests/test_gradients.py; a branch rule that drops a
fan-out term is rejected in tests/test_harness_can_fail.py.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import rand

import fnet
from fnet import layers as L


def init(net, shape, seed=0):
    return net.init(jax.random.key(seed), (None, *shape[1:]))


def test_residual_params_and_identity_shortcut():
    net = fnet.residual(fnet.sequential(L.affine(4), L.relu(), L.affine(4)))
    params, out = init(net, (2, 4))
    assert out == (None, 4) and list(params) == ["body"]
    x = rand((3, 4))
    y, _ = net.forward(params, x)
    body, _ = net.children[0][1].forward(params["body"], x)
    np.testing.assert_allclose(y, body + x, rtol=1e-6)  # y = body(x) + x


def test_residual_with_projection_shortcut():
    net = fnet.residual(fnet.sequential(L.affine(3), L.tanh()), shortcut=L.affine(3))
    params, out = init(net, (2, 5))
    assert out == (None, 3) and list(params) == ["body", "shortcut"]
    assert [k for k, _ in net.children] == ["body", "shortcut"]


def test_residual_shape_mismatch_names_both_shapes_and_the_fix():
    with pytest.raises(fnet.ShapeError, match=r"block \(residual\).*\(N, 3\).*\(N, 5\).*shortcut="):
        fnet.sequential(("block", fnet.residual(L.affine(3)))).init(jax.random.key(0), (None, 5))
    with pytest.raises(fnet.ShapeError, match=r"the shortcut gives \(N, 2\)"):
        fnet.residual(L.affine(3), shortcut=L.affine(2)).init(jax.random.key(0), (None, 5))
    with pytest.raises(TypeError, match="body must be a Layer"):
        fnet.residual(L.affine)
    with pytest.raises(TypeError, match="shortcut must be a Layer or None"):
        fnet.residual(L.affine(3), shortcut="identity")


def test_parallel_concat_and_sum():
    x = rand((2, 5))
    net = fnet.parallel(L.affine(3), ("id", L.identity()), merge="concat")
    params, out = init(net, x.shape)
    assert out == (None, 8) and list(params) == ["affine_0", "id"]
    y, _ = net.forward(params, x)
    np.testing.assert_allclose(y[:, 3:], x)
    net = fnet.parallel(L.identity(), L.identity(), L.relu(), merge="sum")
    y, _ = net.forward(init(net, x.shape)[0], x)
    np.testing.assert_allclose(y, 2 * x + jnp.maximum(x, 0), rtol=1e-6)


def test_parallel_concatenates_image_channels():
    net = fnet.parallel(L.conv2d(2, 3, padding=1), L.conv2d(5, 1))
    assert init(net, (1, 6, 6, 3))[1] == (None, 6, 6, 7)


def test_parallel_errors_name_the_branches_and_shapes():
    with pytest.raises(fnet.ShapeError, match=r"affine_0 \(N, 3\), affine_1 \(N, 4\)"):
        init(fnet.parallel(L.affine(3), L.affine(4), merge="sum"), (1, 5))
    with pytest.raises(fnet.ShapeError, match=r"agree on all but the last.*conv2d_0 \(N, 4, 4, 2\), "
                                              r"conv2d_1 \(N, 2, 2, 2\)"):
        init(fnet.parallel(L.conv2d(2, 3, padding=1), L.conv2d(2, 3, stride=2, padding=1)), (1, 4, 4, 1))
    with pytest.raises(ValueError, match=r"merge must be one of \('concat', 'sum'\)"):
        fnet.parallel(L.affine(3), merge="add")
    with pytest.raises(ValueError, match="at least one branch"):
        fnet.parallel()
    with pytest.raises(ValueError, match="duplicate parameter keys"):
        fnet.parallel(("a", L.relu()), ("a", L.tanh()))
    with pytest.raises(TypeError, match="relu\\(\\) rather than relu"):
        fnet.parallel(L.relu)


def test_branches_get_different_keys_and_the_same_key_gives_the_same_masks():
    net = fnet.parallel(L.dropout(0.5), L.dropout(0.5))
    params, _ = init(net, (1, 200))
    x = jnp.ones((1, 200))
    y, _, _ = fnet.apply(net, params, x, key=jax.random.key(3), train=True)
    assert not np.array_equal(y[:, :200], y[:, 200:])  # fold_in(key, 0) and fold_in(key, 1)
    again, _, _ = fnet.apply(net, params, x, key=jax.random.key(3), train=True)
    np.testing.assert_array_equal(y, again)
    evaluated, _, _ = fnet.apply(net, params, x, train=False)
    np.testing.assert_array_equal(evaluated, jnp.ones((1, 400)))


def test_batch_norm_inside_a_residual_updates_and_uses_its_running_statistics():
    net = fnet.sequential(L.affine(4), fnet.residual(fnet.sequential(L.batch_norm(), L.relu()),
                                                     shortcut=fnet.sequential(L.batch_norm())))
    params, _ = init(net, (8, 3))
    state = net.init_state((None, 3))
    assert set(state["residual_0"]) == {"body", "shortcut"}
    x = rand((8, 3)) * 5 + 2
    _, _, new = fnet.apply(net, params, x, train=True, state=state)
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new, state)
    assert all(v > 0 for v in jax.tree.leaves(moved))  # every running statistic came back updated
    y_eval, _, same = fnet.apply(net, params, x, train=False, state=new)
    jax.tree.map(np.testing.assert_array_equal, same, new)  # evaluation leaves them alone
    np.testing.assert_allclose(fnet.predict(net, params, x, state=new), y_eval, rtol=1e-6)


def test_the_mode_is_required_inside_branches():
    net = fnet.residual(fnet.sequential(L.affine(3), L.dropout(0.2)))
    params, _ = init(net, (1, 3))
    with pytest.raises(ValueError, match="train=True or train=False"):
        fnet.apply(net, params, jnp.ones((1, 3)))
    with pytest.raises(TypeError, match=r"residual\.forward takes key=\.\.\., train=\.\.\."):
        net.forward(params, jnp.ones((1, 3)))


def test_a_childs_wrong_backward_is_caught_at_trace_time_naming_it():
    def backward(cache, dout):
        return {}, dout[:, :1]  # dx of the wrong shape

    bad = dataclasses.replace(L.relu(), name="bad", backward=backward)
    net = fnet.parallel(("good", L.relu()), ("oops", bad))
    params, _ = init(net, (2, 3))
    y, cache = net.forward(params, jnp.ones((2, 3)))
    with pytest.raises(fnet.ShapeError, match=r"oops \(bad\): backward returned dx of shape \(2, 1\)"):
        net.backward(cache, jnp.ones_like(y))


def test_params_of_another_net_are_refused():
    net = fnet.residual(L.affine(3), shortcut=L.affine(3))
    with pytest.raises(fnet.ShapeError, match=r"missing \['shortcut'\]"):
        net.forward({"body": init(L.affine(3), (1, 3))[0]}, jnp.ones((1, 3)))


def test_global_avg_pool2d():
    x = rand((2, 3, 5, 4))
    layer = L.global_avg_pool2d()
    assert init(layer, x.shape)[1] == (None, 4)
    y, cache = layer.forward({}, x)
    np.testing.assert_allclose(y, x.mean(axis=(1, 2)))
    _, dx = layer.backward(cache, jnp.ones((2, 4)))
    np.testing.assert_allclose(dx, jnp.full(x.shape, 1 / 15))  # dout spread evenly over H * W
    with pytest.raises(fnet.ShapeError, match=r"global_avg_pool2d.*\(N, H, W, C\)"):
        layer.forward({}, jnp.ones((2, 784)))


def test_conv2d_without_bias():
    params, _ = init(L.conv2d(4, 3, bias=False), (1, 5, 5, 2))
    assert list(params) == ["W"]
    with pytest.raises(TypeError, match="bias must be True or False"):
        L.conv2d(4, 3, bias=0)


def test_resnet_structure_and_errors():
    net = fnet.resnet()
    params, out = init(net, (1, 28, 28, 1))
    assert out == (None, 10)
    assert sum(p.size for p in jax.tree.leaves(params)) == 174_778
    assert list(params) == ["stem", "stage_1", "stage_2", "stage_3", "head"]
    assert list(params["stage_2"]["block_1"]) == ["body", "shortcut"]  # the stride-2 projection
    assert list(params["stage_2"]["block_2"]) == ["body"]  # identity
    small = fnet.resnet((32, 32, 3), widths=(8,), blocks=(1,), output_size=4)
    assert init(small, (1, 32, 32, 3))[1] == (None, 4)
    with pytest.raises(ValueError, match="same length"):
        fnet.resnet(widths=(16, 32), blocks=(2, 2, 2))
    with pytest.raises(TypeError, match="widths must be a non-empty tuple"):
        fnet.resnet(widths=16)
    with pytest.raises(ValueError, match="blocks must be a positive int"):
        fnet.resnet(blocks=(2, 0, 2))
    with pytest.raises(ValueError, match="input_shape is one image's"):
        fnet.resnet((28, 28))
