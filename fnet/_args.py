"""Validation of numbers and counts given to constructors: one helper for the whole library.

Layers (``affine``, ``conv2d``, ``dropout``, ``batch_norm``, ...), graph nodes,
optimizers, schedules, the shuffle, ``summary``, ``gradcheck`` and ``fit``
check their arguments here, so every message has one shape: ``where`` names
the function the value was given to (``"adam"``, ``"schedules.cosine"``,
``"dropout"``), then the argument, what it must be, and what it got.

A value of the wrong type raises ``ArgumentTypeError``, which is both a
``TypeError`` and a ``ValueError``; a value out of range raises ``ValueError``.
"""

from __future__ import annotations

import math
import numbers


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a string for a number, a float for a count)."""


def _named(where: str, arg: str, about: str) -> str:
    return f"{where}: {arg}" + (f" is {about} and" if about else "")


def number(where: str, arg: str, value, *, about: str = "", need: str = "a number") -> float:
    """``value`` as a finite float. ``about`` says what the argument means, ``need`` what it must be."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{_named(where, arg, about)} must be {need}, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{_named(where, arg, about)} must be finite, got {value}")
    return value


def positive(where: str, arg: str, value, *, about: str = "") -> float:
    """A number > 0."""
    value = number(where, arg, value, about=about)
    if not value > 0:
        raise ValueError(f"{_named(where, arg, about)} must be a positive number, got {value:g}")
    return value


def non_negative(where: str, arg: str, value, *, about: str = "") -> float:
    """A number >= 0."""
    value = number(where, arg, value, about=about)
    if not value >= 0:
        raise ValueError(f"{_named(where, arg, about)} must be >= 0, got {value:g}")
    return value


def interval(where: str, arg: str, value, low: float, high: float, *, closed: bool = True,
             about: str = "", hint: str = "") -> float:
    """A number in ``[low, high]`` (``closed``) or ``[low, high)``; ``hint`` is appended to the message."""
    text = f"[{low:g}, {high:g}{']' if closed else ')'}"
    value = number(where, arg, value, about=about, need=f"a number in {text}")
    if not (low <= value <= high if closed else low <= value < high):
        raise ValueError(f"{_named(where, arg, about)} must be in {text}, got {value:g}{hint}")
    return value


def in_unit(where: str, arg: str, value, *, about: str = "") -> float:
    """A number in [0, 1): a probability of dropping, a decay, a momentum."""
    return interval(where, arg, value, 0, 1, closed=False, about=about)


def count(where: str, arg: str, value, minimum: int) -> int:
    """An int >= ``minimum`` (a Python or NumPy integer; not a bool, not a float)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{where}: {arg} must be an int >= {minimum}, got {value!r}")
    value = int(value)
    if value < minimum:
        need = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{where}: {arg} must be {need}, got {value}")
    return value
