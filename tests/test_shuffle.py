"""fnet.shuffle.permutation: a permutation, deterministic, and uniformly distributed."""

import itertools

import jax
import numpy as np
import pytest

from fnet import shuffle

N_SMALL = 4
DRAWS = 24_000
# chi2.isf(1e-6, df=23): a uniform shuffle exceeds it once in a million runs
CHI2_CRITICAL_DF23 = 70.55


def chi_square(**kwargs) -> float:
    """Pearson's statistic of DRAWS shuffles of N_SMALL elements against the uniform distribution."""
    keys = jax.random.split(jax.random.key(1), DRAWS)
    perms = np.asarray(jax.jit(jax.vmap(lambda k: shuffle.permutation(k, N_SMALL, **kwargs)))(keys))
    index = {p: i for i, p in enumerate(itertools.permutations(range(N_SMALL)))}
    counts = np.bincount([index[tuple(p)] for p in perms.tolist()], minlength=len(index))
    expected = DRAWS / len(index)
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 1000, 60000, 65536, 65537])
def test_is_a_permutation(n):
    p = np.asarray(shuffle.permutation(jax.random.key(0), n))
    assert p.dtype == np.int32 and p.shape == (n,)
    np.testing.assert_array_equal(np.sort(p), np.arange(n))


def test_same_key_same_order_other_key_other_order():
    a = np.asarray(shuffle.permutation(jax.random.key(3), 1000))
    b = np.asarray(jax.jit(shuffle.permutation, static_argnums=1)(jax.random.key(3), 1000))
    c = np.asarray(shuffle.permutation(jax.random.key(4), 1000))
    np.testing.assert_array_equal(a, b)
    assert (a != c).mean() > 0.9
    assert (a != np.arange(1000)).mean() > 0.9


def test_uniform():
    assert chi_square() < CHI2_CRITICAL_DF23


def test_uniform_when_keys_tie_often():
    # 1-bit keys: most pairs tie in a round, and ties must keep the current order
    # (which earlier rounds randomised); 24 rounds make "tied in every round" negligible.
    assert chi_square(key_bits=1, rounds=24) < CHI2_CRITICAL_DF23


def test_uniformity_check_can_fail():
    # One round of 1-bit keys cannot be uniform: the same statistic must reject it.
    assert chi_square(key_bits=1, rounds=1) > CHI2_CRITICAL_DF23


def test_rounds_follow_jax_rule():
    assert shuffle.rounds_for(60000, 16) == 3  # Fashion-MNIST: 16 index bits leave 16 key bits
    assert shuffle.rounds_for(60000, 32) == 2  # what jax.random.permutation runs with 32-bit keys
    assert shuffle.rounds_for(5, 29) == 1


def test_long_index_defers_to_jax(monkeypatch):
    # When the index leaves fewer than MIN_KEY_BITS free bits, jax.random.permutation is used.
    monkeypatch.setattr(shuffle, "MIN_KEY_BITS", 31)
    key = jax.random.key(5)
    np.testing.assert_array_equal(shuffle.permutation(key, 9), jax.random.permutation(key, 9))


@pytest.mark.parametrize("n, kwargs, match", [
    (-1, {}, "n must be an int >= 0"),
    (2.5, {}, "n must be an int >= 0"),
    (True, {}, "n must be an int >= 0"),
    (1000, {"key_bits": 23}, r"key_bits must be in \[1, 22\] for n=1000"),
    (1000, {"key_bits": 0}, "key_bits must be in"),
])
def test_bad_arguments(n, kwargs, match):
    with pytest.raises(ValueError, match=match):
        shuffle.permutation(jax.random.key(0), n, **kwargs)
