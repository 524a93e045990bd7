"""A pre-activation ResNet for small images (He et al. 2016), from public layers and ``residual``."""

from __future__ import annotations

from collections.abc import Sequence

from fnet import _args
from fnet import layers as L
from fnet.combinators import residual, sequential
from fnet.core import Layer, output_shape


def resnet(input_shape: tuple[int, int, int] = (28, 28, 1), widths: Sequence[int] = (16, 32, 64),
           blocks: Sequence[int] = (2, 2, 2), output_size: int = 10) -> Layer:
    """A small ResNet for small images: pre-activation basic blocks (He et al. 2016).

    **Structure** (channels-last, every convolution 3x3 with padding 1 unless said):

    - ``stem``: ``conv2d(widths[0], 3)``;
    - ``stage_1`` ... ``stage_S`` (one per width): ``blocks[s]`` residual blocks
      ``block_1``, ``block_2``, ...; each is ``residual(body, shortcut)`` with
      ``body = batch_norm -> relu -> conv2d(w, 3, stride) -> batch_norm -> relu ->
      conv2d(w, 3)``. The first block of every stage after the first halves the
      image (stride 2) and widens it, so its shortcut is a projection, a 1x1
      ``conv2d(w, 1, stride=2)``; every other shortcut is the identity, along
      which the gradient reaches the block's input untouched;
    - ``head``: ``batch_norm -> relu -> global_avg_pool2d -> affine(output_size)``
      (softmax-with-loss outside).

    The defaults, widths ``(16, 32, 64)`` and two blocks per stage, are the
    CIFAR ResNet of He et al. 2015 with 2 instead of 3 to 18 blocks per stage:
    14 weight layers, 174,778 parameters; 28x28 images become 28, 14, then 7 pixels a side.
    He initialisation for every convolution, Xavier for the last affine. The
    convolutions have no bias (``bias=False``): every path ends in a batch norm,
    which would subtract it again.

    **Shapes:** ``(N, H, W, C) -> (N, output_size)``. The net holds batch norm:
    it needs ``train=True/False`` and ``state`` from ``net.init_state``.
    """
    if not (isinstance(input_shape, (tuple, list)) and len(input_shape) == 3):
        raise ValueError(f"resnet: input_shape is one image's (H, W, C), e.g. (28, 28, 1); "
                         f"got {input_shape!r}")
    widths = _args.counts("resnet", "widths", widths, 1)
    blocks = _args.counts("resnet", "blocks", blocks, 1)
    if len(widths) != len(blocks):
        raise ValueError(f"resnet: widths {widths} and blocks {blocks} must have one entry per "
                         "stage each, so the same length")
    output_size = _args.count("resnet", "output_size", output_size, 1)
    stages = []
    for s, (width, n_blocks) in enumerate(zip(widths, blocks, strict=True)):
        units = []
        for b in range(n_blocks):
            stride = 2 if s > 0 and b == 0 else 1
            body = sequential(L.batch_norm(), L.relu(), L.conv2d(width, 3, stride, padding=1, bias=False),
                              L.batch_norm(), L.relu(), L.conv2d(width, 3, padding=1, bias=False))
            shortcut = L.conv2d(width, 1, stride, bias=False) if stride != 1 else None
            units.append((f"block_{b + 1}", residual(body, shortcut)))
        stages.append((f"stage_{s + 1}", sequential(*units)))
    net = sequential(("stem", L.conv2d(widths[0], 3, padding=1, bias=False)), *stages,
                     ("head", sequential(L.batch_norm(), L.relu(), L.global_avg_pool2d(),
                                         L.affine(output_size, W_init="xavier"))))
    output_shape(net, (None, *input_shape))  # too small an image raises now, naming the layer
    return net
