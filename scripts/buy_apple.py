#!/usr/bin/env python
"""The book's shopping examples on fnet's graph nodes: forward price, then every gradient.

    python scripts/buy_apple.py                   # both examples
    python scripts/buy_apple.py --example apple
    python scripts/buy_apple.py --example apple --draw apple.svg
    python scripts/buy_apple.py --draw docs/images/buy.svg    # buy_apple.svg, buy_apple_orange.svg

--draw also draws each graph as the book does (forward values above the
arrows, gradients in red beneath). With one example the picture goes to the
path given; with both, the example's name is appended to the file name
(buy.svg -> buy_apple.svg and buy_apple_orange.svg). The suffix picks the
format: .svg, .png or .pdf need Graphviz's dot (Debian package graphviz);
.dot writes the Graphviz text itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fnet.graph import Tape, Var, add, mul


def buy_apple(apple=100.0, apple_num=2.0, tax=1.1) -> dict:
    """2 apples at 100 with 10% tax: price 220; d/dapple 2.2, d/dapple_num 110, d/dtax 200."""
    apple_price, c_apple = mul.forward(apple, apple_num)
    price, c_tax = mul.forward(apple_price, tax)

    dapple_price, dtax = mul.backward(c_tax, 1.0)
    dapple, dapple_num = mul.backward(c_apple, dapple_price)
    return {"price": price, "dapple": dapple, "dapple_num": dapple_num, "dtax": dtax}


def buy_apple_orange(apple=100.0, apple_num=2.0, orange=150.0, orange_num=3.0, tax=1.1) -> dict:
    """Add 3 oranges at 150: price 715; gradients 110, 2.2, 3.3, 165, 650."""
    apple_price, c_apple = mul.forward(apple, apple_num)
    orange_price, c_orange = mul.forward(orange, orange_num)
    all_price, c_add = add.forward(apple_price, orange_price)
    price, c_tax = mul.forward(all_price, tax)

    dall_price, dtax = mul.backward(c_tax, 1.0)
    dapple_price, dorange_price = add.backward(c_add, dall_price)
    dorange, dorange_num = mul.backward(c_orange, dorange_price)
    dapple, dapple_num = mul.backward(c_apple, dapple_price)
    return {"price": price, "dapple_num": dapple_num, "dapple": dapple, "dorange": dorange,
            "dorange_num": dorange_num, "dtax": dtax}


def buy_apple_tape(apple=100.0, apple_num=2.0, tax=1.1) -> tuple[Tape, Var]:
    """``buy_apple`` recorded on a tape: ``(tape, price)``; ``tape.backward(price)`` gives the gradients."""
    g = Tape()
    apple, apple_num, tax = g.input("apple", apple), g.input("apple_num", apple_num), g.input("tax", tax)
    apple_price = g.apply(mul, apple, apple_num, name="apple_price")
    return g, g.apply(mul, apple_price, tax, name="price")


def buy_apple_orange_tape(apple=100.0, apple_num=2.0, orange=150.0, orange_num=3.0,
                          tax=1.1) -> tuple[Tape, Var]:
    """``buy_apple_orange`` recorded on a tape: ``(tape, price)``."""
    g = Tape()
    apple, apple_num = g.input("apple", apple), g.input("apple_num", apple_num)
    orange, orange_num = g.input("orange", orange), g.input("orange_num", orange_num)
    tax = g.input("tax", tax)
    apple_price = g.apply(mul, apple, apple_num, name="apple_price")
    orange_price = g.apply(mul, orange, orange_num, name="orange_price")
    all_price = g.apply(add, apple_price, orange_price, name="all_price")
    return g, g.apply(mul, all_price, tax, name="price")


EXAMPLES = {"apple": ("buy_apple: 2 apples at 100, tax 1.1", buy_apple, buy_apple_tape),
            "apple-orange": ("buy_apple_orange: 2 apples at 100, 3 oranges at 150, tax 1.1",
                             buy_apple_orange, buy_apple_orange_tape)}


def draw_path(path: str, example: str, several: bool) -> Path:
    """Where ``--draw path`` puts ``example``'s picture: ``path`` itself, or with ``_apple`` etc. appended."""
    p = Path(path)
    if not several:
        return p
    return p.with_name(f"{p.stem}_{example.replace('-', '_')}{p.suffix}")


def _show(title: str, values: dict) -> None:
    print(title)
    for name, v in values.items():
        print(f"  {name:12s} {float(v):g}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--example", choices=["apple", "apple-orange", "both"], default="both")
    parser.add_argument("--draw", metavar="PATH", default=None,
                        help="also draw the graph(s): .svg, .png, .pdf (need Graphviz's dot) or .dot")
    args = parser.parse_args(argv)
    chosen = list(EXAMPLES) if args.example == "both" else [args.example]
    for name in chosen:
        title, compute, _ = EXAMPLES[name]
        _show(title, compute())
    if args.draw:
        for name in chosen:
            g, price = EXAMPLES[name][2]()
            g.backward(price)
            try:
                path = g.render(draw_path(args.draw, name, len(chosen) > 1))
            except (RuntimeError, ValueError) as e:
                parser.exit(1, f"buy_apple: {e}\n")
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
