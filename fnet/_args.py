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

import contextlib
import math
import numbers
import os
import tempfile
from pathlib import Path

import numpy as np


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


def counts(where: str, arg: str, value, minimum: int) -> tuple[int, ...]:
    """A non-empty sequence of ints >= ``minimum`` (a list or tuple; not a string), as a tuple."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
        raise ArgumentTypeError(f"{where}: {arg} must be a non-empty tuple of ints, e.g. (16, 32, 64); "
                                f"got {value!r}")
    return tuple(count(where, arg, v, minimum) for v in value)


def flag(where: str, arg: str, value) -> bool:
    """``value`` as a ``bool``: ``True`` or ``False`` (NumPy's too), nothing else (a string such as
    ``"no"`` would be true)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{where}: {arg} must be True or False, got {value!r}")
    return bool(value)


def float_dtype(where: str, value, arg: str = "dtype"):
    """``value`` as a NumPy floating dtype (``jnp.float32``, ``"float64"``, ``jnp.bfloat16``)."""
    try:
        dtype = None if value is None or isinstance(value, (bool, numbers.Number)) else np.dtype(value)
    except TypeError:
        dtype = None
    import jax.numpy as jnp  # its floating types include bfloat16, which NumPy's do not

    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ArgumentTypeError(f"{where}: {arg} must be a floating dtype such as jnp.float32 or "
                                f"jnp.float64, got {value!r}")
    return dtype


def writable_path(where: str, arg: str, path) -> Path:
    """``path`` as a ``Path`` that a file can be written to, checked before any work is done.

    It must not be a directory. The check writes: an existing file is opened for appending (and
    left as it was); for a new one, the directories on the way to it are created and a file of
    a unique name beside it, then removed again, so that a path the permissions allow but the
    file system refuses (``/proc``, a read-only mount, a full disk's directory) fails now, and
    processes that check one shared path at once do not see each other's probe. The
    ``ValueError`` names ``where``, ``arg`` (unless empty) and the user's path, so a long run
    never ends in a traceback about a path.
    """
    named = f"{where}: {arg}" if where else arg
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentTypeError(f"{named} must be a file path, got {path!r}")
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{named} {path} is a directory; give a file path inside it, e.g. "
                         f"{path / 'run.npz' if arg.endswith('checkpoint') else path / 'out'}")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{named} {path}: {parent} is a file, not a directory")
    _try_writing(named, path)
    return path


def _try_writing(named: str, path: Path) -> None:
    """Open ``path`` for writing as its run will (creating what is missing), then undo what was made."""
    missing = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    made: list[Path] = []
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:  # another process that shares the path made it meanwhile: not ours
                continue
            made.append(folder)
        if path.exists():
            with open(path, "ab"):
                pass
        else:  # a file of its own beside it, as a checkpoint's save writes one: processes that
            # share the path (one run on several hosts) never see each other's probe as the file
            fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
            os.close(fd)
            made.append(Path(probe))
    except OSError as e:
        what = "exists and is not writable" if path.exists() else "cannot be created"
        raise ValueError(f"{named} {path} {what}: {e.strerror or e}") from None
    finally:
        for made_path in reversed(made):
            # a folder in which another process probes or writes at the same time is left to it
            with contextlib.suppress(OSError):
                made_path.unlink() if made_path.is_file() else made_path.rmdir()


def outside(values, n: int) -> tuple[int, list[int]]:
    """How many of the integer ``values`` (ids, class indices) lie outside ``[0, n)``, and the first
    five of them, distinct and sorted, for a message. ``(0, [])`` for traced values: inside
    ``jax.jit`` they are not known until the program runs, so they cannot be checked here."""
    import jax

    if isinstance(values, jax.core.Tracer):
        return 0, []
    host = np.asarray(values)
    bad = host[(host < 0) | (host >= n)]
    return int(bad.size), sorted(set(bad.tolist()))[:5]
