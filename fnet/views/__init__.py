"""Views of a network: its layer tree as a table, and its graph as a picture.

- ``summary(net, input_shape)``: each layer's key path, kind, output shape, parameters
  and, for a batch size, what its cache keeps for backward (``fnet.views.summary``).
- ``draw_network(net, input_shape)``: the layers as boxes, the shapes forward and the
  gradients back, fan-outs and merges (``fnet.views.network``; ``fnet.graph.draw.render``
  turns the DOT text into SVG).

Both read a network through each combinator's ``Layer.wiring`` (``fnet.core.Wiring``).

- ``saliency_map``, ``fooling_image``, ``class_visualization``: what the gradient with respect to
  the input shows (CS231n's network visualisation; ``fnet.views.saliency``), by ``backward``'s ``dx``.
"""

from fnet.views.network import draw_network
from fnet.views.saliency import (
                                 FoolingResult,
                                 class_visualization,
                                 fooling_image,
                                 saliency_map,
                                 score_gradient,
)
from fnet.views.summary import summary

__all__ = ["FoolingResult", "class_visualization", "draw_network", "fooling_image", "saliency_map",
           "score_gradient", "summary"]
