"""The layer protocol and sequential: names, shapes, purity, routing of key/mode/state, errors."""

import jax
import jax.numpy as jnp
import pytest

import fnet
from fnet import layers as L
from fnet import losses


def _net():
    return fnet.sequential(L.affine(50), L.relu(), L.affine(10))


def test_params_are_named_by_kind_and_counter():
    params, out = _net().init(jax.random.key(0), (None, 784))
    assert list(params) == ["affine_0", "relu_0", "affine_1"]
    assert params["affine_0"]["W"].shape == (784, 50)
    assert params["affine_1"]["b"].shape == (10,)
    assert params["relu_0"] == {}
    assert out == (None, 10)


def test_explicit_keys_and_duplicates():
    net = fnet.sequential(("hidden", L.affine(5)), L.relu(), ("out", L.affine(2)))
    params, _ = net.init(jax.random.key(0), (None, 3))
    assert list(params) == ["hidden", "relu_0", "out"]
    with pytest.raises(ValueError, match=r"duplicate parameter keys \['a'\]"):
        fnet.sequential(("a", L.relu()), ("a", L.relu()))


def test_sequential_rejects_uncalled_constructor():
    with pytest.raises(TypeError, match=r"forget to call a constructor, e.g. relu\(\)"):
        fnet.sequential(L.affine(3), L.relu)
    with pytest.raises(ValueError, match="at least one layer"):
        fnet.sequential()


def test_init_is_deterministic_in_the_key():
    a, _ = _net().init(jax.random.key(1), (None, 784))
    b, _ = _net().init(jax.random.key(1), (None, 784))
    c, _ = _net().init(jax.random.key(2), (None, 784))
    assert all(jax.tree.leaves(jax.tree.map(jnp.array_equal, a, b)))
    assert not jnp.array_equal(a["affine_0"]["W"], c["affine_0"]["W"])
    # the two affine layers get different keys
    net = fnet.sequential(L.affine(4), L.affine(4))
    p, _ = net.init(jax.random.key(0), (None, 4))
    assert not jnp.array_equal(p["affine_0"]["W"], p["affine_1"]["W"])


def test_shape_inference_needs_no_data_and_accepts_concrete_batch():
    net = fnet.sequential(L.flatten(), L.affine(7), L.softmax())
    assert fnet.output_shape(net, (None, 28, 28, 1)) == (None, 7)
    assert fnet.output_shape(net, (32, 28, 28, 1)) == (32, 7)


def test_bad_input_shape_argument():
    with pytest.raises(ValueError, match=r"input_shape must be a tuple .* got 784"):
        _net().init(jax.random.key(0), 784)
    with pytest.raises(ValueError, match=r"affine_0 \(affine\): expected an input of shape "
                                         r"\(N, features...\)"):
        _net().init(jax.random.key(0), (784,))


def test_sequentials_nest_with_nested_keys():
    block = fnet.sequential(L.affine(6), L.tanh())
    net = fnet.sequential(block, block, L.affine(2))
    params, out = net.init(jax.random.key(0), (None, 3))
    assert list(params) == ["sequential_0", "sequential_1", "affine_0"]
    assert params["sequential_1"]["affine_0"]["W"].shape == (6, 6)
    x = jnp.ones((4, 3))
    y, cache = net.forward(params, x)
    dparams, dx = net.backward(cache, jnp.ones_like(y))
    assert jax.tree.structure(dparams) == jax.tree.structure(params)
    assert dx.shape == x.shape


def test_nested_error_names_the_path():
    net = fnet.sequential(L.affine(3), fnet.sequential(L.relu(), L.affine(4)))
    params, _ = net.init(jax.random.key(0), (None, 5))
    params["sequential_0"]["affine_0"] = {"W": jnp.ones((2, 4)), "b": jnp.zeros(4)}
    with pytest.raises(ValueError, match=r"^sequential_0/affine_0 \(affine\): input of shape \(2, 3\) "
                                         r"has 3 features per example, but W has shape \(2, 4\)"):
        net.forward(params, jnp.ones((2, 5)))


def test_forward_is_pure_and_jittable_with_caches_crossing_jit():
    net = fnet.sequential(L.affine(5), L.sigmoid(), L.flatten(), L.affine(3))
    params, _ = net.init(jax.random.key(0), (None, 2, 4))
    x = jax.random.normal(jax.random.key(1), (6, 2, 4))
    y1, c1 = net.forward(params, x)
    y2, _ = net.forward(params, x)
    assert jnp.array_equal(y1, y2)
    yj, cj = jax.jit(net.forward)(params, x)  # the cache comes out of one jit ...
    dp, dx = jax.jit(net.backward)(cj, jnp.ones_like(yj))  # ... and goes into another
    dp_eager, dx_eager = net.backward(c1, jnp.ones_like(y1))
    assert jnp.allclose(yj, y1, atol=1e-6)
    assert jnp.allclose(dx, dx_eager, atol=1e-6)
    assert dx.shape == x.shape


