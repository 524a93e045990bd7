"""What the gradient with respect to the input shows (CS231n's network visualisation).

fnet's ``backward`` returns ``dx`` beside the parameters' gradients. Started from a ``dout``
that is 1 at one class's score and 0 elsewhere, it is ``dscore/dx``: how each pixel moves that
score. Three uses, each the network run in evaluation mode (dropout off, batch norm's running
statistics) and its handwritten backward, with no autodiff:

- ``saliency_map``: ``max over channels |dscore_label/dx|`` (Simonyan et al. 2014), which pixels
  the score of the true class depends on most (for an input other than images ``(N, H, W, C)``,
  ``|dscore_label/dx|`` of each input value).
- ``fooling_image``: normalised gradient ascent on a target class's score, ``x <- x + lr * g /
  ||g||``, until the network predicts the target (at most ``max_steps``); the image barely changes.
- ``class_visualization``: gradient ascent from noise on ``score_target(x) - l2 * ||x||^2``, an
  image the network scores as the target class.

Images are ``(N, H, W, C)`` (or what the network takes); scores are the network's output
``(N, classes)`` before the softmax. A class index outside ``[0, classes)`` is refused with a
``RangeError`` when the classes are known at the call (a NumPy or concrete JAX array; inside a
user's ``jax.jit`` they are not, and such an index would pick no score: a zero gradient).

Each function is compiled with ``jax.jit`` (``net`` and the integer options static): the first
call for a network and shapes compiles one program, later calls run it, where running the
layers op by op would compile each operation of the network on its first use. They can be
called inside a user's ``jax.jit`` too.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax

from fnet import _args
from fnet.core import Layer, Params, State, apply
from fnet.errors import RangeError, ShapeError, shape_str

__all__ = ["FoolingResult", "class_visualization", "fooling_image", "saliency_map", "score_gradient"]


def score_gradient(net: Layer, params: Params, x: jax.Array, classes: jax.Array, *,
                   state: State | None = None) -> tuple[jax.Array, jax.Array]:
    """``(scores (N, K), dscore/dx)``: the gradient of each example's score of ``classes[i]`` with
    respect to its input, by ``net.backward`` from a one-hot ``dout`` (evaluation mode)."""
    x, classes = jnp.asarray(x), jnp.asarray(classes)
    _check_classes("score_gradient", net, params, x, classes, state)
    return _score_gradient(net, params, x, classes, state)


@functools.partial(jax.jit, static_argnums=0)
def _score_gradient(net: Layer, params: Params, x: jax.Array, classes: jax.Array, state: State | None):
    scores, cache, _ = apply(net, params, x, train=False, state=state)
    if scores.ndim != 2:
        raise ShapeError("score_gradient", f"needs a network giving class scores (N, K); {net.name} gives "
                                           f"{shape_str(scores.shape)}")
    if classes.shape != (x.shape[0],) or not jnp.issubdtype(classes.dtype, jnp.integer):
        raise ShapeError("score_gradient", f"needs one integer class per example, shape ({x.shape[0]},); "
                                           f"got {shape_str(classes.shape)} of dtype {classes.dtype}")
    dout = jax.nn.one_hot(classes, scores.shape[1], dtype=scores.dtype)
    _, dx = net.backward(cache, dout)
    return scores, dx


def _check_classes(where: str, net: Layer, params: Params, x: jax.Array, classes: jax.Array,
                   state: State | None) -> None:
    """Refuse class indices outside ``[0, K)`` when they are known (not traced): one-hot of such an
    index is all zeros, so its gradient would be zero, a blank map rather than an error."""
    if isinstance(classes, jax.core.Tracer) or not jnp.issubdtype(classes.dtype, jnp.integer):
        return  # traced or not integers (the compiled function names the last)
    scores = _scores.eval_shape(net, params, x, state)
    if len(scores.shape) != 2:
        return  # the compiled function names a network that gives no class scores
    count, examples = _args.outside(classes, scores.shape[1])
    if count:
        raise RangeError(where, f"classes must be in [0, {scores.shape[1]}) (the network gives "
                                f"{scores.shape[1]} scores); got {count} outside it, e.g. {examples}")


def _check_target(where: str, target, n_classes: int) -> int:
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < n_classes:
        raise ValueError(f"{where}: target must be a class index in [0, {n_classes}) (the network gives "
                         f"{n_classes} scores); got {target!r}")
    return target


def saliency_map(net: Layer, params: Params, x: jax.Array, labels: jax.Array, *,
                 state: State | None = None) -> jax.Array:
    """``(N, H, W)`` for images ``x: (N, H, W, C)``: the largest ``|dscore_label/dx|`` over each
    pixel's channels. For any other input (flat ``(N, D)``, sequences ``(N, T, D)``) there is no
    channel axis to take the largest of: ``|dscore_label/dx|``, of ``x``'s shape."""
    x, labels = jnp.asarray(x), jnp.asarray(labels)
    _check_classes("saliency_map", net, params, x, labels, state)
    return _saliency_map(net, params, x, labels, state)


