"""Data augmentation on the device: random crops and horizontal flips of image batches.

``fit(..., augment="crop,flip")`` (``--augment crop,flip``) applies these to
every training minibatch inside the compiled epoch, after the gather and
before forward: no work on the host per step, and a fresh draw every step.
Evaluation never augments. The random numbers come from the step's key, so
the same seed gives the same augmented batches, and resuming from a
checkpoint continues them exactly.

- ``crop`` (``crop:P``, default ``P = 2``): pad each image with ``P`` zeros on
  every side and cut an ``H x W`` window at a random offset: the content moves
  by up to ``P`` pixels in each direction (the CIFAR recipe pads 4 of 32; 2 of
  28 is its share for Fashion-MNIST).
- ``flip``: mirror each image left-right with probability 1/2. It suits
  Fashion-MNIST (a mirrored shirt is a shirt) and not digits (a mirrored 2 is
  no digit), nor text.

Images are ``(N, H, W, ...)``: height and width are the axes 1 and 2, as in
NHWC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["AUGMENTATIONS", "Augment", "parse", "random_crop", "random_flip"]

AUGMENTATIONS = ("crop", "flip")
DEFAULT_PAD = 2


def random_crop(key: jax.Array, x: jax.Array, pad: int = DEFAULT_PAD) -> jax.Array:
    """Each image of ``x: (N, H, W, ...)`` shifted by up to ``pad`` pixels each way, zeros filling in.

    The same as padding by ``pad`` zeros and cropping ``H x W`` at a random
    offset ``(dy, dx)`` in ``[0, 2 * pad]``, drawn per image.
    """
    n, h, w = x.shape[:3]
    rest = x.shape[3:]
    xpad = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), *[(0, 0)] * len(rest)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * pad + 1)

    def crop(image, offset):
        return lax.dynamic_slice(image, (offset[0], offset[1], *[0] * len(rest)), (h, w, *rest))

    return jax.vmap(crop)(xpad, offsets)


def random_flip(key: jax.Array, x: jax.Array) -> jax.Array:
    """Each image of ``x: (N, H, W, ...)`` mirrored left-right (axis 2) with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (x.shape[0],))
    return jnp.where(flip.reshape(-1, *[1] * (x.ndim - 1)), jnp.flip(x, axis=2), x)


@dataclasses.dataclass(frozen=True)
class Augment:
    """A parsed augmentation: ``steps`` are ``("crop", pad)`` and ``("flip", None)``, in order.

    ``augment(key, x)`` applies them to a batch, each step with its own key;
    ``str(augment)`` is the canonical spelling (``"crop:2,flip"``), saved in a
    run's config.
    """

    steps: tuple[tuple[str, int | None], ...]

    def __call__(self, key: jax.Array, x: jax.Array) -> jax.Array:
        for i, (name, pad) in enumerate(self.steps):
            k = jax.random.fold_in(key, i)
            x = random_crop(k, x, pad) if name == "crop" else random_flip(k, x)
        return x

    def __str__(self) -> str:
        return ",".join(name if pad is None else f"{name}:{pad}" for name, pad in self.steps)

    def check(self, x_shape: tuple, where: str = "fit") -> None:
        """Raise ``ValueError`` unless ``x_shape`` is a batch of images that these steps fit."""
        if len(x_shape) < 3:
            raise ValueError(f"{where}: augment={str(self)!r} transforms images (N, H, W, C), but the "
                             f"training inputs have shape {tuple(x_shape)}. Load images unflattened "
                             "(load_fashion_mnist(flatten=False)), or drop augment")
        for name, pad in self.steps:
            if name == "crop" and pad >= min(x_shape[1:3]):
                raise ValueError(f"{where}: augment crop:{pad} shifts by more than the image "
                                 f"({x_shape[1]}x{x_shape[2]}); use a pad below {min(x_shape[1:3])}")


def parse(spec: str | Sequence[str] | Augment | None, where: str = "fit", *,
          x_shape: tuple | None = None) -> Augment | None:
    """``"crop,flip"``, ``"crop:4"``, ``["crop", "flip"]``, an ``Augment`` or ``None`` (none).

    With ``x_shape`` (the training inputs' shape), also ``Augment.check`` it.

    **Raises:** ``ValueError`` naming an unknown step, a repeated one or a bad
    pad; ``TypeError`` for anything but a string, a sequence of strings or ``None``.
    """
    if spec is None or isinstance(spec, Augment):
        if spec is not None and x_shape is not None:
            spec.check(x_shape, where)
        return spec
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split(",")]
    elif isinstance(spec, Sequence) and all(isinstance(p, str) for p in spec):
        parts = [p.strip() for p in spec]
    else:
        raise TypeError(f"{where}: augment must be a string such as 'crop,flip', a list of step names, "
                        f"or None; got {spec!r}")
    if not all(parts):
        raise ValueError(f"{where}: augment {spec!r} has an empty step; use e.g. 'crop,flip'")
    steps: list[tuple[str, int | None]] = []
    for part in parts:
        name, _, arg = part.partition(":")
        if name not in AUGMENTATIONS:
            raise ValueError(f"{where}: unknown augmentation {part!r} in {spec!r}; the steps are "
                             f"{', '.join(AUGMENTATIONS)} (crop:P pads P pixels, default {DEFAULT_PAD})")
        if any(name == done for done, _ in steps):
            raise ValueError(f"{where}: augmentation {name!r} is given twice in {spec!r}")
        if name == "flip":
            if arg:
                raise ValueError(f"{where}: flip takes no argument, got {part!r}")
            steps.append(("flip", None))
            continue
        if arg and not (arg.isdigit() and int(arg) >= 1):
            raise ValueError(f"{where}: crop:P needs a whole number of pixels P >= 1, got {part!r}")
        steps.append(("crop", int(arg) if arg else DEFAULT_PAD))
    if not steps:
        raise ValueError(f"{where}: augment {spec!r} names no step; use e.g. 'crop,flip'")
    return parse(Augment(tuple(steps)), where, x_shape=x_shape)
