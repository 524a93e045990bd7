"""Recurrent layers, embedding, time_distributed and sequence losses: behaviour and errors.

Their gradients are in the one list (tests/test_gradients.py); here: what the
forward computes, truncated BPTT's state, and the messages a user gets.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnet
from fnet import layers as L
from fnet import losses, optim, train

RECURRENT = {"rnn": L.rnn, "lstm": L.lstm, "gru": L.gru}


def sig(v):
    return 1 / (1 + np.exp(-v))


def _params(layer, shape, seed=0):
    return layer.init(jax.random.key(seed), shape)[0]


@pytest.mark.parametrize("kind", RECURRENT)
def test_two_windows_carry_the_state_as_one_long_window(kind):
    # truncated BPTT: the state after two windows equals the state after one window of double length
    make = RECURRENT[kind]
    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 10, 4)), jnp.float32)
    layer = make(6, stateful=True)
    params = _params(layer, (3, 10, 4))
    state0 = layer.init_state((3, 5, 4))
    assert all(float(jnp.abs(v).max()) == 0 for v in state0.values())  # a reset is init_state: zeros
    y1, _, s1 = fnet.apply(layer, params, x[:, :5], state=state0)
    y2, _, s2 = fnet.apply(layer, params, x[:, 5:], state=s1)
    y_long, _, s_long = fnet.apply(layer, params, x, state=layer.init_state((3, 10, 4)))
    np.testing.assert_allclose(jnp.concatenate([y1, y2], axis=1), y_long, rtol=1e-5, atol=1e-6)
    for k in s_long:
        np.testing.assert_allclose(s2[k], s_long[k], rtol=1e-5, atol=1e-6)
    # and the same as the stateless layer on the whole sequence
    y_plain, _ = make(6).forward(params, x)
    np.testing.assert_allclose(y_plain, y_long, rtol=1e-5, atol=1e-6)
    assert set(s1) == ({"h", "c"} if kind == "lstm" else {"h"})


@pytest.mark.parametrize("kind", RECURRENT)
def test_return_sequences_false_is_the_last_step(kind):
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 7, 3)), jnp.float32)
    seq, last = RECURRENT[kind](5), RECURRENT[kind](5, return_sequences=False)
    params = _params(seq, (None, 7, 3))
    ys, _ = seq.forward(params, x)
    y, _ = last.forward(params, x)
    assert ys.shape == (2, 7, 5) and y.shape == (2, 5)
    np.testing.assert_allclose(y, ys[:, -1], rtol=1e-6)
    assert fnet.output_shape(last, (None, 7, 3)) == (None, 5)


def test_lstm_gate_order_and_forget_bias():
    layer = L.lstm(3)
    p = _params(layer, (None, 4, 2))
    assert p["Wx"].shape == (2, 12) and p["Wh"].shape == (3, 12) and p["b"].shape == (12,)
    np.testing.assert_array_equal(p["b"], [1, 1, 1] + [0] * 9)  # f first, as the book: f, g, i, o
    np.testing.assert_array_equal(_params(L.lstm(2, forget_bias=0.0), (None, 4, 2))["b"], [0] * 8)
    assert _params(L.gru(3), (None, 4, 2))["Wh"].shape == (3, 9)


def test_lstm_step_matches_the_equations():
    layer = L.lstm(2, return_sequences=False)
    rng = np.random.default_rng(2)
    p = {"Wx": jnp.asarray(rng.standard_normal((3, 8))), "Wh": jnp.asarray(rng.standard_normal((2, 8))),
         "b": jnp.asarray(rng.standard_normal(8))}
    x = jnp.asarray(rng.standard_normal((1, 1, 3)))
    y, _ = layer.forward(p, x)
    a = np.asarray(x[:, 0] @ p["Wx"] + p["b"])
    f, g, i, o = sig(a[:, :2]), np.tanh(a[:, 2:4]), sig(a[:, 4:6]), sig(a[:, 6:])
    np.testing.assert_allclose(y, o * np.tanh(g * i + f * 0), rtol=1e-5)


def test_gru_step_matches_the_equations():
    layer = L.gru(2, return_sequences=False, stateful=True)
    rng = np.random.default_rng(3)
    p = {"Wx": jnp.asarray(rng.standard_normal((3, 6))), "Wh": jnp.asarray(rng.standard_normal((2, 6))),
         "b": jnp.asarray(rng.standard_normal(6))}
    x, h = rng.standard_normal((1, 1, 3)), rng.standard_normal((1, 2))
    y, _, _ = fnet.apply(layer, p, jnp.asarray(x), state={"h": jnp.asarray(h)})
    ax = x[:, 0] @ np.asarray(p["Wx"]) + np.asarray(p["b"])
    Wh = np.asarray(p["Wh"])
    z = sig(ax[:, :2] + h @ Wh[:, :2])
    r = sig(ax[:, 2:4] + h @ Wh[:, 2:4])
    h_hat = np.tanh(ax[:, 4:] + (r * h) @ Wh[:, 4:])
    np.testing.assert_allclose(y, (1 - z) * h + z * h_hat, rtol=1e-5)


def test_recurrent_errors():
    layer = L.lstm(4)
    with pytest.raises(ValueError, match=r"lstm: expected an input of shape \(N, T, D\)"):
        layer.init(jax.random.key(0), (None, 28))
    with pytest.raises(ValueError, match=r"at least one time step"):
        layer.init(jax.random.key(0), (None, 0, 3))
    p = _params(layer, (None, 5, 3))
    with pytest.raises(ValueError, match=r"has 2 features per step, but Wx has shape \(3, 16\)"):
        layer.forward(p, jnp.zeros((2, 5, 2)))
    with pytest.raises(TypeError, match="dtype int32"):
        layer.forward(p, jnp.zeros((2, 5, 3), jnp.int32))
    with pytest.raises(ValueError, match="hidden"):
        L.rnn(0)
    with pytest.raises(TypeError, match="return_sequences and stateful must be True or False"):
        L.gru(3, return_sequences="yes")
    stateful = L.rnn(3, stateful=True)
    with pytest.raises(ValueError, match=r"init_state needs the batch size: got input shape \(N, 5, 2\)"):
        stateful.init_state((None, 5, 2))
    p = _params(stateful, (None, 5, 2))
    with pytest.raises(ValueError, match=r"state must be \{'h': \(4, 3\)\} for this batch of 4"):
        fnet.apply(stateful, p, jnp.zeros((4, 5, 2)), state=stateful.init_state((2, 5, 2)))
    with pytest.raises(ValueError, match=r"pass state=\.\.\."):
        fnet.apply(stateful, p, jnp.zeros((4, 5, 2)))
    y, cache = L.rnn(3).forward(p, jnp.zeros((4, 5, 2)))
    with pytest.raises(ValueError, match=r"backward got dout of shape \(4, 3\), but the output y had shape"):
        L.rnn(3).backward(cache, jnp.zeros((4, 3)))


def test_stateful_state_carries_no_gradient_back():
    # autodiff through two windows: the second window's loss does not reach the first window's input
    layer = L.rnn(3, stateful=True)
    p = _params(layer, (2, 4, 2))
    x = jnp.asarray(np.random.default_rng(4).standard_normal((2, 8, 2)), jnp.float32)

    def loss(x):
        _, _, s = fnet.apply(layer, p, x[:, :4], state=layer.init_state((2, 4, 2)))
        y, _, _ = fnet.apply(layer, p, x[:, 4:], state=s)
        return jnp.sum(y)

    g = jax.grad(loss)(x)
    assert float(jnp.abs(g[:, :4]).max()) == 0 and float(jnp.abs(g[:, 4:]).max()) > 0


# --------------------------------------------------------------------------- embedding


def test_embedding_looks_up_rows_and_adds_gradients_of_repeated_ids():
    layer = L.embedding(5, 3)
    p = _params(layer, (None, 4))
    ids = jnp.asarray([[0, 2, 2, 4], [1, 1, 1, 0]])
    y, cache = layer.forward(p, ids)
    np.testing.assert_array_equal(y, p["W"][ids])
    dp, dx = layer.backward(cache, jnp.ones((2, 4, 3)))
    np.testing.assert_array_equal(dp["W"][:, 0], [2, 3, 2, 0, 1])  # counts of each id: np.add.at
    assert dx.shape == (2, 4) and float(jnp.abs(dx).max()) == 0
    assert fnet.output_shape(layer, (None,)) == (None, 3)
    assert layer.forward(p, jnp.asarray([3, 1]))[0].shape == (2, 3)


def test_embedding_out_of_range_ids():
    layer = L.embedding(4, 2)
    p = _params(layer, (None, 3))
    with pytest.raises(fnet.RangeError, match=r"embedding: ids must be in \[0, 4\) \(the vocab_size\); "
                                              r"got 2 outside it, e.g. \[-1, 4\]"):
        layer.forward(p, np.asarray([[0, 4, -1]]))
    net = fnet.sequential(layer, fnet.time_distributed(L.affine(2)))
    with pytest.raises(fnet.RangeError, match=r"embedding_0 \(embedding\): ids must be in"):
        net.forward({"embedding_0": p, "time_distributed_0": _params(net, (None, 3))["time_distributed_0"]},
                    jnp.asarray([[7, 0, 0]]))
    # under jit the values are unknown: such rows are NaN, never a silently wrong row
    y = jax.jit(lambda ids: layer.forward(p, ids)[0])(jnp.asarray([[0, 4, -1]]))
    assert not bool(jnp.isnan(y[0, 0]).any()) and bool(jnp.isnan(y[0, 1:]).all())
    with pytest.raises(TypeError, match=r"embedding: looks up integer ids, got an input of dtype float"):
        layer.forward(p, jnp.zeros((2, 3)))


def test_sequential_accepts_the_embedding_dx():
    net = fnet.sequential(L.embedding(6, 4), L.gru(5, return_sequences=False), L.affine(3))
    p = _params(net, (None, 7))
    ids = jnp.asarray(np.random.default_rng(5).integers(0, 6, (2, 7)))
    loss, grads = fnet.loss_and_grads(net, losses.softmax_cross_entropy)(p, ids, jnp.asarray([0, 2]))
    assert jax.tree.structure(grads) == jax.tree.structure(p) and float(loss) > 0


# --------------------------------------------------------------------------- time_distributed


def test_time_distributed_applies_the_layer_to_every_step():
    inner = L.affine(4)
    td = fnet.time_distributed(inner)
    p = _params(td, (None, 6, 3))
    assert set(p) == {"affine_0"} and p["affine_0"]["W"].shape == (3, 4)
    x = jnp.asarray(np.random.default_rng(6).standard_normal((2, 6, 3)), jnp.float32)
    y, _ = td.forward(p, x)
    for t in range(6):
        np.testing.assert_allclose(y[:, t], inner.forward(p["affine_0"], x[:, t])[0], rtol=1e-6)
    assert fnet.output_shape(td, (None, 6, 3)) == (None, 6, 4)
    with pytest.raises(ValueError, match=r"time_distributed: expected a sequence \(N, T, \.\.\.\)"):
        td.init(jax.random.key(0), (None,))
    named = fnet.time_distributed(("TimeAffine", L.affine(2)))
    assert set(_params(named, (None, 3, 3))) == {"TimeAffine"}


def test_summary_and_drawing_break_down_a_language_model():
    net = fnet.sequential(L.embedding(30, 8), L.lstm(16), fnet.time_distributed(L.affine(30)))
    text = fnet.summary(net, (None, 20), batch_size=4, dtype=jnp.int32)
    assert "time_distributed_0/affine_0" in text and "(N, 20, 30)" in text
    total = sum(v.size for v in jax.tree.leaves(_params(net, (None, 20))))
    assert f"{total:,}" in text.splitlines()[-3] or f"{total:,}" in text
    assert "no wiring" not in text
    dot = fnet.views.draw_network(net, (None, 20))
    assert "each time step (affine)" in dot and "(N, 20, 30)" in dot


# --------------------------------------------------------------------------- sequence losses


def test_sequence_cross_entropy_is_the_mean_over_every_position():
    rng = np.random.default_rng(7)
    y = jnp.asarray(rng.standard_normal((3, 5, 4)))
    t = jnp.asarray(rng.integers(0, 4, (3, 5)))
    sce = losses.softmax_cross_entropy
    flat, _ = sce.forward(y.reshape(15, 4), t.reshape(15))
    np.testing.assert_allclose(sce.forward(y, t)[0], flat, rtol=1e-6)
    np.testing.assert_allclose(sce.forward(y, jax.nn.one_hot(t, 4))[0], flat, rtol=1e-6)
    mask = jnp.asarray(rng.random((3, 5)) < 0.5)
    keep = np.asarray(mask).reshape(15)
    kept, _ = sce.forward(y.reshape(15, 4)[keep], t.reshape(15)[keep])
    np.testing.assert_allclose(sce.forward(y, t, mask=mask)[0], kept, rtol=1e-6)
    # ignore_index: the padding label's positions do not count, whatever its value
    padded = jnp.where(mask, t, -100)
    np.testing.assert_allclose(sce.forward(y, padded, ignore_index=-100)[0], kept, rtol=1e-6)
    assert bool(jnp.isnan(sce.forward(y, padded)[0]))  # not ignored: out of range is NaN, as ever
    # nothing counted: 0, and a zero gradient
    loss, cache = sce.forward(y, t, mask=jnp.zeros((3, 5), bool))
    assert float(loss) == 0 and float(jnp.abs(sce.backward(cache)).max()) == 0


def test_sequence_loss_options_and_errors():
    sce = losses.softmax_cross_entropy
    y, t = jnp.zeros((2, 3, 4)), jnp.zeros((2, 3), jnp.int32)
    with pytest.raises(ValueError, match=r"mask must have one entry per position, shape \(2, 3\)"):
        sce.forward(y, t, mask=jnp.ones(3))
    with pytest.raises(ValueError, match="ignore_index skips positions by their class-index label"):
        sce.forward(y, jax.nn.one_hot(t, 4), ignore_index=0)
    with pytest.raises(ValueError, match=r"pass class indices of shape \(2, 3\)"):
        sce.forward(y, jnp.zeros((2,), jnp.int32))
    padded = sce.with_options(ignore_index=0)
    assert "ignore_index=0" in padded.name
    np.testing.assert_allclose(padded.forward(y, t.at[0, 0].set(1))[0], np.log(4), rtol=1e-6)
    with pytest.raises(TypeError, match=r"unknown options \['ignore'\]"):
        sce.with_options(ignore=0)


def test_fit_trains_a_network_that_reads_ids():
    # is there a 1 among the ids? an embedding, a GRU and an affine on its last state learn it
    rng = np.random.default_rng(8)
    x = rng.integers(2, 6, (400, 6)).astype(np.int32)
    hit = rng.random(400) < 0.5
    x[hit, rng.integers(0, 6, hit.sum())] = 1
    t = hit.astype(np.int32)
    net = fnet.sequential(L.embedding(6, 4), L.gru(8, return_sequences=False), L.affine(2))
    result = train.fit(net, losses.softmax_cross_entropy, optim.adam(0.02), (x, t), epochs=8,
                            batch_size=50, log=None, eval_train=True, mesh=None)
    assert result.history["train_acc"][-1] >= 0.9, result.history["train_acc"]
    with pytest.raises(TypeError, match="the network starts with an embedding, which looks up integer ids"):
        train.fit(net, losses.softmax_cross_entropy, optim.adam(0.02), (x.astype(np.float32), t),
                       epochs=1, log=None)
