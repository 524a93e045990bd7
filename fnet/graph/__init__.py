"""The computational graph of chapter 5: nodes, a tape that records them, and pictures.

- ``fnet.graph.nodes``: the nodes ``mul``, ``add``, ``inverse``, ``exp``, ``log``,
  ``repeat``, ``sum`` (the book's ``MulLayer`` and ``AddLayer``, and friends).
- ``fnet.graph.tape``: ``Tape`` records node applications and runs the backward
  pass over the recording.
- ``fnet.graph.draw``: the recording as Graphviz DOT text and SVG/PNG/PDF (a network's
  layers are drawn by ``fnet.views.draw_network``, in the same style).

Each node is a pure pair ``forward(*inputs) -> (out, cache)`` and
``backward(cache, dout) -> grads``: a tuple with one gradient per input for
the two-input nodes (``mul``, ``add``), a single gradient for the others.
Inputs may be Python numbers or arrays; ``mul`` and ``add`` broadcast, and
their backward sums each gradient back to its input's shape.

The shopping example of the book, as in ``scripts/buy_apple.py``::

    price, c1 = mul.forward(100.0, 2.0)        # apple * count     = 200
    total, c2 = mul.forward(price, 1.1)        # price * tax       = 220
    dprice, dtax = mul.backward(c2, 1.0)       # 1.1, 200
    dapple, dcount = mul.backward(c1, dprice)  # 2.2, 110

To record such a computation, have the backward pass run over the recording
and draw it as the book does, use ``graph.Tape``::

    g = graph.Tape()
    apple, count, tax = g.input("apple", 100.0), g.input("count", 2.0), g.input("tax", 1.1)
    total = g.apply(mul, g.apply(mul, apple, count), tax, name="total")
    g.backward(total)            # {"apple": 2.2, "count": 110, "tax": 200}
    g.render("buy_apple.svg")    # needs Graphviz's dot; g.to_dot() does not
"""

from fnet.graph import draw, nodes, tape
from fnet.graph.nodes import NODES, Node, add, exp, inverse, log, mul, repeat, sum
from fnet.graph.tape import Tape, Var

__all__ = ["NODES", "Node", "Tape", "Var", "add", "draw", "exp", "inverse", "log", "mul",
           "nodes", "repeat", "sum", "tape"]
