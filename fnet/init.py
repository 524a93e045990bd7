"""Deprecated alias of ``fnet.initializers``, kept for one release.

The module was renamed because ``fnet.init`` read like ``Layer.init``; the new
name follows ``jax.nn.initializers``. Import ``fnet.initializers`` instead.
"""

import warnings

from fnet.initializers import Initializer, fan_in, he, normal, resolve, xavier, zeros

__all__ = ["Initializer", "fan_in", "he", "normal", "resolve", "xavier", "zeros"]

warnings.warn("fnet.init is deprecated and will be removed in the next release: use fnet.initializers",
              DeprecationWarning, stacklevel=2)
