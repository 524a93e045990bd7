"""Attention and the transformer: the layers' values and errors, the GPT's layout, causality, weight
tying, ten AdamW steps against autodiff (llm.c's test_gpt2.c), sampling, and fit on sequences.

Every layer's backward is also in tests/test_gradients.py's list; the wrong rules that the check
must reject are in tests/test_harness_can_fail.py.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnet
from fnet import language_model as lm
from fnet import layers as L
from fnet import losses, optim, train


def first_position_changed(net, t: int, length: int | None = None, vocab: int | None = None) -> int:
    """The first position whose prediction changes when token ``t`` of a sequence changes: ``t`` for a
    causal network (the prediction at ``t`` reads token ``t``; none before it may)."""
    length = length or 6
    params, out = net.init(jax.random.key(0), (None, length))
    vocab = vocab or out[-1]
    ids = np.asarray(jax.random.randint(jax.random.key(1), (1, length), 0, vocab))
    other = ids.copy()
    other[0, t] = (ids[0, t] + 1) % vocab
    y1, y2 = (fnet.predict(net, params, jnp.asarray(x)) for x in (ids, other))
    changed = np.abs(np.asarray(y1 - y2)).max(axis=-1)[0] > 0
    return int(np.argmax(changed)) if changed.any() else length


def _attention_by_hand(params, x, heads, causal):
    """softmax(q k^T / sqrt(d)) v per head, in NumPy float64, one position at a time."""
    x = np.asarray(x, np.float64)
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    n, t, d = x.shape
    dh = d // heads
    q, k, v = x @ p["Wq"] + p["bq"], x @ p["Wk"], x @ p["Wv"] + p["bv"]
    out = np.zeros_like(x)
    for b in range(n):
        for h in range(heads):
            cols = slice(h * dh, (h + 1) * dh)
            for i in range(t):
                seen = i + 1 if causal else t
                s = q[b, i, cols] @ k[b, :seen, cols].T / math.sqrt(dh)
                a = np.exp(s - s.max())
                out[b, i, cols] = (a / a.sum()) @ v[b, :seen, cols]
    return out @ p["Wo"] + p["bo"]


@pytest.mark.parametrize("heads,causal", [(1, False), (2, True), (4, True), (3, False)])
def test_attention_computes_softmax_attention_per_head(heads, causal):
    layer = L.multi_head_attention(heads, causal=causal)
    x = jax.random.normal(jax.random.key(0), (2, 5, 12), jnp.float64)
    params, shape = layer.init(jax.random.key(1), (None, 5, 12))
    params = jax.tree.map(lambda w: w + 0.1 * jax.random.normal(jax.random.key(2), w.shape, w.dtype), params)
    y, _ = layer.forward(params, x)
    assert shape == (None, 5, 12) and set(params) == {"Wq", "bq", "Wk", "Wv", "bv", "Wo", "bo"}
    np.testing.assert_allclose(np.asarray(y), _attention_by_hand(params, x, heads, causal), rtol=1e-10)


def test_attention_errors_name_the_layer_and_both_numbers():
    with pytest.raises(fnet.ShapeError, match=r"D = 10 .* must be divisible by heads = 4"):
        L.multi_head_attention(4).init(jax.random.key(0), (None, 3, 10))
    with pytest.raises(fnet.ShapeError, match=r"multi_head_attention: expected an input of shape \(N, T, D"):
        L.multi_head_attention(2).init(jax.random.key(0), (None, 8))
    with pytest.raises(ValueError, match="multi_head_attention: heads must be a positive int"):
        L.multi_head_attention(0)
    with pytest.raises(ValueError, match=r"multi_head_attention: dropout is the probability .* \[0, 1\)"):
        L.multi_head_attention(2, dropout=1.0)
    layer = L.multi_head_attention(2, dropout=0.5)
    assert layer.uses == {"key", "train"} and L.multi_head_attention(2).uses == frozenset()
    params, _ = layer.init(jax.random.key(0), (None, 3, 4))
    with pytest.raises(fnet.ContextError, match=r"multi_head_attention: .*needs a random key"):
        fnet.apply(layer, params, jnp.ones((1, 3, 4)), train=True)
    y_eval, _, _ = fnet.apply(layer, params, jnp.ones((1, 3, 4)), train=False)  # no key needed
    assert y_eval.shape == (1, 3, 4)


def test_masked_scores_get_exactly_zero_weight_and_gradient():
    layer = L.multi_head_attention(1, causal=True)
    params, _ = layer.init(jax.random.key(0), (None, 4, 2))
    y, cache = layer.forward(params, jax.random.normal(jax.random.key(1), (1, 4, 2)))
    a = np.asarray(cache[6])[0, 0]
    assert np.all(a[np.triu_indices(4, 1)] == 0) and np.allclose(a.sum(-1), 1)
    from fnet.layers.attention import softmax_backward

    ds = np.asarray(softmax_backward(cache[6], jnp.ones_like(cache[6]) * 3.0))
    assert np.all(ds[0, 0][np.triu_indices(4, 1)] == 0)


def test_gelu_values_and_positional_embedding():
    x = jnp.asarray([-3.0, -1.0, 0.0, 0.5, 2.0], jnp.float64)
    exact, _ = L.gelu().forward({}, x)
    tanh_form, _ = L.gelu(approximate=True).forward({}, x)
    want = x * 0.5 * (1 + jax.scipy.special.erf(x / math.sqrt(2)))
    np.testing.assert_allclose(exact, want, rtol=1e-12)
    np.testing.assert_allclose(tanh_form, want, atol=2e-3)  # GPT-2's approximation
    np.testing.assert_allclose(tanh_form, jax.nn.gelu(x, approximate=True), rtol=1e-12)
    sin = L.positional_embedding(10, "sinusoidal")
    assert sin.init(jax.random.key(0), (None, 4, 6))[0] == {}
    y, _ = sin.forward({}, jnp.zeros((1, 4, 6)))
    np.testing.assert_allclose(y[0, 3, 0], math.sin(3), rtol=1e-6)
    np.testing.assert_allclose(y[0, 3, 1], math.cos(3), rtol=1e-6)
    np.testing.assert_allclose(y[0, 2, 2], math.sin(2 / 10000 ** (2 / 6)), rtol=1e-6)
    with pytest.raises(fnet.ShapeError, match=r"T = 12 positions .* longer than max_len = 10"):
        L.positional_embedding(10).init(jax.random.key(0), (None, 12, 4))
    with pytest.raises(ValueError, match="kind must be one of"):
        L.positional_embedding(10, "rotary")


def test_affine_on_the_last_axis_is_time_distributed_affine():
    x = jax.random.normal(jax.random.key(0), (2, 5, 3))
    flat, folded = L.affine(4, flatten=False), fnet.time_distributed(L.affine(4))
    params, shape = flat.init(jax.random.key(1), (None, 5, 3))
    assert shape == (None, 5, 4) and params["W"].shape == (3, 4)
    y, _ = flat.forward(params, x)
    y2, _ = folded.forward({"affine_0": params}, x)
    np.testing.assert_allclose(y, y2, rtol=1e-6)
    assert L.affine(4).init(jax.random.key(1), (None, 5, 3))[1] == (None, 4)  # the book's flattening
    assert set(L.affine(4, bias=False).init(jax.random.key(1), (None, 3))[0]) == {"W"}


# ----------------------------------------------------------------------------- the GPT


def test_gpt_has_nanogpts_layout_and_initialisation():
    net = fnet.models.gpt(65, 64)  # nanoGPT's Shakespeare character model, on a CPU
    params, shape = net.init(jax.random.key(0), (None, 64))
    assert shape == (None, 64, 65)
    n = sum(w.size for w in jax.tree.leaves(params))
    # nanoGPT counts 801,664 (0.80M) without the positions, 512 of them key biases that never learn
    assert n - 64 * 128 == 801_664 - 4 * 128
    trunk = params["body"]
    assert set(trunk) == {"wpe", "h_0", "h_1", "h_2", "h_3", "ln_f"} and set(params) == {"embedding", "body"}
    block = trunk["h_0"]
    attn, mlp = block["attn"]["body"]["attn"], block["mlp"]["body"]
    assert attn["Wq"].shape == (128, 128) and mlp["fc"]["W"].shape == (128, 512)
    assert mlp["proj"]["W"].shape == (512, 128)
    assert np.std(params["embedding"]["W"]) == pytest.approx(0.02, rel=0.05)
    assert np.std(mlp["fc"]["W"]) == pytest.approx(0.02, rel=0.05)
    proj_std = 0.02 / math.sqrt(2 * 4)  # the projections into the residual stream
    assert np.std(mlp["proj"]["W"]) == pytest.approx(proj_std, rel=0.05)
    assert np.std(attn["Wo"]) == pytest.approx(proj_std, rel=0.1)
    untied, _ = fnet.models.gpt(65, 64, tie_weights=False).init(jax.random.key(0), (None, 64))
    assert set(untied["lm_head"]) == {"W"} and untied["lm_head"]["W"].shape == (128, 65)


@pytest.mark.parametrize("make", [lambda: fnet.models.gpt(9, 6, layers=2, heads=2, dim=8),
                                  lambda: fnet.models.rnnlm(9, 4, 8, stateful=False)], ids=["gpt", "lstm"])
def test_changing_token_t_never_changes_a_prediction_before_t(make):
    net = make()
    for t in range(6):
        assert first_position_changed(net, t) == t


def test_ten_adamw_steps_equal_autodiffs_like_llm_c():
    # llm.c's test_gpt2.c: the same model, batch and optimizer; losses equal step by step
    net = fnet.models.gpt(31, 16, layers=2, heads=2, dim=16)
    params, _ = net.init(jax.random.key(0), (None, 16))
    ids = jax.random.randint(jax.random.key(1), (4, 17), 0, 31)
    x, t = ids[:, :-1], ids[:, 1:]
    opt = optim.adamw(1e-3, beta1=0.9, beta2=0.99, weight_decay=0.1)
    ce = losses.softmax_cross_entropy

    def autodiff(params, x, t):
        return jax.value_and_grad(lambda p: ce.forward(fnet.predict(net, p, x), t)[0])(params)

    handwritten = jax.jit(fnet.loss_and_grads(net, ce))
    autodiff = jax.jit(autodiff)
    cast = jax.tree.map(lambda w: w.astype(jnp.float32), params)
    runs = {}
    for name, grads_of in (("fnet", handwritten), ("autodiff", autodiff)):
        p, s, seen = cast, opt.init(cast), []
        for _ in range(10):
            value, grads = grads_of(p, x, t)
            p, s = opt.update(grads, s, p)
            seen.append(float(value))
        runs[name] = seen
    np.testing.assert_allclose(runs["fnet"], runs["autodiff"], rtol=0, atol=1e-4)
    assert runs["fnet"][-1] < runs["fnet"][0] - 0.1  # it learns the batch


# ----------------------------------------------------------------------------- sampling and fit


def test_sampling_needs_no_state_is_deterministic_and_follows_top_k():
    net = fnet.models.gpt(8, 6, layers=1, heads=2, dim=8)
    params, _ = net.init(jax.random.key(0), (None, 6))
    key = jax.random.key(3)
    a = lm.generate(net, params, jnp.asarray([1, 2]), 20, context=6, key=key)
    b = lm.generate(net, params, jnp.asarray([1, 2]), 20, context=6, key=key)
    c = lm.generate(net, params, jnp.asarray([1, 2]), 20, context=6, key=jax.random.key(4))
    assert a.shape == (20,) and np.array_equal(a, b) and not np.array_equal(a, c)
    greedy = lm.generate(net, params, jnp.asarray([1, 2, 3, 4, 5, 6, 7]), 10, context=6, key=key, top_k=1)
    again = lm.generate(net, params, jnp.asarray([1, 2, 3, 4, 5, 6, 7]), 10, context=6, key=c_key(), top_k=1)
    assert np.array_equal(greedy, again)  # top_k=1 is the arg-max, whatever the key
    # the first id drawn is what the network predicts after the prompt
    y = fnet.predict(net, params, jnp.asarray([[1, 2, 3, 4, 5, 6]]))
    first = lm.generate(net, params, jnp.asarray([0, 1, 2, 3, 4, 5, 6]), 1, context=6, key=key, top_k=1)
    assert int(first[0]) == int(jnp.argmax(y[0, -1]))
    text = lm.sample(net, params, "abcdefgh", "ab", 12, context=6, key=key, temperature=0.5)
    assert len(text) == 12 and set(text) <= set("abcdefgh")
    assert text == lm.sample(net, params, "abcdefgh", "ab", 12, context=6, key=key, temperature=0.5)
    with pytest.raises(ValueError, match="prompt needs at least one character"):
        lm.sample(net, params, "abcdefgh", "", 5, context=6, key=key)
    with pytest.raises(ValueError, match="top_k"):
        lm.sample(net, params, "abcdefgh", "a", 5, context=6, key=key, top_k=9)


@pytest.mark.parametrize("call, error, message", [
    (lambda net, p, k: lm.generate(net, p, jnp.zeros((0,), jnp.int32), 5, context=6, key=k), ValueError,
     r"generate: the prompt must be a 1-D array of at least one id, shape \(T,\); got shape \(0,\)"),
    (lambda net, p, k: lm.generate(net, p, jnp.asarray([[1, 2]]), 5, context=6, key=k), ValueError,
     r"got shape \(1, 2\)"),
    (lambda net, p, k: lm.generate(net, p, jnp.asarray([1.0, 2.0]), 5, context=6, key=k), TypeError,
     "generate: the prompt must hold integer ids; got dtype float"),
    (lambda net, p, k: lm.generate(net, p, jnp.asarray([1, 8]), 5, context=6, key=k), ValueError,
     r"generate: the prompt's ids must be in \[0, 8\) \(the network gives 8 scores\); got \[8\]"),
    (lambda net, p, k: lm.generate(net, p, jnp.asarray([1, 2]), -1, context=6, key=k), ValueError,
     "generate: n must be an int >= 0, got -1"),
    (lambda net, p, k: lm.generate(net, p, jnp.asarray([1, 2]), 5, context=6, key=k, temperature=0.0),
     ValueError, "generate: temperature must be a positive number, got 0"),
    (lambda net, p, k: lm.generate(net, p, jnp.asarray([1, 2]), 5, context=6, key=k, top_k=9), ValueError,
     r"generate: top_k must be in \[1, 8\], got 9 \(the network gives 8 scores\)"),
    (lambda net, p, k: lm.sample(net, p, "abcdef", "ab", 5, context=6, key=k), ValueError,
     "sample: the network gives 8 scores per position but the vocabulary has 6 characters"),
])
def test_generate_refuses_what_it_would_sample_wrongly(call, error, message):
    # each of these drew ids silently before: from an empty window, from an id the embedding
    # fills with NaN, from logits divided by zero
    net = fnet.models.gpt(8, 6, layers=1, heads=2, dim=8)
    params, _ = net.init(jax.random.key(0), (None, 6))
    with pytest.raises(error, match=message):
        call(net, params, jax.random.key(1))


def test_generate_compiles_once_whatever_the_prompts_length():
    traced = []
    base = fnet.models.gpt(8, 6, layers=1, heads=2, dim=8)

    def forward(params, x, **ctx):
        traced.append(x.shape)
        return base.forward(params, x, **ctx)

    net = dataclasses.replace(base, forward=forward)
    params, _ = net.init(jax.random.key(0), (None, 6))
    key = jax.random.key(2)
    short = lm.generate(net, params, jnp.asarray([1, 2]), 7, context=6, key=key)
    before = len(traced)
    longer = lm.generate(net, params, np.arange(9) % 8, 7, context=6, key=key)
    again = lm.generate(net, params, jnp.asarray([1, 2]), 7, context=6, key=key)
    assert len(traced) == before, f"generate traced the network again: {traced[before:]}"
    assert np.array_equal(short, again) and longer.shape == (7,)


def c_key():
    return jax.random.key(99)


def test_fit_trains_a_sequence_model_with_per_position_accuracy():
    # copy the previous token: (N, T, C) outputs, (N, T) labels, the default metric per position
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, (600, 8)).astype(np.int32)
    t = np.concatenate([np.zeros((600, 1), np.int32), x[:, :-1]], axis=1)
    net = fnet.models.gpt(6, 8, layers=1, heads=2, dim=16)
    lines = []
    result = train.fit(net, losses.softmax_cross_entropy, optim.adamw(1e-2), (x[:500], t[:500]),
                       (x[500:], t[500:]), epochs=15, batch_size=50, log=lines.append)
    h = result.history
    assert {"train_acc", "test_acc", "test_loss"} <= set(h)
    assert h["test_acc"][-1] > 0.9 and h["test_loss"][-1] < h["test_loss"][0]
    assert "test loss " in lines[-1] and "test acc " in lines[-1]  # the held-out loss in every line
    y = fnet.predict(net, result.params, jnp.asarray(x[500:]))
    assert float(fnet.accuracy_of(y, t[500:])) == pytest.approx(h["test_acc"][-1], abs=1e-6)
