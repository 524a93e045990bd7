"""The second book's encoder-decoder models: attention's pieces agree, greedy decoding is the
model's own argmax, and the tasks' data is the book's format."""

import dataclasses
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnet import layers as L
from fnet import models
from fnet.data import DataError, load_task
from fnet.data.sequence import addition_lines, date_lines, split_line
from fnet.errors import RangeError, ShapeError
from fnet.layers.encoder_attention import attention_weights
from fnet.models.encoder_decoder import generate


def test_time_attention_is_attention_weight_then_weight_sum_at_every_step():
    k1, k2 = jax.random.split(jax.random.key(0))
    hs_enc = jax.random.normal(k1, (3, 6, 4), jnp.float32)
    hs_dec = jax.random.normal(k2, (3, 5, 4), jnp.float32)
    c, cache = L.time_attention().forward({}, (hs_enc, hs_dec))
    weights = attention_weights(cache)
    for u in range(5):
        a, _ = L.attention_weight().forward({}, (hs_enc, hs_dec[:, u]))
        cu, _ = L.weight_sum().forward({}, (hs_enc, a))
        np.testing.assert_allclose(weights[:, u], a, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c[:, u], cu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("make", [lambda: models.seq2seq(11, 5, 8),
                                  lambda: models.seq2seq(11, 5, 8, peeky=True),
                                  lambda: models.attention_seq2seq(11, 5, 8)],
                         ids=["plain", "peeky", "attention"])
def test_greedy_decoding_is_the_models_own_argmax(make):
    # decode, then run the teacher-forced forward on what was decoded: each step's argmax is the next id
    net = make()
    params, _ = net.init(jax.random.key(1), ((None, 6), (None, 4)))
    params = jax.tree.map(lambda w: 20 * w, params)  # sharper scores: no near-ties in the argmax
    src = jax.random.randint(jax.random.key(2), (4, 6), 0, 11)
    ids, attention = generate(net, params, src, 3, 4)
    dec = jnp.concatenate([jnp.full((4, 1), 3, ids.dtype), ids[:, :-1]], axis=1)
    y, cache = net.forward(params, (src, dec))
    np.testing.assert_array_equal(jnp.argmax(y, -1), ids)
    if net.name == "attention_seq2seq":
        assert attention.shape == (4, 4, 6)
        np.testing.assert_allclose(attention.sum(-1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(attention, attention_weights(cache[4]), rtol=1e-4, atol=1e-6)
    else:
        assert attention is None


def test_greedy_decoding_compiles_once_for_a_network_and_its_shapes(monkeypatch):
    # one compiled program: a second call with the same network and shapes runs no step's Python
    # (decoding op by op would dispatch, and on first use compile, every operation of every step)
    import fnet.models.encoder_decoder as encoder_decoder

    traced = []
    lstm = encoder_decoder.LSTM
    monkeypatch.setattr(encoder_decoder, "LSTM", dataclasses.replace(
        lstm, step=lambda *args: (traced.append(1), lstm.step(*args))[1]))
    net = models.seq2seq(11, 5, 8, peeky=True)
    params, _ = net.init(jax.random.key(1), ((None, 6), (None, 4)))
    src = jax.random.randint(jax.random.key(2), (4, 6), 0, 11)
    first, _ = generate(net, params, src, 3, 4)
    assert traced, "the first call traces the decoder's steps"
    before = len(traced)
    again, _ = generate(net, params, src, 3, 4)
    assert len(traced) == before
    np.testing.assert_array_equal(first, again)


def test_models_name_what_is_wrong_with_their_input():
    net = models.seq2seq(11, 5, 8)
    params, _ = net.init(jax.random.key(0), ((None, 6), (None, 4)))
    src = jnp.zeros((2, 6), jnp.int32)
    with pytest.raises(ShapeError, match=r"seq2seq.*takes x = \(source ids"):
        net.forward(params, src)
    with pytest.raises(ShapeError, match="same batch N"):
        net.forward(params, (src, jnp.zeros((3, 4), jnp.int32)))
    with pytest.raises(ValueError, match="generate: decodes the models"):
        generate(L.relu(), params, src, 0, 3)
    with pytest.raises(TypeError, match="generate: start_id must be the id of the start character"):
        generate(net, params, src, jnp.int32(0), 3)
    with pytest.raises(ShapeError, match=r"init takes the pair of input shapes"):
        net.init(jax.random.key(0), (None, 6))
    # each of these decoded without an error before: NaN rows of the embeddings, or wrapped ones
    with pytest.raises(RangeError, match=r"generate: start_id must be in \[0, 11\) \(the decoder's vocab"):
        generate(net, params, src, 11, 3)
    with pytest.raises(RangeError, match=r"generate: source ids must be in \[0, 11\).*got \[-1, 12\]"):
        generate(net, params, src.at[0, 0].set(12).at[1, 2].set(-1), 0, 3)
    with pytest.raises(ShapeError, match=r"generate: source must be integer ids of shape \(N, T_src\), T"):
        generate(net, params, src[:, :0], 0, 3)


def test_the_generated_tasks_are_the_books_format_and_deterministic():
    lines = addition_lines(200, seed=3)
    assert lines == addition_lines(200, seed=3) and lines != addition_lines(200, seed=4)
    for line in lines:
        q, a = split_line(line)
        assert (len(q), len(a)) == (7, 5)
        x, y = (int(v) for v in q.split("+"))
        assert int(a[1:]) == x + y and 0 <= x < 1000 and 0 <= y < 1000
    dates = date_lines(300, seed=0)
    assert {(len(q), len(a)) for q, a in map(split_line, dates)} == {(29, 11)}
    assert all(a[1:5].isdigit() and a[5] == "-" and a[8] == "-" for _, a in map(split_line, dates))
    questions = [q for q, _ in map(split_line, dates)]
    assert any(q.isupper() for q in questions) and any("/" in q for q in questions)



def test_the_generated_dates_follow_the_mix_of_the_books_file():
    """The book's date.txt, counted: four formats about equally often, title case in half of the
    written ones and lower or upper case a quarter each, days of 1970 to 2017."""
    questions, answers = zip(*map(split_line, date_lines(4000, seed=0)), strict=True)
    written = [q.strip() for q in questions if "/" not in q]
    assert 0.70 < len(written) / len(questions) < 0.80  # one form in four is 2/10/93
    cases = Counter("lower" if q.islower() else "upper" if q.isupper() else "title" for q in written)
    assert 0.45 < cases["title"] / len(written) < 0.55, cases
    assert 0.20 < cases["lower"] / len(written) < 0.30 and 0.20 < cases["upper"] / len(written) < 0.30, cases
    full = sum(q.count(",") == 2 for q in written)
    abbreviated = sum(q.count(",") == 1 and len(q.split()[0]) == 3 for q in written)
    assert 0.28 < full / len(written) < 0.39 and 0.28 < abbreviated / len(written) < 0.39
    assert min(a[1:5] for a in answers) == "1970" and max(a[1:5] for a in answers) == "2017"

def test_a_task_file_reads_as_the_generated_task(tmp_path):
    path = tmp_path / "addition.txt"
    path.write_text("\n".join(addition_lines(100, seed=0)) + "\n")
    from_file, generated = load_task(str(path), seed=0), load_task("addition", seed=0, n=100)
    assert from_file.vocab == generated.vocab and from_file.n_train == 90
    np.testing.assert_array_equal(from_file.x, generated.x)
    np.testing.assert_array_equal(from_file.t, generated.t)
    assert from_file.vocab[from_file.t[0, 0]] == "_" == from_file.vocab[from_file.start_id]


@pytest.mark.parametrize("text, message", [
    ("16+75  _91  \nno underscore here\n", "line 2: expected QUESTION_ANSWER"),
    ("16+75  _91  \n1+2_3\n", "line 2: question and answer of widths 3 and 2, but line 1 has 7 and 5"),
    ("16+75  _91  \n", "needs at least 2 lines"),
])
def test_a_bad_task_file_is_named_with_its_line(tmp_path, text, message):
    path = tmp_path / "task.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_task(str(path))
