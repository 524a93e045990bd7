"""fnet.gradcheck: the numerical gradient is right, chunking changes nothing, the report finds faults."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnet
from fnet import gradcheck, losses
from fnet import layers as L

PYTREES = {
    "scalar": jnp.array(0.7),
    "vector": jnp.linspace(-2.0, 3.0, 7),
    "nested": {"a": jnp.arange(24.0).reshape(2, 3, 4) / 10 - 1,
               "b": (jnp.array([0.5, -1.5]), jnp.ones((1, 1)))},
}


def _random_like(tree, seed=0):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, jnp.shape(x), jnp.float64)
                                        for k, x in zip(keys, leaves, strict=True)])


@pytest.mark.parametrize("name", sorted(PYTREES))
def test_quadratic_and_sine_have_known_gradients(name):
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), PYTREES[name])
    c = _random_like(params, seed=1)

    def quadratic(p):
        pairs = zip(jax.tree.leaves(c), jax.tree.leaves(p), strict=True)
        return sum(jnp.sum(ci * pi * pi) for ci, pi in pairs)

    def sines(p):
        return sum(jnp.sum(jnp.sin(pi)) for pi in jax.tree.leaves(p))

    for f, want in ((quadratic, jax.tree.map(lambda ci, pi: 2 * ci * pi, c, params)),
                    (sines, jax.tree.map(jnp.cos, params))):
        got = gradcheck.numerical_gradient(f, params)
        assert jax.tree.structure(got) == jax.tree.structure(params)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            assert g.shape == w.shape and g.dtype == jnp.float64
            np.testing.assert_allclose(g, w, rtol=1e-8, atol=1e-9)


def test_float32_uses_a_larger_step_and_stays_float32():
    p = {"w": jnp.linspace(-1.0, 1.0, 5, dtype=jnp.float32)}
    g = gradcheck.numerical_gradient(lambda p: jnp.sum(jnp.sin(p["w"])), p)
    assert g["w"].dtype == jnp.float32
    np.testing.assert_allclose(g["w"], jnp.cos(p["w"]), atol=1e-4)
    assert gradcheck.default_eps(jnp.float32) > gradcheck.default_eps(jnp.float64)


def test_chunk_size_changes_nothing():
    # Dyadic values and step: every evaluation is exact, so any indexing slip would show.
    p = {"a": jnp.arange(-40.0, 40.0).reshape(10, 8) / 16, "b": jnp.arange(5.0) / 4, "c": jnp.array(0.75)}

    def f(p):
        return 0.5 * (jnp.sum(p["a"] ** 2) + jnp.sum(p["b"] ** 2) + p["c"] ** 2)

    results = [gradcheck.numerical_gradient(f, p, 2.0 ** -6, chunk_size=n) for n in (1, 3, 80, 1000)]
    for r in results:
        for got, want in zip(jax.tree.leaves(r), jax.tree.leaves(p), strict=True):
            np.testing.assert_array_equal(got, want)  # d/dp (p^2 / 2) = p, exactly


def test_chunked_evaluations_of_a_real_loss_agree():
    net, params, x, t = _small_net()
    loss = _loss(net, x, t)
    one = gradcheck.numerical_gradient(loss, params)
    many = gradcheck.numerical_gradient(loss, params, chunk_size=7)
    assert gradcheck.compare(one, many).ok(1e-10)


def test_report_finds_a_planted_error():
    rng = np.random.default_rng(0)
    numerical = {"Affine1": {"W": jnp.asarray(rng.normal(size=(6, 4))), "b": jnp.asarray(rng.normal(size=4))},
                 "Affine2": {"W": jnp.asarray(rng.normal(size=(4, 3))), "b": jnp.zeros(3)}}
    backprop = jax.tree.map(lambda a: a, numerical)
    numerical["Affine1"]["W"] = numerical["Affine1"]["W"].at[3, 1].set(1.0)
    backprop["Affine1"]["W"] = numerical["Affine1"]["W"].at[3, 1].set(1.25)  # the largest error
    backprop["Affine2"]["b"] = numerical["Affine2"]["b"].at[2].set(1e-6)  # small, but relative to zero
    report = gradcheck.compare(backprop, numerical)

    w1 = report["W1"]
    assert w1 is report["Affine1/W"] and w1.path == "Affine1/W" and w1.book == "W1"
    assert w1.max_abs_at == (3, 1) and w1.max_abs == pytest.approx(0.25)
    assert w1.mean_abs == pytest.approx(0.25 / 24)
    assert w1.max_rel_at == (3, 1) and w1.max_rel == pytest.approx(0.25 / 2.25)
    b2 = report["b2"]
    assert b2.max_abs_at == (2,) and b2.max_rel_at == (2,) and b2.max_rel == pytest.approx(1.0)
    assert report["b1"].max_abs == 0 and report["W2"].max_rel == 0
    assert report.worst().name == "W1" and report.worst("max_rel").name == "b2"
    assert not report.ok(1e-3) and report.ok(0.3) and not report.ok(0.5, metric="max_rel")
    with pytest.raises(ValueError, match="unknown metric"):
        report.ok(1.0, metric="median")

    lines = str(report).splitlines()
    assert lines[0].split()[:3] == ["param", "book", "shape"]
    row = next(line for line in lines if line.startswith("Affine1/W"))
    assert row.split()[:6] == ["Affine1/W", "W1", "(6,", "4)", f"{0.25 / 24:.2e}", "2.50e-01"]
    assert "[3, 1]" in row


def test_report_names_unknown_structures_by_path_and_nan_fails():
    a = {"encoder": [jnp.ones(3), jnp.zeros((2, 2))]}
    b = {"encoder": [jnp.ones(3), jnp.zeros((2, 2)).at[1, 0].set(jnp.nan)]}
    report = gradcheck.compare(a, b)
    assert [d.path for d in report] == ["encoder/0", "encoder/1"]
    assert report["encoder/1"].book is None
    assert report["encoder/1"].max_abs_at == (1, 0) and report["encoder/1"].max_abs == np.inf
    assert not report.ok(1e9)
    with pytest.raises(ValueError, match="different structures"):
        gradcheck.compare(a, {"encoder": [jnp.ones(3)]})


def test_bad_arguments():
    with pytest.raises(TypeError, match="floating point"):
        gradcheck.numerical_gradient(lambda p: jnp.sum(p), jnp.arange(3))
    with pytest.raises(ValueError, match="scalar"):
        gradcheck.numerical_gradient(lambda p: p * 2, jnp.ones(3))
    with pytest.raises(ValueError, match="chunk_size"):
        gradcheck.numerical_gradient(lambda p: jnp.sum(p), jnp.ones(3), chunk_size=0)
    with pytest.raises(ValueError, match="numerical_gradient: eps must be a positive number, got 0"):
        gradcheck.numerical_gradient(lambda p: jnp.sum(p), jnp.ones(3), eps=0.0)  # it gave NaN
    report = gradcheck.compare({"w": jnp.ones(3)}, {"w": jnp.ones(3)})
    assert report.ok(0.0)
    with pytest.raises(ValueError, match=r"GradReport\.ok: threshold must be >= 0, got -1"):
        report.ok(-1.0)  # nothing could pass it


# --------------------------------------------------------------------------- the book's check


def _small_net(hidden=None, seed=0):
    hidden = hidden or L.relu()
    net = fnet.sequential(("Affine1", L.affine(6, W_init=0.3)), ("Relu1", hidden), ("Affine2", L.affine(3)))
    params, _ = net.init(jax.random.key(seed), (None, 12))
    params = jax.tree.map(lambda a: a.astype(jnp.float64) + (0.1 if a.ndim == 1 else 0.0), params)
    x = jax.random.uniform(jax.random.key(1), (3, 12), jnp.float64)
    return net, params, x, jnp.array([0, 2, 1])


def _loss(net, x, t):
    return lambda p: losses.softmax_cross_entropy.forward(net.forward(p, x)[0], t)[0]


def _check(net, params, x, t):
    _, backprop = fnet.loss_and_grads(net, losses.softmax_cross_entropy)(params, x, t)
    return gradcheck.compare(backprop, gradcheck.numerical_gradient(_loss(net, x, t), params))


def test_two_layer_net_passes_in_float64():
    net = fnet.two_layer_net(12, 6, 3, weight_init_std=0.3)
    _, params, x, t = _small_net()
    report = _check(net, params, x, t)
    assert [d.book for d in report] == ["W1", "b1", "W2", "b2"]
    assert report.ok(1e-8), report
    assert all(d.scale > 1e-3 for d in report)  # the gradients are not trivially zero


def relu_passes_everything(mask, dout):
    return {}, dout


def test_a_broken_backward_fails_the_check():
    net, params, x, t = _small_net(hidden=dataclasses.replace(L.relu(), backward=relu_passes_everything))
    report = _check(net, params, x, t)
    assert not report.ok(1e-8)
    assert report["W1"].max_abs > 1e-3 and report["b1"].max_abs > 1e-3  # below the broken ReLU
    assert report["W2"].max_abs < 1e-8 and report["b2"].max_abs < 1e-8  # above it: still right


# ----------------------------------------------------------------------------- check_layer


def _square(backward=None):
    def init(key, input_shape):
        return {}, input_shape

    return fnet.Layer("square", init, lambda p, x: (x * x, x), backward or (lambda x, d: ({}, 2 * x * d)))


def test_check_layer_accepts_right_rules_and_rejects_wrong_ones():
    good = gradcheck.check_layer(_square(), (None, 5))
    assert good and good.errors["x"] < 1e-9 and "OK: threshold" in str(good)
    bad = gradcheck.check_layer(_square(lambda x, d: ({}, 3 * x * d)), (None, 5))
    assert not bad and bad.errors["x"] > 0.1 and "x: max|a-b| / max|b|" in str(bad) and "WRONG" in str(bad)
    with pytest.raises(gradcheck.GradientCheckError, match=r"FAILED: threshold 1e-06"):
        gradcheck.check_layer(_square(lambda x, d: ({}, x * d)), (None, 5), raise_on_failure=True)


def test_check_layer_covers_every_parameter_and_the_input():
    result = gradcheck.check_layer(fnet.two_layer_net(6, 4, 3), (None, 6))
    assert result and set(result.errors) == {"params/Affine1/W", "params/Affine1/b", "params/Affine2/W",
                                             "params/Affine2/b", "x"}
    # a wrong db (a mean instead of a sum over the batch) is caught in params/b only
    layer = L.affine(3)

    def mean_db(cache, dout):
        dparams, dx = layer.backward(cache, dout)
        return {"W": dparams["W"], "b": dout.mean(axis=0)}, dx

    wrong = gradcheck.check_layer(dataclasses.replace(layer, backward=mean_db), (None, 4), batch_size=5)
    assert not wrong and wrong.errors["params/b"] > 0.1 and wrong.errors["params/W"] < 1e-9


def test_check_layer_modes_zeros_and_x64():
    assert gradcheck.check_layer(L.dropout(0.5), (None, 6), train=True)
    assert gradcheck.check_layer(L.batch_norm(), (None, 4, 4, 2), train=False)
    with pytest.raises(fnet.ContextError, match=r"^dropout: .*check_layer\(\.\.\., train=True\)"):
        gradcheck.check_layer(L.dropout(0.5), (None, 6))
    relu = gradcheck.check_layer(L.relu(), (None, 8), batch_size=4)
    assert relu and relu.zeros["x"][0] > 0 and "Exactly-zero gradients: x" in str(relu)
    x64 = jax.config.jax_enable_x64
    with jax.enable_x64(False):
        assert gradcheck.check_layer(_square(), (None, 3)).dtype == "float64"
        assert not jax.config.jax_enable_x64  # restored
    assert jax.config.jax_enable_x64 == x64
