"""Test configuration: float64 is available everywhere (gradient tests use it).

The library itself creates float32 by default; tests in test_dtypes.py check
that enabling x64 does not leak float64 into float32 computations.
"""

import jax

jax.config.update("jax_enable_x64", True)
