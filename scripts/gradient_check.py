#!/usr/bin/env python
"""The book's ch05/gradient_check.py: backprop against numerical differentiation.

A few training images go through the two-layer net; the gradient of the loss
is computed twice, by the handwritten backward passes and by central
differences (two loss evaluations per parameter), and compared per parameter.

    python scripts/gradient_check.py                      # float64, 3 Fashion-MNIST images
    python scripts/gradient_check.py --float32            # the float32 picture
    python scripts/gradient_check.py --dataset mnist --data-dir ~/data/mnist
    python scripts/gradient_check.py --threshold 1e-9     # exit status 1 above it
    python scripts/gradient_check.py --model mlp --hidden 100 100 --activation sigmoid

The exit status is 0 when every difference is within the threshold, 1 when
one is not (so the check can gate a change), 2 when the data cannot be loaded.
The network is the book's two-layer net (``--hidden`` sets its width) or,
with ``--model mlp``, ``multi_layer_net`` with the given hidden sizes and
activation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

DEFAULT_THRESHOLD = {"float64": 1e-7, "float32": 5e-3}
"""Largest absolute difference allowed, per dtype: far above what correct rules show, far
below the error of a wrong rule (about the size of the gradient itself) in float64; in
float32 the two are barely apart, so gate changes on float64 (figures: docs/speed.md)."""

FLOAT32_NOTE = """\
Why float32 differs more: a float32 number keeps about 7 significant digits
(float64: 16). The numerical gradient subtracts two nearly equal losses,
f(p+h) - f(p-h), which cancels most of those digits, and divides what is left
by a small 2h; the rounding error left over is about 1e-7 * |loss| / h. A larger
h shrinks it but lets curvature in, and can step across a ReLU kink. Backprop has
no such cancellation. So float32 shows agreement to 3 or 4 digits; check
backward rules in float64, where agreement is to 8 digits or more.
The relative error reaches 1 where the true gradient is 0 (a pixel that is 0
in every image): backprop gives exactly 0, the numerical gradient a little
rounding noise."""


def parse_args(argv=None) -> argparse.Namespace:
    from fnet.cli.options import non_negative_float, positive_float

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="fashion-mnist",
                        help="default fashion-mnist (MNIST cannot be downloaded everywhere)")
    parser.add_argument("--data-dir", default=None,
                        help="directory with the four IDX files (default: where fnet.data looks)")
    parser.add_argument("--samples", type=int, default=3, help="training images to use (default 3)")
    parser.add_argument("--model", choices=["two_layer", "mlp"], default="two_layer",
                        help="two_layer_net (default) or multi_layer_net")
    parser.add_argument("--hidden", type=int, nargs="+", metavar="N", default=None,
                        help="hidden sizes (two_layer: one, default 50; mlp: default 100 100)")
    parser.add_argument("--activation", choices=["relu", "sigmoid", "tanh"], default=None,
                        help="hidden activation of --model mlp (default relu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weight initialisation")
    parser.add_argument("--float32", action="store_true", help="compute in float32 (default float64)")
    parser.add_argument("--eps", type=positive_float, default=None,
                        help="step h of the central difference (default 1e-5 in float64, 3e-3 in float32)")
    parser.add_argument("--threshold", type=non_negative_float, default=None,
                        help="largest absolute difference allowed (default 1e-7 in float64, 5e-3 in "
                             "float32); above it the exit status is 1")
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error("--samples must be at least 1")
    if args.hidden is None:
        args.hidden = [50] if args.model == "two_layer" else [100, 100]
    if min(args.hidden) < 1:
        parser.error("--hidden sizes must be at least 1")
    if args.model == "two_layer" and len(args.hidden) != 1:
        parser.error("--model two_layer has one hidden layer; use --model mlp for several")
    if args.model == "two_layer" and args.activation is not None:
        parser.error("--activation applies to --model mlp (two_layer_net uses ReLU, as the book)")
    return args


def load(dataset: str, data_dir: str | None, samples: int):
    """The first ``samples`` training images ``(N, 784)`` in [0, 1] and their labels ``(N,)``."""
    try:
        from fnet.data import load_fashion_mnist, load_mnist
    except ImportError as e:
        raise SystemExit(f"gradient_check: cannot import fnet.data ({e}); it provides the loaders") from None
    loader = load_mnist if dataset == "mnist" else load_fashion_mnist
    try:
        (x_train, t_train), _ = loader(data_dir, normalize=True, flatten=True, one_hot_label=False)
    except (OSError, ValueError) as e:
        print(f"gradient_check: cannot load {dataset}: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if len(x_train) < samples:
        print(f"gradient_check: --samples {samples}, but the training set has {len(x_train)} images",
              file=sys.stderr)
        raise SystemExit(2)
    return x_train[:samples], t_train[:samples]


def _seconds(fn, *args) -> float:
    import jax

    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def main(argv=None) -> int:
    args = parse_args(argv)
    import jax

    if not args.float32:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import fnet
    from fnet import gradcheck, losses
    from fnet.cli import build_model  # the models fnet-train builds, from the same options

    dtype = jnp.float32 if args.float32 else jnp.float64
    dtype_name = jnp.dtype(dtype).name
    eps = args.eps if args.eps is not None else gradcheck.default_eps(dtype)
    threshold = args.threshold if args.threshold is not None else DEFAULT_THRESHOLD[dtype_name]

    x, t = load(args.dataset, args.data_dir, args.samples)
    x, t = jnp.asarray(x, dtype), jnp.asarray(t, jnp.int32)
    net, _ = build_model(args.model, x.shape[1:], 10, hidden=args.hidden, activation=args.activation)
    if args.model == "two_layer":
        described = f"two_layer_net({x.shape[1]}, {args.hidden[0]}, 10)"
    else:
        activation = args.activation or "relu"
        described = f"multi_layer_net({x.shape[1]}, {args.hidden}, 10, activation={activation!r})"
    params, _ = net.init(jax.random.key(args.seed), (None, x.shape[1]))
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    n_params = sum(a.size for a in jax.tree.leaves(params))

    def loss(p):
        y, _ = net.forward(p, x)
        return losses.softmax_cross_entropy.forward(y, t)[0]

    backprop = jax.jit(fnet.loss_and_grads(net, losses.softmax_cross_entropy))
    first = _seconds(backprop, params, x, t)
    steady = statistics.median(_seconds(backprop, params, x, t) for _ in range(50))
    _, grad_backprop = backprop(params, x, t)

    start = time.perf_counter()
    grad_numerical = jax.block_until_ready(gradcheck.numerical_gradient(loss, params, eps))
    numerical = time.perf_counter() - start

    report = gradcheck.compare(grad_backprop, grad_numerical)
    title = "Fashion-MNIST" if args.dataset == "fashion-mnist" else "MNIST"
    print(f"Gradient check: {described}, {len(x)} {title} training "
          f"images, {dtype_name}, h = {eps:g}")
    print()
    for d in report:
        print(f"{d.name}: {d.mean_abs:.1e}")
    print("(as in the book: the mean |backprop - numerical| over each parameter's entries)")
    print()
    print(report)
    print()
    print(f"numerical: {2 * n_params:,} loss evaluations in {numerical:.2f} s (compilation included)")
    print(f"backprop:  {steady * 1e3:.3f} ms per gradient, compiled (the first call, compiling, "
          f"took {first * 1e3:.0f} ms)")
    print(f"backprop is {numerical / steady:,.0f}x faster")
    print()
    if args.float32:
        print(FLOAT32_NOTE)
        print()
    worst = report.worst("max_abs")
    where = f"{worst.name}[{', '.join(map(str, worst.max_abs_at))}]"
    if report.ok(threshold):
        print(f"OK: the largest difference, {worst.max_abs:.2g} at {where}, is within {threshold:g}.")
        return 0
    print(f"FAILED: the largest difference, {worst.max_abs:.2g} at {where}, exceeds {threshold:g}.")
    return 1


if __name__ == "__main__":
    sys.exit(main())
