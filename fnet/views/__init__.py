"""Views of a network: its layer tree as a table, and its graph as a picture.

- ``summary(net, input_shape)``: each layer's key path, kind, output shape, parameters
  and, for a batch size, what its cache keeps for backward (``fnet.views.summary``).
- ``draw_network(net, input_shape)``: the layers as boxes, the shapes forward and the
  gradients back, fan-outs and merges (``fnet.views.network``; ``fnet.graph.draw.render``
  turns the DOT text into SVG).

Both read a network through each combinator's ``Layer.wiring`` (``fnet.core.Wiring``).
"""

from fnet.views.network import draw_network
from fnet.views.summary import summary

__all__ = ["draw_network", "summary"]
