"""A network of one's own for ``fnet-train --net mynets:small_cnn`` (docs/cli.md)."""

import fnet
from fnet import layers as L


def small_cnn() -> fnet.Layer:
    return fnet.sequential(L.conv2d(8, 3, padding=1), L.relu(), L.max_pool2d(2),
                           L.flatten(), L.affine(10))
