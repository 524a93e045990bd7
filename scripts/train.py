#!/usr/bin/env python
"""Train a network on MNIST or Fashion-MNIST: ``python scripts/train.py --help``.

The same program is installed as ``fnet-train``; its code is ``fnet/cli/`` (``docs/cli.md``: every option).
"""

from fnet.cli import run

if __name__ == "__main__":
    run()