@functools.partial(jax.jit, static_argnums=0)
def _saliency_map(net: Layer, params: Params, x: jax.Array, labels: jax.Array, state: State | None):
    _, dx = _score_gradient(net, params, x, labels, state)
    return jnp.abs(dx).max(axis=-1) if x.ndim == 4 else jnp.abs(dx)


@dataclasses.dataclass(frozen=True)
class FoolingResult:
    """``image``: the changed input; ``steps``: the ascent steps taken; ``fooled``: whether the
    network now predicts the target."""

    image: jax.Array
    steps: jax.Array
    fooled: jax.Array


jax.tree_util.register_dataclass(FoolingResult, data_fields=["image", "steps", "fooled"], meta_fields=[])


def fooling_image(net: Layer, params: Params, x: jax.Array, target: int, *, lr: float = 1.0,
                  max_steps: int = 100, state: State | None = None) -> FoolingResult:
    """Gradient ascent on ``target``'s score from one image ``x: (1, H, W, C)``: ``x <- x + lr *
    g / ||g||`` (``g = dscore_target/dx``) until the network predicts ``target``, at most
    ``max_steps`` steps (CS231n's ``make_fooling_image``)."""
    lr = _args.positive("fooling_image", "lr", lr)
    max_steps = _args.count("fooling_image", "max_steps", max_steps, 1)
    x = jnp.asarray(x)
    if x.shape[:1] != (1,):
        raise ShapeError("fooling_image", f"takes one image, shape (1, ...); got {shape_str(x.shape)}")
    target = _check_target("fooling_image", target, _n_classes(net, params, x, state))
    return _fooling_image(net, params, x, target, lr, max_steps, state)


def _n_classes(net: Layer, params: Params, x, state: State | None) -> int:
    """The number of scores ``net`` gives for ``x`` (an array or its shape), from shapes alone."""
    return _scores.eval_shape(net, params, x, state).shape[-1]


@functools.partial(jax.jit, static_argnums=0)
def _scores(net: Layer, params: Params, x: jax.Array, state: State | None) -> jax.Array:
    return apply(net, params, x, train=False, state=state)[0]


@functools.partial(jax.jit, static_argnums=(0, 3, 5))
def _fooling_image(net: Layer, params: Params, x: jax.Array, target: int, lr, max_steps: int,
                   state: State | None) -> FoolingResult:
    target_ids = jnp.full((1,), target, jnp.int32)

    def predicted(scores):
        return jnp.argmax(scores[0]) == target

    def cond(carry):
        _, step, fooled = carry
        return (step < max_steps) & ~fooled

    def body(carry):
        image, step, _ = carry
        _, g = _score_gradient(net, params, image, target_ids, state)
        image = image + lr * g / (jnp.linalg.norm(g) + jnp.finfo(g.dtype).tiny)
        return image, step + 1, predicted(_scores(net, params, image, state))

    start = (x, jnp.int32(0), predicted(_scores(net, params, x, state)))
    image, steps, fooled = lax.while_loop(cond, body, start)
    return FoolingResult(image, steps, fooled)


def class_visualization(net: Layer, params: Params, target: int, input_shape: tuple[int, ...], *,
                        key: jax.Array, steps: int = 100, lr: float = 0.5, l2: float = 1e-3,
                        state: State | None = None) -> jax.Array:
    """An image ``(1, *input_shape)`` the network scores as ``target``: gradient ascent from
    ``0.1 N(0, 1)`` noise (of the parameters' dtype) on ``score_target(x) - l2 * ||x||^2``, ``steps`` steps of
    ``x <- x + lr * g / ||g||`` with ``g = dscore/dx - 2 l2 x`` (CS231n's class visualisation,
    without its jitter and blur)."""
    steps = _args.count("class_visualization", "steps", steps, 1)
    lr = _args.positive("class_visualization", "lr", lr)
    l2 = _args.non_negative("class_visualization", "l2", l2)
    input_shape = tuple(input_shape)
    floats = [w.dtype for w in jax.tree.leaves(params) if jnp.issubdtype(w.dtype, jnp.floating)]
    dtype = floats[0] if floats else jnp.float32
    n_classes = _n_classes(net, params, jax.ShapeDtypeStruct((1, *input_shape), dtype), state)
    target = _check_target("class_visualization", target, n_classes)
    return _class_visualization(net, params, target, (1, *input_shape), jnp.dtype(dtype), key, steps, lr, l2,
                                state)


@functools.partial(jax.jit, static_argnums=(0, 2, 3, 4, 6))
def _class_visualization(net: Layer, params: Params, target: int, shape: tuple[int, ...], dtype,
                         key: jax.Array, steps: int, lr, l2, state: State | None) -> jax.Array:
    x = 0.1 * jax.random.normal(key, shape, dtype)
    target_ids = jnp.full((1,), target, jnp.int32)

    def step(image, _):
        _, g = _score_gradient(net, params, image, target_ids, state)
        g = g - 2 * l2 * image
        return image + lr * g / (jnp.linalg.norm(g) + jnp.finfo(g.dtype).tiny), None

    image, _ = lax.scan(step, x, None, length=steps)
    return image
