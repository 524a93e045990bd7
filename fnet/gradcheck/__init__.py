"""Gradient checking: handwritten backprop against numerical differentiation.

The book's ``ch05/gradient_check.py`` trusts backprop only after comparing it
with a gradient computed by brute force, one parameter at a time::

    df/dp  ~  (f(p + h) - f(p - h)) / 2h          (central difference)

``numerical_gradient`` does exactly that for every entry of a params pytree,
inside one compiled ``lax.map`` per leaf (``vmap``-ed in chunks when asked), so
the 79,520 loss evaluations of the book's 784-50-10 net take seconds; ``compare``
lays the two gradients side by side, leaf by leaf, and says where they differ
most.

``check_layer`` does both for one layer, parameters and input, with a report.

No automatic differentiation is involved: the numerical gradient needs only
evaluations of ``f``, so it is an independent witness of the handwritten rules.

Example (the two-layer net, float64)::

    loss = lambda p: losses.softmax_cross_entropy.forward(net.forward(p, x)[0], t)[0]
    numerical = gradcheck.numerical_gradient(loss, params)
    _, backprop = fnet.loss_and_grads(net, losses.softmax_cross_entropy)(params, x, t)
    report = gradcheck.compare(backprop, numerical)
    print(report)
    assert report.ok(1e-7)
"""

from fnet.gradcheck.layer import GradientCheckError, LayerCheck, check_layer
from fnet.gradcheck.numerical import DEFAULT_CHUNK, DEFAULT_EPS, default_eps, numerical_gradient
from fnet.gradcheck.report import METRICS, REL_FLOOR, GradReport, LeafDiff, compare

__all__ = ["DEFAULT_CHUNK", "DEFAULT_EPS", "METRICS", "REL_FLOOR", "GradReport", "GradientCheckError",
           "LayerCheck", "LeafDiff", "check_layer", "compare", "default_eps", "numerical_gradient"]
