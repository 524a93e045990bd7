"""Validation of hyperparameters, shared by optimizers and schedules.

``where`` names the function the value was given to (``"adam"``,
``"schedules.cosine"``), so every message says where to look.
"""

from __future__ import annotations

import math
import numbers


def number(where: str, arg: str, value) -> float:
    """``value`` as a finite float, or a ``TypeError``/``ValueError`` naming ``where`` and ``arg``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {arg} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{where}: {arg} must be finite, got {value}")
    return value


def positive(where: str, arg: str, value) -> float:
    """A number > 0."""
    value = number(where, arg, value)
    if not value > 0:
        raise ValueError(f"{where}: {arg} must be > 0, got {value}")
    return value


def in_unit(where: str, arg: str, value) -> float:
    """A number in [0, 1)."""
    value = number(where, arg, value)
    if not 0 <= value < 1:
        raise ValueError(f"{where}: {arg} must be in [0, 1), got {value}")
    return value


def count(where: str, arg: str, value, minimum: int) -> int:
    """An int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: {arg} must be an int, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{where}: {arg} must be >= {minimum}, got {value}")
    return value
