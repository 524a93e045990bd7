"""Loss values against NumPy, target formats, extremes and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnet import losses

sce = losses.softmax_cross_entropy
mse = losses.mean_squared_error


def _np_sce(y, labels):
    y = np.asarray(y, np.float64)
    logp = y - y.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    return -logp[np.arange(len(labels)), labels].mean()


def test_cross_entropy_matches_numpy_for_labels_and_one_hot():
    y = jax.random.normal(jax.random.key(0), (6, 4))
    t = jnp.array([0, 3, 1, 1, 2, 0])
    loss_labels, _ = sce.forward(y, t)
    loss_onehot, _ = sce.forward(y, jax.nn.one_hot(t, 4))
    assert float(loss_labels) == pytest.approx(_np_sce(y, np.asarray(t)), rel=1e-6)
    assert float(loss_onehot) == pytest.approx(float(loss_labels), rel=1e-6)


def test_cross_entropy_with_integer_one_hot_targets():
    y = jax.random.normal(jax.random.key(0), (3, 4))
    t = jnp.array([2, 0, 1])
    a, _ = sce.forward(y, t)
    b, _ = sce.forward(y, jax.nn.one_hot(t, 4, dtype=jnp.int32))
    assert float(a) == pytest.approx(float(b), rel=1e-6)


def test_cross_entropy_backward_is_p_minus_t_over_n():
    y = jax.random.normal(jax.random.key(0), (5, 3))
    t = jnp.array([0, 1, 2, 2, 1])
    _, cache = sce.forward(y, t)
    dy = sce.backward(cache)
    np.testing.assert_allclose(dy, (jax.nn.softmax(y) - jax.nn.one_hot(t, 3)) / 5, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sce.backward(cache, 2.0), 2 * dy, rtol=1e-6)


@pytest.mark.parametrize("scale", [1000.0, -1000.0])
def test_cross_entropy_is_finite_at_extreme_logits(scale):
    y = jnp.array([[scale, 0.0, -scale], [0.0, scale, 0.0]], jnp.float32)
    t = jnp.array([2, 1])
    loss, cache = sce.forward(y, t)
    dy = sce.backward(cache)
    assert jnp.isfinite(loss) and jnp.all(jnp.isfinite(dy))
    # +1000: row 0 is wrong by 2000, row 1 right; -1000: row 0 right, row 1 wrong by 1000 + log 2
    expected = 1000.0 if scale > 0 else (1000 + np.log(2)) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(loss) == pytest.approx(_np_sce(y, np.asarray(t)), rel=1e-6)


@pytest.mark.parametrize("labels", [[0, 3], [0, -1], [-3, 1]])
def test_out_of_range_label_gives_nan_not_a_silent_zero(labels):
    # a negative label must not count from the end (-1 read as the last class)
    loss, _ = sce.forward(jnp.zeros((2, 3)), jnp.array(labels))
    assert jnp.isnan(loss)


def test_mean_squared_error_is_the_books_formula_averaged_over_the_batch():
    # the book's two examples: "2" is the answer; y puts 0.6 on it, then 0.1
    y = jnp.array([[0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0],
                   [0.1, 0.05, 0.1, 0.0, 0.05, 0.1, 0.0, 0.6, 0.0, 0.0]])
    t = jnp.array([[0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]] * 2)
    loss, cache = mse.forward(y, t)
    book = [0.5 * np.sum((np.asarray(yi) - np.asarray(ti)) ** 2) for yi, ti in zip(y, t, strict=True)]
    assert float(loss) == pytest.approx(np.mean(book), rel=1e-6)
    assert book == pytest.approx([0.0975, 0.5975])  # the book's worked examples
    np.testing.assert_allclose(mse.backward(cache), (y - t) / 2, rtol=1e-6)


def test_label_errors():
    y = jnp.zeros((4, 10))
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: targets of shape \(4, 1\) do not fit "
                                         r"outputs of shape \(4, 10\): pass class indices of shape \(4,\)"):
        sce.forward(y, jnp.zeros((4, 1), jnp.int32))
    with pytest.raises(TypeError, match=r"class-index labels of shape \(4,\) must be integers, got float"):
        sce.forward(y, jnp.zeros(4))
    with pytest.raises(ValueError, match=r"outputs y of shape \(N, C\) or \(N, T, C\), got \(10,\)"):
        sce.forward(jnp.zeros(10), jnp.zeros((), jnp.int32))
    with pytest.raises(ValueError, match=r"mean_squared_error: needs targets of the outputs' shape"):
        mse.forward(y, jnp.zeros(4, jnp.int32))


def test_label_smoothing_is_cross_entropy_against_the_smoothed_target():
    y = jax.random.normal(jax.random.key(0), (6, 4))
    t = jnp.array([0, 3, 1, 1, 2, 0])
    smoothed = 0.9 * jax.nn.one_hot(t, 4) + 0.1 / 4
    loss, cache = sce.forward(y, t, label_smoothing=0.1)
    logp = np.log(np.asarray(jax.nn.softmax(y.astype(jnp.float64))))
    assert float(loss) == pytest.approx(-(np.asarray(smoothed) * logp).sum(1).mean(), rel=1e-5)
    # the same as passing the smoothed target itself, and larger than the plain loss
    assert float(loss) == pytest.approx(float(sce.forward(y, smoothed)[0]), rel=1e-6)
    assert float(loss) > float(sce.forward(y, t)[0])
    np.testing.assert_allclose(sce.backward(cache), (jax.nn.softmax(y) - smoothed) / 6, rtol=1e-5, atol=1e-7)
    # eps = 0 is the plain loss, bit for bit
    plain, plain_cache = sce.forward(y, t)
    zero, zero_cache = sce.forward(y, t, label_smoothing=0.0)
    assert float(zero) == float(plain)
    np.testing.assert_array_equal(sce.backward(zero_cache), sce.backward(plain_cache))


def test_label_smoothing_passes_through_jit_and_with_options():
    smooth = sce.with_options(label_smoothing=0.2)
    y = jax.random.normal(jax.random.key(1), (3, 5))
    t = jnp.array([4, 0, 2])
    eager_loss, eager_cache = smooth.forward(y, t)
    loss, dy = jax.jit(lambda y: (lambda out: (out[0], smooth.backward(out[1])))(smooth.forward(y, t)))(y)
    assert float(loss) == pytest.approx(float(eager_loss), rel=1e-6)
    np.testing.assert_allclose(dy, smooth.backward(eager_cache), rtol=1e-6)
    assert "label_smoothing=0.2" in repr(smooth)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, True, "0.1", None])
def test_label_smoothing_errors(bad):
    with pytest.raises(ValueError, match=r"cross_entropy: label_smoothing must be a number in \[0, 1\)"):
        sce.forward(jnp.zeros((2, 3)), jnp.array([0, 1]), label_smoothing=bad)


def test_the_default_metrics_follow_the_loss_through_with_options():
    from fnet import metrics

    def names(loss):
        return [k for k, _ in metrics.resolve(None, loss)]

    assert names(sce) == names(sce.with_options(label_smoothing=0.1)) == ["acc"]
    # with padding, accuracy would count the padded positions: no default metric
    smoothed = sce.with_options(label_smoothing=0.1)
    assert names(sce.with_options(ignore_index=0)) == names(smoothed.with_options(ignore_index=0)) == []
    assert names(mse) == []
