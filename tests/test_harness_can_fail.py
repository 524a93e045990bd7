"""The gradient harness rejects wrong rules: a check that cannot fail proves nothing.

Each case plugs a plausible mistake into a real layer, loss or node and shows
that the same comparison the gradient tests use reports an error far above
the tolerance. Chapter 5's layers, losses and nodes first, then chapters 6-7 (pooling ties, batch norm,
dropout, convolution, layer norm), then branches and recurrence (BPTT, embedding).
"""

import dataclasses

import jax
import jax.numpy as jnp
import pytest
from harness import TOL32, TOL64, WRONG, compare_layer, compare_loss, compare_node, ids, ties, worst
from jax import lax

import fnet
from fnet import graph, losses
from fnet import layers as L
from fnet.layers._spatial import offsets as _offsets
from fnet.layers.pooling import _spread


def sigmoid_one_plus_y_backward(y, dout):
    # The slip of one of the lecture notes: dout * (1 + y) * y instead of dout * (1 - y) * y.
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
    "sigmoid_one_plus_y": (L.sigmoid, sigmoid_one_plus_y_backward, (4, 5)),
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
    broken = dataclasses.replace(L.sigmoid(), backward=sigmoid_one_plus_y_backward)
    assert max(compare_layer(broken, (4, 5)).values()) > 1e-2


def test_wrong_loss_rules_are_rejected():
    ce_without_mean = dataclasses.replace(
        losses.softmax_cross_entropy,
        backward=lambda cache, dout=1.0: (cache[0] - jnp.eye(cache[0].shape[1])[cache[1]]) * dout)
    assert max(compare_loss(ce_without_mean, (5, 3), "labels").values()) > 0.1
    ignores_dout = dataclasses.replace(
        losses.mean_squared_error, backward=lambda diff, dout=1.0: diff / diff.shape[0])
    assert max(compare_loss(ignores_dout, (5, 3), "real").values()) > 0.1
    # padding: a backward that still counts the masked positions (weights dropped, count kept)
    def p_minus_t(p, t):
        return p - (jax.nn.one_hot(t, p.shape[-1], dtype=p.dtype) if t.ndim < p.ndim else t)

    forgets_mask = dataclasses.replace(
        losses.softmax_cross_entropy,
        backward=lambda cache, dout=1.0: p_minus_t(cache[0], cache[1]) * (dout / cache[3]))
    assert max(compare_loss(forgets_mask, (2, 5, 4), "labels+mask").values()) > 0.1
    assert max(compare_loss(forgets_mask, (3, 6, 5), "labels+ignore").values()) > 0.1
    assert max(compare_loss(forgets_mask, (3, 6, 5), "labels").values()) <= TOL64  # no padding: right


def test_wrong_node_rules_are_rejected():
    mul_unswapped = dataclasses.replace(graph.mul, backward=lambda c, d: (d * c[0], d * c[1]))
    assert max(compare_node(mul_unswapped, ((3,), (3,))).values()) > 0.1
    log_wrong = dataclasses.replace(graph.log, backward=lambda x, d: d * x)
    assert max(compare_node(log_wrong, ((4,),), positive=True).values()) > 0.1


def test_harness_rejects_max_pool_that_routes_to_all_tied_maxima():
    layer = L.max_pool2d(2)

    def forward(params, x):  # also caches x and y, so that the wrong rule can find every maximum
        y, (_, geo) = layer.forward(params, x)
        return y, (x, y, geo)

    def backward(cache, dout):
        x, y, geo = cache
        x_shape, pads, outs, tiled = geo.value
        parts = [[None, None], [None, None]]
        for a, b, x_ab in _offsets(x, (2, 2), (2, 2), outs):
            parts[a][b] = jnp.where(x_ab == y, dout, 0)
        return {}, _spread(parts, x_shape, (2, 2), (2, 2), pads, outs, tiled)

    wrong = dataclasses.replace(layer, forward=forward, backward=backward)
    assert worst(compare_layer(layer, (2, 6, 6, 3), x_fn=ties)) <= TOL64
    assert worst(compare_layer(wrong, (2, 6, 6, 3), x_fn=ties)) > WRONG
    # without ties the two rules agree: inputs with ties are what exposes it
    assert worst(compare_layer(wrong, (2, 6, 6, 3))) <= TOL64


def test_harness_rejects_overlapping_pool_that_does_not_accumulate():
    layer = L.avg_pool2d(3, stride=1)

    def backward(cache, dout):  # each input keeps only the last window's share, not the sum
        x_shape, _, outs, _ = cache.value
        dx = jnp.zeros(x_shape, dout.dtype)
        for a in range(3):
            for b in range(3):
                dx = dx.at[:, a:a + outs[0], b:b + outs[1], :].set(dout / 9)
        return {}, dx

    assert worst(compare_layer(dataclasses.replace(layer, backward=backward), (2, 5, 5, 2))) > WRONG


