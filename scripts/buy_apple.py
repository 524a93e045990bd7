#!/usr/bin/env python
"""The book's shopping examples on fnet's graph nodes: forward price, then every gradient.

    python scripts/buy_apple.py                   # both examples
    python scripts/buy_apple.py --example apple
"""

from __future__ import annotations

import argparse

from fnet.graph import add, mul


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


def _show(title: str, values: dict) -> None:
    print(title)
    for name, v in values.items():
        print(f"  {name:12s} {float(v):g}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--example", choices=["apple", "apple-orange", "both"], default="both")
    args = parser.parse_args(argv)
    if args.example in ("apple", "both"):
        _show("buy_apple: 2 apples at 100, tax 1.1", buy_apple())
    if args.example in ("apple-orange", "both"):
        _show("buy_apple_orange: 2 apples at 100, 3 oranges at 150, tax 1.1", buy_apple_orange())


if __name__ == "__main__":
    main()
