"""fnet.views.saliency: the input gradient by the handwritten backward, and what CS231n builds on it."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnet import layers as L
from fnet.combinators import sequential
from fnet.core import apply
from fnet.errors import RangeError
from fnet.models import resnet, simple_convnet
from fnet.views import class_visualization, fooling_image, saliency_map, score_gradient

CONV = {"filters": 4, "kernel_size": 3, "padding": 0, "stride": 1}


def _convnet(dtype=jnp.float32):
    net = simple_convnet((8, 8, 1), CONV, hidden_size=12, output_size=5)
    params, _ = net.init(jax.random.key(0), (None, 8, 8, 1))
    return net, jax.tree.map(lambda w: w.astype(dtype), params)


def _resnet():
    net = resnet((8, 8, 1), widths=(4, 8), blocks=(1, 1), output_size=5)
    params, _ = net.init(jax.random.key(1), (None, 8, 8, 1))
    state = net.init_state((None, 8, 8, 1))
    return net, params, state


def test_the_score_gradient_is_autodiffs():
    net, params = _convnet(jnp.float64)
    x = jax.random.normal(jax.random.key(2), (3, 8, 8, 1), jnp.float64)
    labels = jnp.array([0, 4, 2])
    scores, dx = score_gradient(net, params, x, labels)

    def picked(x):
        y, _, _ = apply(net, params, x, train=False)
        return jnp.sum(y[jnp.arange(3), labels])

    np.testing.assert_allclose(dx, jax.grad(picked)(x), rtol=1e-10, atol=1e-12)
    assert scores.shape == (3, 5)


def test_the_score_gradient_of_a_resnet_in_evaluation_mode():
    net, params, state = _resnet()
    params = jax.tree.map(lambda w: w.astype(jnp.float64), params)
    state = jax.tree.map(lambda s: s.astype(jnp.float64), state)
    x = jax.random.normal(jax.random.key(3), (2, 8, 8, 1), jnp.float64)

    def picked(x):
        y, _, _ = apply(net, params, x, train=False, state=state)
        return y[0, 1] + y[1, 3]

    _, dx = score_gradient(net, params, x, jnp.array([1, 3]), state=state)
    np.testing.assert_allclose(dx, jax.grad(picked)(x), rtol=1e-9, atol=1e-12)


def test_the_saliency_map_is_the_largest_channel_of_the_gradient():
    net, params = _convnet()
    x = jax.random.normal(jax.random.key(4), (2, 8, 8, 1), jnp.float32)
    s = saliency_map(net, params, x, jnp.array([1, 2]))
    _, dx = score_gradient(net, params, x, jnp.array([1, 2]))
    assert s.shape == (2, 8, 8)
    np.testing.assert_array_equal(s, jnp.abs(dx)[..., 0])
    assert float(s.max()) > 0


def test_a_saliency_map_of_a_flat_input_keeps_every_feature():
    # no channel axis to take the largest of: |dscore/dx| itself, one value per input feature
    net = sequential(L.affine(6), L.relu(), L.affine(3))
    params, _ = net.init(jax.random.key(0), (None, 10))
    x = jax.random.normal(jax.random.key(1), (4, 10), jnp.float32)
    labels = jnp.array([0, 2, 1, 2])
    s = saliency_map(net, params, x, labels)
    _, dx = score_gradient(net, params, x, labels)
    assert s.shape == (4, 10)
    np.testing.assert_array_equal(s, jnp.abs(dx))
    assert float(s.min()) >= 0 and float(s.max()) > 0


@pytest.mark.parametrize("labels", [[1, 5], [-1, 0], np.array([9, 1])])
@pytest.mark.parametrize("view", ["score_gradient", "saliency_map"])
def test_a_class_outside_the_scores_is_refused_not_a_blank_map(view, labels):
    # one-hot of such an index is all zeros: its gradient would be a silent map of zeros
    net, params = _convnet()
    x = jax.random.normal(jax.random.key(4), (2, 8, 8, 1), jnp.float32)
    call = {"score_gradient": score_gradient, "saliency_map": saliency_map}[view]
    message = rf"{view}: classes must be in \[0, 5\) \(the network gives 5 scores\)"
    with pytest.raises(RangeError, match=message):
        call(net, params, x, jnp.asarray(labels))


def test_classes_traced_inside_a_users_jit_cannot_be_checked():
    # as documented: a traced index is not known until the program runs, and one outside the
    # scores picks none of them (a zero map); the index inside gives the map it gives outside jit
    net, params = _convnet()
    x = jax.random.normal(jax.random.key(4), (2, 8, 8, 1), jnp.float32)
    s = jax.jit(lambda labels: saliency_map(net, params, x, labels))(jnp.array([1, 7]))
    np.testing.assert_allclose(s[0], saliency_map(net, params, x[:1], jnp.array([1]))[0], atol=1e-6)
    assert float(jnp.abs(s[1]).max()) == 0.0


def test_a_fooling_image_climbs_the_targets_score_until_it_is_predicted():
    # a linear classifier whose class directions are orthonormal: each step of length lr along the
    # target's normalised gradient raises its score by exactly lr and leaves the others as they are
    net = sequential(L.flatten(), L.affine(5))
    params, _ = net.init(jax.random.key(0), (None, 4, 4, 1))
    q, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(1), (16, 5), jnp.float32))
    params["affine_0"] = {"W": q, "b": jnp.zeros(5, jnp.float32)}
    x = jax.random.normal(jax.random.key(5), (1, 4, 4, 1), jnp.float32)
    y, _, _ = apply(net, params, x, train=False)
    target = int(jnp.argmin(y[0]))
    fooled = jax.jit(fooling_image, static_argnums=(0, 3), static_argnames=("max_steps", "lr"))(
        net, params, x, target, lr=0.25, max_steps=100)
    expected = int(np.ceil(float(y[0].max() - y[0, target]) / 0.25))
    assert bool(fooled.fooled) and int(fooled.steps) in (expected, expected + 1)
    y2, _, _ = apply(net, params, fooled.image, train=False)
    assert int(jnp.argmax(y2[0])) == target
    np.testing.assert_allclose(float(jnp.linalg.norm(fooled.image - x)), 0.25 * int(fooled.steps), rtol=1e-4)
    short = fooling_image(net, params, x, target, lr=0.25, max_steps=expected - 1)
    assert not bool(short.fooled) and int(short.steps) == expected - 1


def test_a_fooling_image_that_is_already_the_target_takes_no_step():
    net, params = _convnet()
    x = jax.random.normal(jax.random.key(6), (1, 8, 8, 1), jnp.float32)
    y, _, _ = apply(net, params, x, train=False)
    result = fooling_image(net, params, x, int(jnp.argmax(y[0])))
    assert bool(result.fooled) and int(result.steps) == 0
    np.testing.assert_array_equal(result.image, x)


def test_class_visualization_raises_the_targets_score():
    net, params = _convnet()
    key = jax.random.key(7)
    image = class_visualization(net, params, 3, (8, 8, 1), key=key, steps=30, lr=0.5)
    noise = 0.1 * jax.random.normal(key, (1, 8, 8, 1), jnp.float32)
    before, _, _ = apply(net, params, noise, train=False)
    after, _, _ = apply(net, params, image, train=False)
    assert float(after[0, 3]) > float(before[0, 3]) + 1.0
    assert int(jnp.argmax(after[0])) == 3


@pytest.mark.parametrize("call, message", [
    (lambda net, p, x: fooling_image(net, p, x, 5),
     r"fooling_image: target must be a class index in \[0, 5\)"),
    (lambda net, p, x: fooling_image(net, p, x[:1], 1, max_steps=0), "fooling_image: max_steps"),
    (lambda net, p, x: fooling_image(net, p, x, 1), r"fooling_image: takes one image, shape \(1, ...\)"),
    (lambda net, p, x: class_visualization(net, p, -1, (8, 8, 1), key=jax.random.key(0)),
     r"class_visualization: target must be a class index"),
    (lambda net, p, x: saliency_map(net, p, x, jnp.array([0])),
     r"one integer class per example, shape \(2,\)"),
])
def test_bad_arguments_name_the_function(call, message):
    net, params = _convnet()
    x = jnp.zeros((2, 8, 8, 1), jnp.float32)
    with pytest.raises(ValueError, match=message):
        call(net, params, x if "one image" in message else (x[:1] if "target" in message else x))


@pytest.mark.parametrize("view", ["score_gradient", "saliency_map", "fooling_image", "class_visualization"])
def test_each_view_compiles_once_for_a_network_and_its_shapes(view):
    # the layers run op by op would trace (and compile each operation) on every call; each view is
    # one compiled program: its second call with the same network and shapes runs no layer's Python
    traced = []
    base = sequential(L.flatten(), L.affine(3))

    def forward(params, x, **ctx):
        traced.append(x.shape)
        return base.forward(params, x, **ctx)

    net = dataclasses.replace(base, forward=forward)
    params, _ = net.init(jax.random.key(0), (None, 4, 4, 1))
    x, labels = jax.random.normal(jax.random.key(1), (2, 4, 4, 1)), jnp.array([0, 2])
    call = {"score_gradient": lambda: score_gradient(net, params, x, labels),
            "saliency_map": lambda: saliency_map(net, params, x, labels),
            "fooling_image": lambda: fooling_image(net, params, x[:1], 1, max_steps=3),
            "class_visualization": lambda: class_visualization(net, params, 2, (4, 4, 1),
                                                               key=jax.random.key(0), steps=3)}[view]
    first = jax.tree.map(np.asarray, call())
    assert traced, "the first call traces the network"
    before = len(traced)
    again = jax.tree.map(np.asarray, call())
    assert len(traced) == before, f"{view} ran the layers again: {traced[before:]}"
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)