def _bn_backward_without_mean_term(cache, dout):
    xhat, gamma, inv_std, _ = cache
    axes = tuple(range(dout.ndim - 1))
    dgamma = jnp.sum(dout * xhat, axis=axes)
    m = dout.size // dout.shape[-1]
    dx = (gamma * inv_std / m) * (m * dout - xhat * dgamma)  # "- sum(dout)" forgotten
    return {"gamma": dgamma, "beta": jnp.sum(dout, axis=axes)}, dx


def _bn_backward_always_eval(cache, dout):
    xhat, gamma, inv_std, _ = cache
    axes = tuple(range(dout.ndim - 1))
    return ({"gamma": jnp.sum(dout * xhat, axis=axes), "beta": jnp.sum(dout, axis=axes)},
            gamma * inv_std * dout)  # treats the batch statistics as constants


@pytest.mark.parametrize("wrong", [_bn_backward_without_mean_term, _bn_backward_always_eval])
def test_harness_rejects_wrong_batch_norm_backward(wrong):
    layer = dataclasses.replace(L.batch_norm(), backward=wrong)
    assert worst(compare_layer(layer, (4, 5))) > WRONG
    assert worst(compare_layer(layer, (2, 3, 3, 2))) > WRONG


def test_harness_rejects_dropout_backward_without_the_scale():
    layer = L.dropout(0.4)
    wrong = dataclasses.replace(layer, backward=lambda mask, dout: ({}, dout * (mask > 0)))
    assert worst(compare_layer(wrong, (4, 5))) > WRONG


def test_harness_rejects_conv_backward_with_unflipped_kernel():
    layer = L.conv2d(3, 3, stride=2, padding=1)

    def backward(cache, dout):
        x, W, _, _ = cache
        dparams, _ = layer.backward(cache, dout)
        dx = lax.conv_general_dilated(dout, W, (1, 1), [(1, 2), (1, 2)], lhs_dilation=(2, 2),
                                      dimension_numbers=("NHWC", "HWOI", "NHWC"))
        return dparams, dx[:, :x.shape[1], :x.shape[2]]

    assert worst(compare_layer(dataclasses.replace(layer, backward=backward), (2, 7, 7, 2))) > WRONG


def test_harness_rejects_layer_norm_backward_without_mean_term():
    layer = L.layer_norm()

    def backward(cache, dout):
        xhat, gamma, inv_std = cache
        d = dout.shape[-1]
        dxhat = dout * gamma
        dx = (inv_std / d) * (d * dxhat - xhat * jnp.sum(dxhat * xhat, axis=-1, keepdims=True))
        return {"gamma": jnp.sum(dout * xhat, axis=0), "beta": jnp.sum(dout, axis=0)}, dx

    assert worst(compare_layer(dataclasses.replace(layer, backward=backward), (4, 6))) > WRONG


def test_harness_rejects_a_branch_rule_without_the_fan_out_sum():
    # x feeds the body and the identity shortcut: dx = dx_body + dout. Drop one branch's dx.
    body = fnet.sequential(L.affine(4), L.tanh(), L.affine(4))
    right = fnet.residual(body)

    def forgets_the_shortcut(cache, dout):
        caches, _ = cache
        dp_body, dx_body = body.backward(caches[0], dout)
        return {"body": dp_body}, dx_body  # "+ dout" missing: the repeat node's sum

    assert worst(compare_layer(right, (3, 4))) <= TOL64
    assert worst(compare_layer(dataclasses.replace(right, backward=forgets_the_shortcut), (3, 4))) > WRONG

    # the same slip in parallel: the last branch's dx is dropped from the sum
    a, b = L.affine(3), L.affine(2)
    both = fnet.parallel(a, b)

    def forgets_a_branch(cache, dout):
        (ca, cb), _ = cache
        dpa, dxa = a.backward(ca, dout[:, :3])
        dpb, _ = b.backward(cb, dout[:, 3:])
        return {"affine_0": dpa, "affine_1": dpb}, dxa

    assert worst(compare_layer(both, (3, 5))) <= TOL64
    assert worst(compare_layer(dataclasses.replace(both, backward=forgets_a_branch), (3, 5))) > WRONG


def test_harness_rejects_an_lstm_rule_without_the_forget_gate_in_dc_prev():
    # c_t = f * c_{t-1} + g * i, so dc_prev = ds * f; the slip: dc_prev = ds (the forget gate missing)
    from fnet.layers import _through_time, recurrent

    def back_without_forget(Wh, saved, dcarry):
        h_prev, c_prev, f, g, i, o, tanh_c = saved
        dh, dc = dcarry
        ds = dc + dh * o * (1.0 - tanh_c * tanh_c)
        df, dg, di, do = ds * c_prev, ds * i, ds * g, dh * tanh_c
        da = jnp.concatenate([df * f * (1 - f), dg * (1 - g * g), di * i * (1 - i), do * o * (1 - o)], -1)
        return da, (da @ Wh.T, ds)

    wrong = dataclasses.replace(recurrent.LSTM, back=back_without_forget)
    assert worst(compare_layer(L.lstm(4, return_sequences=False), (3, 6, 2))) <= TOL64
    broken = _through_time.recurrent(wrong, 4, return_sequences=False, stateful=False, dtype=jnp.float32)
    assert worst(compare_layer(broken, (3, 6, 2))) > WRONG
    # a single step has no c_{t-1} to pass a gradient to: the slip is invisible there, as it must be
    one_step = _through_time.recurrent(wrong, 4, return_sequences=True, stateful=False, dtype=jnp.float32)
    assert worst(compare_layer(one_step, (3, 1, 2))) <= TOL64