def test_params_that_do_not_match_the_net():
    params, _ = _net().init(jax.random.key(0), (None, 4))
    del params["affine_1"]
    params["dense"] = {}
    with pytest.raises(ValueError, match=r"missing \['affine_1'\], unexpected \['dense'\]"):
        _net().forward(params, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="params must be the dict that init returned"):
        _net().forward([1, 2], jnp.ones((2, 4)))


def _custom(backward):
    def init(key, shape):
        return {"w": jnp.ones(shape[1:])}, shape

    def forward(params, x):
        return x * params["w"], (x, params["w"])

    return fnet.Layer("scale", init, forward, backward)


def test_backward_with_wrong_dparams_structure_is_named():
    bad = _custom(lambda c, d: ({"W": d.sum(0)}, d * c[1]))  # key "W" instead of "w"
    net = fnet.sequential(L.affine(3), bad)
    params, _ = net.init(jax.random.key(0), (None, 2))
    y, cache = net.forward(params, jnp.ones((4, 2)))
    with pytest.raises(ValueError, match=r"^scale_0 \(scale\): backward returned dparams with structure"):
        net.backward(cache, y)


@pytest.mark.parametrize("backward, message", [
    (lambda c, d: ({"w": d}, d * c[1]),  # forgot to sum over the batch
     r"scale_0 \(scale\): backward returned a gradient of shape \(4, 3\) for a parameter of shape \(3,\)"),
    (lambda c, d: ({"w": (d * c[0]).sum(0)}, d.sum(0)),
     r"backward returned dx of shape \(3,\), but the layer's input had shape \(4, 3\)"),
], ids=["gradient", "dx"])
def test_backward_with_a_wrong_shape_is_named(backward, message):
    net = fnet.sequential(_custom(backward))
    params, _ = net.init(jax.random.key(0), (None, 3))
    y, cache = net.forward(params, jnp.ones((4, 3)))
    with pytest.raises(ValueError, match=message):
        net.backward(cache, y)


def test_layer_record_validates_uses():
    with pytest.raises(ValueError, match="unknown entries in uses"):
        fnet.Layer("x", None, None, None, uses={"rng"})
    with pytest.raises(ValueError, match="must give init_state"):
        fnet.Layer("x", None, None, None, uses={"state"})


# ---------------------------------------------------------------- key, mode and state routing
# Two toy layers stand in for dropout (key + mode) and batch norm (mode + state).


def noise() -> fnet.Layer:
    def init(key, shape):
        return {}, shape

    def forward(params, x, *, key, train):
        if not train:
            return x, ()
        if key is None:
            raise ValueError("noise needs a key")
        return x + jax.random.normal(key, x.shape, x.dtype), ()

    return fnet.Layer("noise", init, forward, lambda c, d: ({}, d), uses={"key", "train"})


def counter() -> fnet.Layer:
    def init(key, shape):
        return {}, shape

    def forward(params, x, *, train, state):
        return x, (), {"n": state["n"] + (1 if train else 0)}

    return fnet.Layer("counter", init, forward, lambda c, d: ({}, d), uses={"train", "state"},
                      init_state=lambda shape: {"n": jnp.zeros((), jnp.int32)})


def test_sequential_uses_the_union_and_routes_keys_per_layer():
    net = fnet.sequential(noise(), L.relu(), noise(), counter())
    assert net.uses == {"key", "train", "state"}
    params, _ = net.init(jax.random.key(0), (None, 3))
    state = net.init_state((None, 3))
    assert state == {"counter_0": {"n": 0}}
    x = jnp.zeros((2, 3))
    y1, _, s1 = fnet.apply(net, params, x, key=jax.random.key(5), train=True, state=state)
    y2, _, _ = fnet.apply(net, params, x, key=jax.random.key(5), train=True, state=state)
    y3, _, _ = fnet.apply(net, params, x, key=jax.random.key(6), train=True, state=state)
    assert jnp.array_equal(y1, y2) and not jnp.array_equal(y1, y3)
    assert int(s1["counter_0"]["n"]) == 1
    y_eval, _, s_eval = fnet.apply(net, params, x, train=False, state=state)
    assert jnp.array_equal(y_eval, x) and int(s_eval["counter_0"]["n"]) == 0


