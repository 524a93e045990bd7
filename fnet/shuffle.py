"""Random permutations for shuffling a training set, fast on the CPU.

``permutation(key, n)`` does what ``jax.random.permutation(key, n)`` does, by
the same algorithm, with a cheaper sort. Both shuffle in rounds: each round
draws a random key per position and sorts the positions by key, equal keys
keeping their current order; enough rounds are run that the chance of some
pair of elements drawing equal keys in *every* round (the only way the result
can be biased) is at most about ``1/n`` (JAX's rule: ``ceil(3 ln n / ln 2^b)``
rounds of ``b``-bit keys).

JAX sorts ``(key, index)`` pairs, a two-operand sort. Here, when ``n`` fits in
the low bits of a 32-bit word, each round packs ``random bits | position`` into
one ``uint32`` and sorts those words alone: the position in the low bits makes
every word distinct and breaks ties by the current order, exactly as the
stable pair sort does, and the sort then takes XLA's single-operand fast path.
For Fashion-MNIST's 60000 examples that is 16 index bits, 16 key bits and 3
rounds (the timings are in ``docs/speed.md``). When ``n`` needs more than ``32 - MIN_KEY_BITS``
index bits (over a million examples), the keys would be too short and
``jax.random.permutation`` itself is used.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from fnet import _args

MIN_KEY_BITS = 12  # below this many random bits per round, defer to jax.random.permutation


def rounds_for(n: int, key_bits: int) -> int:
    """Rounds of ``key_bits``-bit keys for ``n`` elements: ``ceil(3 ln n / ln 2^key_bits)``, at least 1."""
    return max(1, math.ceil(3 * math.log(max(n, 2)) / (key_bits * math.log(2))))


def permutation(key: jax.Array, n: int, *, key_bits: int | None = None,
                rounds: int | None = None) -> jax.Array:
    """A uniformly random permutation of ``0 .. n-1``: ``int32`` array of shape ``(n,)``.

    **Arguments:** ``key``: a JAX random key; ``n``: a static int ``>= 0``.
    ``key_bits`` and ``rounds`` override the defaults (all bits the index leaves
    free, and JAX's rule); they exist for tests of the tie-breaking.

    Same key, same permutation (on every backend). It is a different
    permutation from ``jax.random.permutation(key, n)`` for the same key.
    """
    n = _args.count("shuffle.permutation", "n", n, 0)
    if n <= 1:
        return jnp.arange(n, dtype=jnp.int32)
    index_bits = (n - 1).bit_length()
    free_bits = 32 - index_bits
    if key_bits is None:
        if free_bits < MIN_KEY_BITS:
            return jax.random.permutation(key, n).astype(jnp.int32)
        key_bits = free_bits
    if not 1 <= key_bits <= free_bits:
        raise ValueError(f"shuffle.permutation: key_bits must be in [1, {free_bits}] for n={n}, "
                         f"got {key_bits}")
    rounds = rounds_for(n, key_bits) if rounds is None else rounds
    position_mask = jnp.uint32((1 << index_bits) - 1)
    key_mask = jnp.uint32(((1 << key_bits) - 1) << (32 - key_bits))  # the top key_bits bits
    positions = lax.iota(jnp.uint32, n)
    perm = lax.iota(jnp.int32, n)
    all_bits = jax.vmap(lambda k: jax.random.bits(k, (n,), jnp.uint32))(jax.random.split(key, rounds))
    for bits in all_bits:
        # sorted words: positions in order of their random key, ties in current order
        order = lax.sort((bits & key_mask) | positions) & position_mask
        perm = perm.at[order].get(mode="promise_in_bounds")
    return perm
