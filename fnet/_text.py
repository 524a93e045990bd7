"""Plain-text tables, for ``summary`` and the gradient-check report."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def table(header: Sequence[str], rows: Sequence[Sequence[str]], footer: Sequence[str] | None = None, *,
          right: Collection[int] = ()) -> str:
    """Columns two spaces apart, a rule under the header (and above the footer, if any).

    ``right``: the indices of columns aligned right (numbers); the others are
    aligned left. Trailing spaces are stripped from every line.
    """
    body = [header, *rows, *([footer] if footer is not None else [])]
    widths = [max(len(r[i]) for r in body) for i in range(len(header))]

    def line(r):
        return "  ".join(c.rjust(w) if j in right else c.ljust(w)
                         for j, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    lines = [line(header), rule, *map(line, rows)]
    if footer is not None:
        lines += [rule, line(footer)]
    return "\n".join(lines)