def test_layers_get_different_keys():
    net = fnet.sequential(noise(), noise())
    params, _ = net.init(jax.random.key(0), (None, 3))
    y, cache, _ = fnet.apply(net, params, jnp.zeros((1, 1000)), key=jax.random.key(0), train=True)
    # identical keys would make the second draw equal the first: y would be exactly 2 * first
    first = jax.random.normal(jax.random.fold_in(jax.random.key(0), 0), (1, 1000))
    assert not jnp.allclose(y, 2 * first)


def test_mode_and_state_have_no_silent_defaults():
    net = fnet.sequential(L.affine(3), noise(), counter())
    params, _ = net.init(jax.random.key(0), (None, 3))
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="pass train=True or train=False"):
        fnet.apply(net, params, x, state=net.init_state((None, 3)))
    with pytest.raises(ValueError, match=r"pass state=\.\.\., starting from net.init_state"):
        fnet.apply(net, params, x, train=False)
    with pytest.raises(TypeError, match=r"sequential.forward takes key=\.\.\., state=\.\.\., train=\.\.\."):
        net.forward(params, x)
    with pytest.raises(ValueError, match=r"state must have entries \['counter_0'\]"):
        fnet.apply(net, params, x, train=False, state={})


def test_apply_on_plain_layer_returns_no_state():
    params, _ = _net().init(jax.random.key(0), (None, 4))
    y, cache, state = fnet.apply(_net(), params, jnp.ones((2, 4)))
    assert state is None and y.shape == (2, 10)


def test_loss_and_grads_returns_state_for_stateful_nets():
    net = fnet.sequential(L.affine(3), counter())
    params, _ = net.init(jax.random.key(0), (None, 2))
    f = jax.jit(fnet.loss_and_grads(net, losses.softmax_cross_entropy))
    loss, grads, state = f(params, jnp.ones((4, 2)), jnp.array([0, 1, 2, 0]),
                           state=net.init_state((None, 2)))
    assert int(state["counter_0"]["n"]) == 1
    assert jax.tree.structure(grads) == jax.tree.structure(params)


def test_repr_shows_structure():
    assert repr(_net()) == "sequential(affine_0=affine(), relu_0=relu(), affine_1=affine())"


# ---------------------------------------------------------------- the protocol's own errors


def _returns(forward=None, backward=None):
    def init(key, input_shape):
        return {}, input_shape

    return fnet.Layer("mine", init, forward or (lambda p, x: (x, None)),
                      backward or (lambda c, d: ({}, d)))


def test_forward_that_returns_only_y_is_named():
    net = fnet.sequential(L.affine(3), _returns(forward=lambda p, x: 2 * x))
    params, _ = net.init(jax.random.key(0), (None, 4))
    with pytest.raises(fnet.ProtocolError, match=r"^mine_0 \(mine\): forward must return \(y, cache\); "
                                                 r"it returned ArrayImpl of shape \(2, 3\)"):
        net.forward(params, jnp.ones((2, 4)))
    with pytest.raises(TypeError, match=r"^mine: forward must return \(y, cache\)"):
        fnet.apply(_returns(forward=lambda p, x: 2 * x), {}, jnp.ones((2, 4)))


def test_backward_that_returns_only_dx_is_named():
    net = fnet.sequential(L.affine(3), _returns(backward=lambda c, d: 2 * d))
    params, _ = net.init(jax.random.key(0), (None, 4))
    y, cache = net.forward(params, jnp.ones((2, 4)))
    with pytest.raises(fnet.ProtocolError, match=r"^mine_0 \(mine\): backward must return \(dparams, dx\)"):
        net.backward(cache, jnp.ones_like(y))


def test_dout_of_the_wrong_shape_names_the_expected_shape():
    net = fnet.two_layer_net(4, 3, 2)
    params, _ = net.init(jax.random.key(0), (None, 4))
    y, cache = net.forward(params, jnp.ones((5, 4)))
    with pytest.raises(fnet.ShapeError, match=r"^sequential: backward got dout of shape \(5, 3\), but "
                                              r"the output y had shape \(5, 2\)"):
        net.backward(cache, jnp.ones((5, 3)))
    layer = L.affine(2)
    p, _ = layer.init(jax.random.key(0), (None, 4))
    _, c = layer.forward(p, jnp.ones((5, 4)))
    with pytest.raises(fnet.ShapeError, match=r"^affine: backward got dout of shape \(2, 5\), but the "
                                              r"output y had shape \(5, 2\)"):
        layer.backward(c, jnp.ones((2, 5)))
