"""fnet.initializers: the standard deviations the book uses."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnet import initializers


@pytest.mark.parametrize("make,shape,std", [
    (lambda: initializers.normal(0.01), (400, 300), 0.01),
    (initializers.he, (400, 300), math.sqrt(2 / 400)),
    (initializers.xavier, (5, 5, 16, 300), math.sqrt(1 / 400)),
])
def test_standard_deviation(make, shape, std):
    w = make()(jax.random.key(0), shape, jnp.float32)
    assert w.dtype == jnp.float32 and w.shape == shape
    assert abs(float(np.std(np.asarray(w))) / std - 1) < 0.02


def test_standard_normal_is_jax_random_normal_bit_for_bit():
    """The flat draw (fast to compile) changes no number of any seed's initialisation."""
    shapes = [(50, 10), (3, 3, 1, 16), (7,), (1, 1)]

    def both(key):
        f32 = jnp.float32
        return [(initializers.standard_normal(key, s, f32), jax.random.normal(key, s, f32)) for s in shapes]

    for seed in (0, 7):
        for flat, direct in jax.jit(both)(jax.random.key(seed)):
            np.testing.assert_array_equal(flat, direct)
    key = jax.random.key(3)  # conftest enables float64
    np.testing.assert_array_equal(initializers.standard_normal(key, (5, 4), jnp.float64),
                                  jax.random.normal(key, (5, 4), jnp.float64))


def test_resolve_names_and_errors():
    assert initializers.resolve(0.0)(jax.random.key(0), (2, 2), jnp.float32).sum() == 0
    with pytest.raises(ValueError, match=r"^affine: W_init is an unknown initializer 'glorot'"):
        initializers.resolve("glorot", "affine", "W_init")
    with pytest.raises(TypeError, match=r"^affine: W_init must be an initializer function"):
        initializers.resolve([1], "affine", "W_init")
    with pytest.raises(ValueError, match=r"^affine: W_init is the standard deviation of a normal .* finite"):
        initializers.resolve(float("nan"), "affine", "W_init")
