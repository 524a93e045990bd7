#!/usr/bin/env python
"""Draw a network's layers as the book draws Figure 5-29: forward shapes above the arrows,
the gradients' shapes beneath them in red, and the repeat / + / concat nodes where it branches.

    python scripts/draw_net.py --model two_layer --out docs/images/two_layer_net.svg
    python scripts/draw_net.py --model convnet --out docs/images/convnet.svg
    python scripts/draw_net.py --model resnet --out docs/images/resnet.svg
    python scripts/draw_net.py --model resnet --widths 16 32 --blocks 1 1 --out resnet_small.png

The models are fnet-train's (the same options: --hidden, --widths, --blocks, ...), for
28x28 images and 10 classes. The suffix of --out picks the format: .svg, .png or .pdf
need Graphviz's dot (Debian package graphviz); .dot writes the Graphviz text itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fnet.cli.models import MODELS, build_model, model_input
from fnet.graph.draw import render
from fnet.views import draw_network


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=MODELS, default="two_layer")
    p.add_argument("--hidden", type=int, nargs="+", metavar="N", help="two_layer / mlp hidden sizes")
    p.add_argument("--widths", type=int, nargs="+", metavar="C", help="resnet: channels per stage")
    p.add_argument("--blocks", type=int, nargs="+", metavar="N", help="resnet: blocks per stage")
    p.add_argument("--rankdir", choices=["LR", "TB"],
                   help="left to right or top to bottom (default: LR, TB for resnet)")
    p.add_argument("--out", type=Path, required=True, metavar="PATH", help=".svg, .png, .pdf or .dot")
    a = p.parse_args(argv)
    if a.model != "resnet" and (a.widths or a.blocks):
        p.error("--widths and --blocks apply to --model resnet")
    example = model_input(a.model, np.zeros((1, 28, 28, 1))).shape[1:]
    try:
        net, input_shape = build_model(a.model, example, 10, hidden=a.hidden, widths=a.widths,
                                       blocks=a.blocks)
        dot = draw_network(net, input_shape, title=f"{a.model} (forward shapes; gradients in red)",
                           rankdir=a.rankdir or ("TB" if a.model == "resnet" else "LR"))
        render(dot, a.out)
    except (ValueError, TypeError, RuntimeError) as e:
        p.error(str(e))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
