"""The second book's sequence-to-sequence tasks (``dataset/sequence.py``): addition and dates.

A task is a text of lines ``QUESTION_ANSWER`` in the book's fixed-width format: the first ``_``
separates the question from the answer, which starts with that ``_`` (the decoder's first input,
"start") and is padded with spaces, as every question is, so that all lines have the same
widths (the book's ``dataset/addition.txt``: ``16+75  _91  ``; ``date.txt``: ``september 27,
1994           _1994-09-27``).

- ``addition_lines`` and ``date_lines`` generate such lines, the same ones for the same seed, with
  the distributions of the book's files: sums of two numbers below 1000 of 1 to 3 digits; days
  of 1970 to 2017 in the book's four formats and three cases, mixed as in its ``date.txt``
  (``september 27, 1994``, ``2/10/93``, ``TUESDAY, SEPTEMBER 25, 1984``, ``Sep 27, 1994``) to
  ``1994-09-27``;
- ``read_lines`` reads a task's file; ``load_task`` splits any of them into questions and
  answers, the character vocabulary and the ids, with the last tenth held out after a shuffle
  drawn from the seed.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from pathlib import Path

import numpy as np

from fnet.data.idx import DataError

__all__ = ["SequenceTask", "addition_lines", "date_lines", "load_task", "read_lines", "split_line"]

TASKS = ("addition", "date")

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def addition_lines(n: int = 50000, seed: int = 0) -> list[str]:
    """``n`` lines ``a+b_sum``, widths 7 and 5 (``_`` included), the book's mix: each of ``a`` and
    ``b`` has 1, 2 or 3 digits (equally likely), then is uniform among the numbers of that many
    digits (``0..9``, ``10..99``, ``100..999``)."""
    rng = np.random.default_rng(seed)
    digits = rng.integers(1, 4, (2, n))
    low = np.where(digits == 1, 0, 10 ** (digits - 1))
    a, b = rng.integers(low, 10 ** digits)
    pairs = zip(a.tolist(), b.tolist(), strict=True)
    return [f"{x}+{y}".ljust(7) + "_" + str(x + y).ljust(4) for x, y in pairs]


def _date_text(d: datetime.date, form: int, case: int) -> str:
    month, day = _MONTHS[d.month - 1], _DAYS[d.weekday()]
    texts = (
        f"{d.month}/{d.day}/{d.year % 100:02d}",  # short: 2/10/93
        f"{month[:3]} {d.day}, {d.year}",  # medium: Sep 27, 1994
        f"{month} {d.day}, {d.year}",  # long: September 27, 1994
        f"{day}, {month} {d.day}, {d.year}",  # full: Tuesday, September 27, 1994
    )
    text = texts[form]
    return (text.lower(), text.upper(), text)[case]


_DATE_FORMS = 4
_CASE_ODDS = (0.25, 0.25, 0.5)  # lower, upper, title: the book's date.txt, counted
_FIRST_DAY, _LAST_DAY = datetime.date(1970, 1, 1), datetime.date(2017, 12, 31)  # the book's years


def date_lines(n: int = 50000, seed: int = 0) -> list[str]:
    """``n`` lines ``date_YYYY-MM-DD``: a day between 1970 and 2017 in one of the book's four
    formats (``2/10/93``, ``Sep 27, 1994``, ``September 27, 1994``, ``Tuesday, September 27,
    1994``), equally likely, in title case half the time and lower or upper case a quarter each
    (the mix of the book's ``date.txt``), question width 29, answer width 11 (``_`` included)."""
    rng = np.random.default_rng(seed)
    days = rng.integers(0, (_LAST_DAY - _FIRST_DAY).days + 1, n)
    forms, cases = rng.integers(0, _DATE_FORMS, n), rng.choice(3, n, p=_CASE_ODDS)
    lines = []
    for k, form, case in zip(days.tolist(), forms.tolist(), cases.tolist(), strict=True):
        d = _FIRST_DAY + datetime.timedelta(days=k)
        lines.append(_date_text(d, form, case).ljust(29) + "_" + d.isoformat())
    return lines


def read_lines(path: str | os.PathLike) -> list[str]:
    """The lines of a task file (UTF-8, the trailing newline of each line dropped; empty lines
    skipped). **Raises:** ``DataError`` naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte {e.start}: {e.reason})") from None
    return [line.rstrip("\r\n") for line in text.split("\n") if line.rstrip("\r\n")]


def split_line(line: str) -> tuple[str, str]:
    """``(question, answer)``: the text before the first ``_``, and from it on (the book's rule)."""
    i = line.find("_")
    if i < 1 or i == len(line) - 1:
        raise ValueError(f"expected QUESTION_ANSWER (the first '_' starts the answer), got {line!r}")
    return line[:i], line[i:]


@dataclasses.dataclass(frozen=True)
class SequenceTask:
    """A task as ids: ``x: (N, T_src)`` questions, ``t: (N, T_ans)`` answers (``_`` first), the first
    ``n_train`` rows for training and the rest held out; ``vocab[i]`` is the character of id ``i``."""

    x: np.ndarray
    t: np.ndarray
    vocab: str
    n_train: int
    name: str

    @property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x[: self.n_train], self.t[: self.n_train]

    @property
    def test(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x[self.n_train:], self.t[self.n_train:]

    @property
    def start_id(self) -> int:
        return self.vocab.index("_")


def load_task(task: str, seed: int = 0, *, n: int = 50000, held_out: float = 0.1) -> SequenceTask:
    """``"addition"``, ``"date"`` (``n`` generated lines, ``seed``) or the path of a task file, as ids.

    The lines are shuffled with ``seed`` and the last ``held_out`` share is held out (the book
    holds out the last 10%). **Raises:** ``DataError`` for a file that cannot be read or whose
    lines are not all ``QUESTION_ANSWER`` of the same widths (naming the first line that is not).
    """
    if task == "addition":
        lines, name = addition_lines(n, seed), task
    elif task == "date":
        lines, name = date_lines(n, seed), task
    else:
        lines, name = read_lines(task), str(task)
    if len(lines) < 2:
        raise DataError(f"{name}: needs at least 2 lines QUESTION_ANSWER, got {len(lines)}")
    pairs = []
    for number, line in enumerate(lines, start=1):
        try:
            pairs.append(split_line(line))
        except ValueError as e:
            raise DataError(f"{name}, line {number}: {e}") from None
        if (len(pairs[-1][0]), len(pairs[-1][1])) != (len(pairs[0][0]), len(pairs[0][1])):
            raise DataError(f"{name}, line {number}: question and answer of widths {len(pairs[-1][0])} and "
                            f"{len(pairs[-1][1])}, but line 1 has {len(pairs[0][0])} and {len(pairs[0][1])}: "
                            "pad every question and every answer with spaces to one width, as the book's "
                            "files are")
    vocab = "".join(sorted({c for q, a in pairs for c in q + a}))
    index = {c: i for i, c in enumerate(vocab)}
    x = np.array([[index[c] for c in q] for q, _ in pairs], np.int32)
    t = np.array([[index[c] for c in a] for _, a in pairs], np.int32)
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_test = max(1, round(len(pairs) * held_out))
    return SequenceTask(x[order], t[order], vocab, len(pairs) - n_test, name)
