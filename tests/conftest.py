"""Test configuration: float64 is available everywhere (gradient tests use it).

The library itself creates float32 by default; tests in test_dtypes.py check
that enabling x64 does not leak float64 into float32 computations.
"""

import jax

jax.config.update("jax_enable_x64", True)


import os  # noqa: E402

import pytest  # noqa: E402

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="session")
def fashion():
    """Fashion-MNIST from the Debian package (.ci/run installs dataset-fashion-mnist)."""
    if not os.path.isdir(FASHION_DIR):
        pytest.skip(f"{FASHION_DIR} is missing: apt-get install dataset-fashion-mnist")
    from fnet.data import load_fashion_mnist

    return load_fashion_mnist(FASHION_DIR)


@pytest.fixture(scope="session")
def fashion_small(fashion):
    """3000 training and 1000 test examples: enough to learn, fast enough for every test."""
    (x_train, t_train), (x_test, t_test) = fashion
    return (x_train[:3000], t_train[:3000]), (x_test[:1000], t_test[:1000])