def test_harness_rejects_an_rnn_rule_that_forgets_the_recurrent_path():
    # dh at step t is the output's gradient plus the next step's dh_prev: drop the second
    from fnet.layers import _through_time, recurrent

    def back_no_recurrence(Wh, saved, dcarry):
        h_prev, h = saved
        (dh,) = dcarry
        da = dh * (1.0 - h * h)
        return da, (jnp.zeros_like(dh),)

    broken = _through_time.recurrent(dataclasses.replace(recurrent.RNN, back=back_no_recurrence), 3,
                                     return_sequences=True, stateful=False, dtype=jnp.float32)
    assert worst(compare_layer(broken, (2, 5, 3))) > WRONG


def test_harness_rejects_an_embedding_that_overwrites_repeated_ids():
    # the book's np.add.at: a row picked twice gets both gradients; dW[ids] = dout keeps only one
    from harness import ids

    layer = L.embedding(3, 4)

    def backward_set(cache, dout):
        idx, table = cache
        return {"W": jnp.zeros(table.value, dout.dtype).at[idx].set(dout)}, jnp.zeros(idx.shape, dout.dtype)

    assert worst(compare_layer(layer, (6, 5), x_fn=ids(3))) <= TOL64
    wrong = dataclasses.replace(layer, backward=backward_set)
    assert worst(compare_layer(wrong, (6, 5), x_fn=ids(3))) > WRONG


# ----------------------------------------------------------------------------- attention and the transformer


def test_harness_rejects_an_attention_softmax_backward_without_the_row_sum(monkeypatch):
    from fnet.layers import attention

    layer = L.multi_head_attention(2, causal=True)
    assert worst(compare_layer(layer, (2, 5, 4))) <= TOL64
    monkeypatch.setattr(attention, "softmax_backward", lambda a, da: a * da)  # the diagonal term alone
    assert worst(compare_layer(layer, (2, 5, 4))) > WRONG


def test_causality_check_rejects_a_mask_that_lets_t_see_t_plus_1(monkeypatch):
    # a leaky mask is no wrong backward (autodiff agrees with it): the causality check catches it
    from test_attention import first_position_changed

    from fnet.layers import attention

    net = fnet.models.gpt(7, 6, layers=1, heads=2, dim=8)
    assert first_position_changed(net, t=3) == 3
    monkeypatch.setattr(attention, "causal_mask", lambda t: jnp.tril(jnp.ones((t, t), bool), 1))
    assert first_position_changed(net, t=3) == 2  # position 2 now sees token 3
    assert worst(compare_layer(net, (2, 6), x_fn=ids(7))) <= TOL64


def test_harness_rejects_a_tied_embedding_that_drops_one_of_its_two_uses():
    net = fnet.models.gpt(9, 6, layers=1, heads=2, dim=4)

    def head_use(cache, dout):  # the output layer's share of the table's gradient: dy^T h
        _, _, h, W, _ = cache
        return dout.reshape(-1, W.shape[0]).T @ h.reshape(-1, W.shape[1])

    def lookup_only(cache, dout):
        grads, dx = net.backward(cache, dout)
        W = grads["embedding"]["W"] - head_use(cache, dout)
        return {**grads, "embedding": {"W": W}}, dx

    def head_only(cache, dout):
        grads, dx = net.backward(cache, dout)
        return {**grads, "embedding": {"W": head_use(cache, dout)}}, dx

    assert worst(compare_layer(net, (2, 6), x_fn=ids(9))) <= TOL64
    for wrong in (lookup_only, head_only):
        assert worst(compare_layer(dataclasses.replace(net, backward=wrong), (2, 6), x_fn=ids(9))) > WRONG


def test_harness_rejects_an_attention_weight_backward_without_the_row_sum(monkeypatch):
    # the second book's AttentionWeight: its softmax over the encoder steps needs the row-sum term too
    from fnet.layers import encoder_attention

    layer = L.attention_weight()
    shape = ((2, 5, 3), (2, 3))
    assert worst(compare_layer(layer, shape)) <= TOL64
    monkeypatch.setattr(encoder_attention, "softmax_backward", lambda a, da: a * da)  # the diagonal alone
    assert worst(compare_layer(layer, shape)) > WRONG
